"""The proxy reads record counts from Produce requests, high watermarks from Fetch
responses, and raises ListOffsets' latest offsets to the true ends it has seen."""

from __future__ import annotations

import struct

from aiokafka.protocol.fetch import FetchResponse_v4
from aiokafka.protocol.offset import (
    OffsetRequest_v0,
    OffsetRequest_v1,
    OffsetResponse_v0,
    OffsetResponse_v1,
    OffsetResponse_v4,
)
from aiokafka.protocol.produce import ProduceRequest_v3, ProduceRequest_v7
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from streams.broker.compat_proxy import (
    EndOffsets,
    fetch_high_watermarks,
    list_offsets_latest,
    produce_request_counts,
    rewrite_list_offsets,
)

LIST_OFFSETS, PRODUCE = 2, 0


def request(api_key: int, version: int, body: bytes, flexible: bool = False) -> bytes:
    """A request payload as the proxy sees it: header (client id "c") then body."""
    header = struct.pack(">hhih", api_key, version, 99, 1) + b"c"
    return header + (b"\x00" if flexible else b"") + body


def response(body: bytes) -> bytes:
    return struct.pack(">i", 99) + body


def batch(records: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for offset in range(records):
        builder.append(offset, timestamp=None, key=b"k", value=b"v" * 50, headers=[])
    return bytes(builder.build())


def test_produce_requests_give_the_record_count_of_each_partition() -> None:
    topics = [("signals", [(0, batch(10)), (1, batch(1) + batch(3))]), ("runs", [(2, batch(7))])]
    for struct_class in (ProduceRequest_v3, ProduceRequest_v7):
        body = struct_class(None, -1, 30000, topics).encode()
        acks, counts = produce_request_counts(request(PRODUCE, struct_class.API_VERSION, body), 3)
        assert acks == -1
        assert counts == {("signals", 0): 10, ("signals", 1): 4, ("runs", 2): 7}


def test_acks_zero_is_seen_so_no_response_is_awaited() -> None:
    body = ProduceRequest_v3(None, 0, 30000, [("t", [(0, batch(2))])]).encode()
    assert produce_request_counts(request(PRODUCE, 3, body), 3) == (0, {("t", 0): 2})


def test_only_latest_lookups_are_marked() -> None:
    topics = [("signals", [(0, -1), (1, -2), (2, 1_700_000_000_000)]), ("runs", [(3, -1)])]
    body = OffsetRequest_v1(-1, topics).encode()
    assert list_offsets_latest(request(LIST_OFFSETS, 1, body), 1) == {
        ("signals", 0),
        ("runs", 3),
    }
    # v4 by hand: aiokafka's OffsetRequest_v4 declares current_leader_epoch as int64,
    # the protocol (and Tansu) as int32.
    body4 = struct.pack(">ibih", -1, 0, 1, 7) + b"signals" + struct.pack(">i", 2)
    body4 += struct.pack(">iiq", 0, 5, -1) + struct.pack(">iiq", 1, 5, -2)
    assert list_offsets_latest(request(LIST_OFFSETS, 4, body4), 4) == {("signals", 0)}
    body0 = OffsetRequest_v0(-1, [("signals", [(0, -1, 1), (1, -2, 1)])]).encode()
    assert list_offsets_latest(request(LIST_OFFSETS, 0, body0), 0) == {("signals", 0)}


def test_latest_offsets_are_raised_to_the_true_end_and_nothing_else_moves() -> None:
    ends = {("signals", 0): 30, ("signals", 1): 99, ("signals", 2): 5}
    latest = {("signals", 0), ("signals", 2)}
    answer = OffsetResponse_v1(
        [("signals", [(0, 0, -1, 21), (1, 0, -1, 0), (2, 0, -1, 7), (3, 0, -1, 4)])]
    ).encode()
    rewritten = rewrite_list_offsets(response(answer), 1, latest, ends)
    expected = OffsetResponse_v1(
        [("signals", [(0, 0, -1, 30), (1, 0, -1, 0), (2, 0, -1, 7), (3, 0, -1, 4)])]
    ).encode()
    # 0: raised (Tansu's 21 -> 30); 1: an earliest lookup, untouched; 2: never lowered;
    # 3: no end seen, untouched.
    assert rewritten == response(expected)


def test_v4_with_leader_epoch_and_v0_offset_arrays_are_rewritten() -> None:
    ends = {("t", 0): 12}
    answer4 = OffsetResponse_v4(0, [("t", [(0, 0, -1, 3, 0), (1, 6, -1, -1, 0)])]).encode()
    assert rewrite_list_offsets(response(answer4), 4, {("t", 0), ("t", 1)}, ends) == response(
        OffsetResponse_v4(0, [("t", [(0, 0, -1, 12, 0), (1, 6, -1, -1, 0)])]).encode()
    )
    answer0 = OffsetResponse_v0([("t", [(0, 0, [3])])]).encode()
    assert rewrite_list_offsets(response(answer0), 0, {("t", 0)}, ends) == response(
        OffsetResponse_v0([("t", [(0, 0, [12])])]).encode()
    )


def test_flexible_list_offsets_v6() -> None:
    def compact(text: str) -> bytes:
        return bytes([len(text) + 1]) + text.encode()

    body = struct.pack(">ib", -1, 0) + b"\x02" + compact("t") + b"\x02"
    body += struct.pack(">iiq", 0, -1, -1) + b"\x00" + b"\x00" + b"\x00"
    assert list_offsets_latest(request(LIST_OFFSETS, 6, body, flexible=True), 6) == {("t", 0)}

    def answer(offset: int) -> bytes:
        out = b"\x00" + struct.pack(">i", 0) + b"\x02" + compact("t") + b"\x02"
        out += struct.pack(">ihqqi", 0, 0, -1, offset, 0) + b"\x00" + b"\x00" + b"\x00"
        return response(out)

    assert rewrite_list_offsets(answer(3), 6, {("t", 0)}, {("t", 0): 9}) == answer(9)


def test_fetch_high_watermarks_are_read() -> None:
    answer = FetchResponse_v4(
        0,
        [
            ("signals", [(0, 0, 30, 30, [], batch(3)), (1, 1, -1, -1, [], b"")]),
            ("runs", [(2, 0, 7, 7, [(1, 2)], b"")]),
        ],
    ).encode()
    assert fetch_high_watermarks(response(answer), 4) == [("signals", 0, 30), ("runs", 2, 7)]


def test_end_offsets_only_rise_and_reset_forgets() -> None:
    ends = EndOffsets()
    ends.saw("t", 0, 10)
    ends.saw("t", 0, 4)
    assert ends.ends == {("t", 0): 10}
    ends.reset()
    assert ends.ends == {}
