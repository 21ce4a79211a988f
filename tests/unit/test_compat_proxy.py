"""The proxy drops exactly the ApiVersions v3 tagged fields librdkafka 2.0 cannot skip, and
keeps other clients' writes out of a broker being restored."""

from __future__ import annotations

import struct

from streams.broker.compat_proxy import (
    FETCH,
    OFFSET_COMMIT,
    PRODUCE,
    STACK_CLIENT_ID,
    CompatProxy,
    client_id,
    produce_offsets,
    read_uvarint,
    skip_tags,
    strip_api_versions_tags,
)

# Tail of Tansu 0.6.0's answer, as captured: throttle 0, then 4 tagged fields
# (supported features, finalized features epoch -1, finalized features, zk migration).
TANSU_TAGS = bytes.fromhex("040001010108ffffffffffffffff020101030100")


def api_versions_v3(entries: list[tuple[int, int, int]], tags: bytes) -> bytes:
    body = struct.pack(">ih", 7, 0) + bytes([len(entries) + 1])
    for key, low, high in entries:
        body += struct.pack(">hhh", key, low, high) + b"\x00"
    return body + struct.pack(">i", 0) + tags


def test_the_versions_survive_and_the_tagged_fields_go() -> None:
    entries = [(18, 0, 4), (3, 0, 12), (0, 0, 11)]
    stripped = strip_api_versions_tags(api_versions_v3(entries, TANSU_TAGS))
    assert stripped == api_versions_v3(entries, b"\x00")


def test_entries_with_their_own_tags_are_walked_correctly() -> None:
    body = struct.pack(">ih", 7, 0) + b"\x02" + struct.pack(">hhh", 18, 0, 4)
    body += b"\x01\x05\x02ab"  # one tag (5) of 2 bytes on the entry
    payload = body + struct.pack(">i", 0) + TANSU_TAGS
    assert strip_api_versions_tags(payload) == body + struct.pack(">i", 0) + b"\x00"


def test_varints_and_tag_sections_are_read_as_kafka_writes_them() -> None:
    assert read_uvarint(bytes([0xAC, 0x02]), 0) == (300, 2)
    assert skip_tags(TANSU_TAGS, 0) == len(TANSU_TAGS)


def produce_response_v7(topic: str, partitions: list[tuple[int, int, int]]) -> bytes:
    body = struct.pack(">i", 42) + struct.pack(">i", 1)
    body += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(partitions))
    for partition, error, offset in partitions:
        body += struct.pack(">ihqqq", partition, error, offset, -1, 0)
    return body + struct.pack(">i", 0)


def produce_response_v9(topic: str, partitions: list[tuple[int, int, int]]) -> bytes:
    body = struct.pack(">i", 42) + b"\x00"  # header tags
    body += b"\x02" + bytes([len(topic) + 1]) + topic.encode() + bytes([len(partitions) + 1])
    for partition, error, offset in partitions:
        body += struct.pack(">ihqqq", partition, error, offset, -1, 0)
        body += b"\x01" + b"\x00" + b"\x00"  # no record errors, null message, no tags
    return body + b"\x00" + struct.pack(">i", 0) + b"\x00"


def test_produce_acks_are_read_in_classic_and_flexible_versions() -> None:
    partitions = [(0, 0, 17), (3, 0, 0), (2, 6, -1)]
    expected = [("signals", p, e, o) for p, e, o in partitions]
    assert produce_offsets(produce_response_v7("signals", partitions), 7) == expected
    assert produce_offsets(produce_response_v9("signals", partitions), 9) == expected


def request(api_key: int, client: str | None) -> bytes:
    """A request payload: header v1 (key, version, correlation id, client id) and a body."""
    name = b"" if client is None else client.encode()
    size = -1 if client is None else len(name)
    return struct.pack(">hhih", api_key, 7, 1, size) + name + b"body"


def test_while_the_broker_is_restored_only_the_stack_writes() -> None:
    proxy = CompatProxy(0, 0, stack_only=True)
    assert client_id(request(PRODUCE, "metasup-stack")) == "metasup-stack"
    assert proxy._refused(request(PRODUCE, "aiokafka-0.14.0"))
    assert proxy._refused(request(OFFSET_COMMIT, None))
    assert not proxy._refused(request(PRODUCE, STACK_CLIENT_ID))
    assert not proxy._refused(request(FETCH, "aiokafka-0.14.0"))  # reads wait for nothing
    proxy.stack_only = False
    assert not proxy._refused(request(PRODUCE, "aiokafka-0.14.0"))
    assert proxy.refused == 2
