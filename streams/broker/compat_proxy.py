"""A pass-through Kafka-protocol proxy in front of Tansu, with three jobs.

1. Speak to librdkafka. Tansu 0.6.0 ends its ApiVersions v3 response with tagged
   fields (supported and finalized features, ZK migration) that librdkafka 2.0
   (the `kcat` of Debian 12) fails to skip: every `kcat` call dies with
   "ApiVersionRequest failed: Read underflow". Those fields are optional, so the
   proxy rewrites that one response with no tagged fields.
2. Acknowledge only what is durable. Tansu keeps records in memory only; with an
   `ack_gate` (the durable-log recorder's `wait_durable`), a Produce response is
   held until the recorder has stored the acknowledged records, so a producer
   never gets an ack for a record that a broker crash could lose. One wait covers
   every partition of the response, up to the last record of each batch.
3. Tell the true end offsets. Tansu's ListOffsets answers the first offset of the
   last batch + 1 for multi-record batches (BROKER-NOTES defect 1), which is what
   forced one record per batch on every producer. The proxy sees every Produce
   request (records per batch) and response (base offset), and every Fetch high
   watermark, so it knows the true end of each partition and raises the latest
   offset (timestamp -1) of a ListOffsets answer to it. Earliest (-2) and timestamp
   lookups pass through: Tansu answers them right.

4. Keep writes out of a broker being restored. While the stack replaces the broker
   and restores it from the durable log (`stack_only`), a Produce or OffsetCommit from
   any client but the stack's own (client id `STACK_CLIENT_ID`) closes its connection
   unanswered, and the client retries later: a record written meanwhile would take an
   offset the restore needs (shifting every record after it, and the committed offsets
   that point at them) and be acknowledged before the recorder could copy it.

Every other byte passes through untouched. The broker advertises the proxy's
address, so all clients connect through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
OFFSET_COMMIT = 8
API_VERSIONS = 18
FIRST_FLEXIBLE_API_VERSIONS = 3
FIRST_FLEXIBLE_PRODUCE = 9
FIRST_FLEXIBLE_FETCH = 12
FIRST_FLEXIBLE_LIST_OFFSETS = 6
LATEST = -1
# The client id prefix of the stack's own clients (the restore): the only ones that may
# write while the broker is restored.
STACK_CLIENT_ID = "metasup-stack"
WRITES = (PRODUCE, OFFSET_COMMIT)

log = logging.getLogger(__name__)

# Waits until every record below `end` of each (topic, partition, end) is durable;
# raises if that cannot happen (the ack must then not be sent).
AckGate = Callable[[list[tuple[str, int, int]]], Coroutine[Any, Any, None]]


def read_uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def skip_tags(data: bytes, at: int) -> int:
    count, at = read_uvarint(data, at)
    for _ in range(count):
        _, at = read_uvarint(data, at)
        size, at = read_uvarint(data, at)
        at += size
    return at


def strip_api_versions_tags(payload: bytes) -> bytes:
    """Payload = correlation id, error code, compact array of versions, throttle, tags:
    keep everything up to the throttle time, then end with an empty tag section."""
    at = 4 + 2
    entries, at = read_uvarint(payload, at)
    for _ in range(max(entries - 1, 0)):
        at = skip_tags(payload, at + 6)
    at += 4  # throttle_time_ms
    return payload[:at] + b"\x00"


class _Reader:
    """Reads Kafka primitives, classic or compact ("flexible"), from one payload."""

    def __init__(self, data: bytes, at: int, flexible: bool) -> None:
        self.data, self.at, self.flexible = data, at, flexible

    def fixed(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return int(value)

    def count(self) -> int:
        if self.flexible:
            value, self.at = read_uvarint(self.data, self.at)
            return value - 1
        return self.fixed(">i")

    def string(self) -> str | None:
        size = self.count() if self.flexible else self.fixed(">h")
        if size < 0:
            return None
        text = self.data[self.at : self.at + size].decode()
        self.at += size
        return text

    def tags(self) -> None:
        if self.flexible:
            self.at = skip_tags(self.data, self.at)


def produce_offsets(payload: bytes, version: int) -> list[tuple[str, int, int, int]]:
    """(topic, partition, error code, base offset) of each partition in a Produce response."""
    flexible = version >= FIRST_FLEXIBLE_PRODUCE
    reader = _Reader(payload, 4, flexible)
    reader.tags()  # response header tags (flexible versions only)
    found: list[tuple[str, int, int, int]] = []
    for _ in range(reader.count()):
        topic = reader.string() or ""
        for _ in range(reader.count()):
            partition, error, base_offset = (
                reader.fixed(">i"),
                reader.fixed(">h"),
                reader.fixed(">q"),
            )
            found.append((topic, partition, error, base_offset))
            if version >= 2:
                reader.fixed(">q")  # log_append_time_ms
            if version >= 5:
                reader.fixed(">q")  # log_start_offset
            if version >= 8:
                for _ in range(max(reader.count(), 0)):
                    reader.fixed(">i")
                    reader.string()
                    reader.tags()
                reader.string()
            reader.tags()
        reader.tags()
    return found


def _request_body(payload: bytes, flexible_header: bool) -> int:
    """Where a request body starts: after api key, version, correlation id, client id
    (a classic nullable string even in flexible versions) and, if flexible, header tags."""
    (size,) = struct.unpack_from(">h", payload, 8)
    at = 10 + max(size, 0)
    return skip_tags(payload, at) if flexible_header else at


def _batch_record_counts(records: bytes) -> int | None:
    """Records in a v2 record-batch sequence (lastOffsetDelta + 1 per batch); None if any
    batch is an old-format message set, whose count the proxy does not work out."""
    count = at = 0
    while at + 23 <= len(records):
        (length,) = struct.unpack_from(">i", records, at + 8)
        if records[at + 16] != 2:
            return None
        (last_delta,) = struct.unpack_from(">i", records, at + 23)
        count += last_delta + 1
        at += 12 + length
    return count


def produce_request_counts(payload: bytes, version: int) -> tuple[int, dict[tuple[str, int], int]]:
    """(acks, records per (topic, partition)) of a Produce request; a partition whose count
    cannot be read (old message format) is left out."""
    flexible = version >= FIRST_FLEXIBLE_PRODUCE
    reader = _Reader(payload, _request_body(payload, flexible), flexible)
    if version >= 3:
        reader.string()  # transactional_id
    acks = reader.fixed(">h")
    reader.fixed(">i")  # timeout_ms
    counts: dict[tuple[str, int], int] = {}
    for _ in range(reader.count()):
        topic = reader.string() or ""
        for _ in range(reader.count()):
            partition = reader.fixed(">i")
            size = reader.count() if flexible else reader.fixed(">i")
            if size > 0:
                records = reader.data[reader.at : reader.at + size]
                reader.at += size
                counted = _batch_record_counts(records)
                if counted is not None:
                    counts[(topic, partition)] = counted
            reader.tags()
        reader.tags()
    return acks, counts


def list_offsets_latest(payload: bytes, version: int) -> set[tuple[str, int]]:
    """The partitions a ListOffsets request asks the latest offset (timestamp -1) of."""
    flexible = version >= FIRST_FLEXIBLE_LIST_OFFSETS
    reader = _Reader(payload, _request_body(payload, flexible), flexible)
    reader.fixed(">i")  # replica_id
    if version >= 2:
        reader.fixed(">b")  # isolation_level
    latest: set[tuple[str, int]] = set()
    for _ in range(reader.count()):
        topic = reader.string() or ""
        for _ in range(reader.count()):
            partition = reader.fixed(">i")
            if version >= 4:
                reader.fixed(">i")  # current_leader_epoch
            timestamp = reader.fixed(">q")
            if version == 0:
                reader.fixed(">i")  # max_num_offsets
            if timestamp == LATEST:
                latest.add((topic, partition))
            reader.tags()
        reader.tags()
    return latest


def rewrite_list_offsets(
    payload: bytes, version: int, latest: set[tuple[str, int]], ends: dict[tuple[str, int], int]
) -> bytes:
    """Raise each latest offset the broker answered to the true end the proxy has seen.

    Tansu answers the first offset of the last batch + 1 (BROKER-NOTES defect 1), never
    more than the truth, and the proxy's ends come only from this broker's own answers
    (acknowledged produces, fetch high watermarks): the larger of the two is right. The
    offsets are fixed-width, so they are patched in place."""
    flexible = version >= FIRST_FLEXIBLE_LIST_OFFSETS
    out = bytearray(payload)
    reader = _Reader(payload, 4, flexible)
    reader.tags()
    if version >= 2:
        reader.fixed(">i")  # throttle_time_ms
    for _ in range(reader.count()):
        topic = reader.string() or ""
        for _ in range(reader.count()):
            partition, error = reader.fixed(">i"), reader.fixed(">h")
            key = (topic, partition)
            if version == 0:
                offsets = reader.count()
                at = reader.at
                reader.at += 8 * max(offsets, 0)
            else:
                reader.fixed(">q")  # timestamp
                at = reader.at
                reader.fixed(">q")
                offsets = 1
            if version >= 4:
                reader.fixed(">i")  # leader_epoch
            reader.tags()
            if error == 0 and offsets > 0 and key in latest and key in ends:
                (reported,) = struct.unpack_from(">q", payload, at)
                if ends[key] > reported:
                    struct.pack_into(">q", out, at, ends[key])
        reader.tags()
    return bytes(out)


def fetch_high_watermarks(payload: bytes, version: int) -> list[tuple[str, int, int]]:
    """(topic, partition, high watermark) of each partition without error in a Fetch
    response (v13+ name topics by id only: nothing is returned for those)."""
    if version >= 13:
        return []
    flexible = version >= FIRST_FLEXIBLE_FETCH
    reader = _Reader(payload, 4, flexible)
    reader.tags()
    if version >= 1:
        reader.fixed(">i")  # throttle_time_ms
    if version >= 7:
        reader.fixed(">h")  # error_code
        reader.fixed(">i")  # session_id
    found: list[tuple[str, int, int]] = []
    for _ in range(reader.count()):
        topic = reader.string() or ""
        for _ in range(reader.count()):
            partition, error, high_watermark = (
                reader.fixed(">i"),
                reader.fixed(">h"),
                reader.fixed(">q"),
            )
            if version >= 4:
                reader.fixed(">q")  # last_stable_offset
            if version >= 5:
                reader.fixed(">q")  # log_start_offset
            if version >= 4:
                for _ in range(max(reader.count(), 0)):  # aborted transactions
                    reader.fixed(">q")
                    reader.fixed(">q")
                    reader.tags()
            if version >= 11:
                reader.fixed(">i")  # preferred_read_replica
            size = reader.count() if flexible else reader.fixed(">i")
            reader.at += max(size, 0)
            reader.tags()
            if error == 0 and high_watermark >= 0:
                found.append((topic, partition, high_watermark))
        reader.tags()
    return found


@dataclass
class _Pending:
    api_key: int
    version: int
    # Produce: records per partition; ListOffsets: the partitions asked for their latest.
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    latest: set[tuple[str, int]] = field(default_factory=set)


class EndOffsets:
    """The true end of each partition as far as the proxy has seen: the base offset plus
    the record count of every acknowledged produce, and every fetch high watermark.
    Only ever raised; reset when the broker behind the proxy is replaced."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {}

    def saw(self, topic: str, partition: int, end: int) -> None:
        key = (topic, partition)
        if end > self.ends.get(key, -1):
            self.ends[key] = end

    def reset(self) -> None:
        self.ends = {}


def client_id(payload: bytes) -> str:
    """The client id of a request (header v1 and v2: a nullable int16-sized string)."""
    (size,) = struct.unpack_from(">h", payload, 8)
    return "" if size < 0 else payload[10 : 10 + size].decode(errors="replace")


def _note_request(payload: bytes, requests: dict[int, _Pending]) -> None:
    api_key, api_version, correlation_id = struct.unpack(">hhi", payload[:8])
    if api_key == PRODUCE:
        try:
            acks, counts = produce_request_counts(payload, api_version)
        except (struct.error, IndexError, UnicodeDecodeError):
            log.warning(
                "could not read a Produce v%d request; acks wait per base offset", api_version
            )
            acks, counts = -1, {}
        if acks != 0:  # acks=0: the broker sends no response
            requests[correlation_id] = _Pending(api_key, api_version, counts=counts)
    elif api_key == LIST_OFFSETS:
        try:
            latest = list_offsets_latest(payload, api_version)
        except (struct.error, IndexError, UnicodeDecodeError):
            log.warning("could not read a ListOffsets v%d request; passed through", api_version)
            latest = set()
        requests[correlation_id] = _Pending(api_key, api_version, latest=latest)
    elif api_key in (API_VERSIONS, FETCH):
        requests[correlation_id] = _Pending(api_key, api_version)


async def _copy_requests(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: dict[int, _Pending],
    refused: Callable[[bytes], bool],
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        if refused(payload):
            return  # the connection closes unanswered; the client retries
        _note_request(payload, requests)
        writer.write(header + payload)
        await writer.drain()


async def _copy_responses(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: dict[int, _Pending],
    gate: Callable[[], AckGate | None],
    ends: EndOffsets,
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        pending = requests.pop(struct.unpack(">i", payload[:4])[0], None)
        if pending is None:
            pass
        elif pending.api_key == API_VERSIONS and pending.version >= FIRST_FLEXIBLE_API_VERSIONS:
            payload = strip_api_versions_tags(payload)
            header = struct.pack(">i", len(payload))
        elif pending.api_key == PRODUCE:
            acked: list[tuple[str, int, int]] = []
            for topic, partition, error, base_offset in produce_offsets(payload, pending.version):
                if error == 0 and base_offset >= 0:
                    count = pending.counts.get((topic, partition))
                    end = base_offset + (count if count else 1)
                    acked.append((topic, partition, end))
            if acked and (wait_durable := gate()) is not None:
                # Raises if the records cannot be made durable: the connection then
                # closes without the ack and the producer retries (nothing is lost).
                await wait_durable(acked)
            for topic, partition, end in acked:
                if pending.counts.get((topic, partition)):
                    ends.saw(topic, partition, end)
        elif pending.api_key == FETCH:
            with contextlib.suppress(struct.error, IndexError, UnicodeDecodeError):
                for topic, partition, high_watermark in fetch_high_watermarks(
                    payload, pending.version
                ):
                    ends.saw(topic, partition, high_watermark)
        elif pending.api_key == LIST_OFFSETS and pending.latest:
            try:
                payload = rewrite_list_offsets(payload, pending.version, pending.latest, ends.ends)
            except (struct.error, IndexError, UnicodeDecodeError):
                log.warning(
                    "could not read a ListOffsets v%d response; passed through", pending.version
                )
        writer.write(header + payload)
        await writer.drain()


class CompatProxy:
    """Runs in its own thread and event loop: a caller that blocks its own loop (a long
    projection, a SQLite write) must not stall every Kafka client of the broker."""

    def __init__(
        self,
        listen_port: int,
        upstream_port: int,
        host: str = "127.0.0.1",
        stack_only: bool = False,
    ) -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.host = host
        # Set while the broker behind is restored: only the stack's clients may write.
        self.stack_only = stack_only
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gate: tuple[AckGate, asyncio.AbstractEventLoop] | None = None
        self.end_offsets = EndOffsets()

    def broker_replaced(self) -> None:
        """A new (empty or restored) broker is behind the proxy: forget the old ends."""
        loop = self._loop
        if loop is None or not loop.is_running():
            self.end_offsets.reset()
        else:
            loop.call_soon_threadsafe(self.end_offsets.reset)

    def _refused(self, payload: bytes) -> bool:
        if not self.stack_only or struct.unpack_from(">h", payload)[0] not in WRITES:
            return False
        if client_id(payload).startswith(STACK_CLIENT_ID):
            return False
        self.refused += 1
        return True

    def set_ack_gate(self, gate: AckGate | None) -> None:
        """Hold Produce acks on `gate`, which runs on the caller's loop (None: release)."""
        self._gate = None if gate is None else (gate, asyncio.get_running_loop())

    def _current_gate(self) -> AckGate | None:
        if self._gate is None:
            return None
        gate, loop = self._gate

        async def on_gate_loop(ends: list[tuple[str, int, int]]) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(gate(ends), loop))

        return on_gate_loop

    async def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kafka-compat-proxy", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._listen(), self._loop))

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.listen_port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop = self._thread = None

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                self.host, self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        requests: dict[int, _Pending] = {}
        directions = [
            asyncio.create_task(
                _copy_requests(client_reader, broker_writer, requests, self._refused)
            ),
            asyncio.create_task(
                _copy_responses(
                    broker_reader, client_writer, requests, self._current_gate, self.end_offsets
                )
            ),
        ]
        # Either side closing ends the connection, as it would without the proxy.
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for task in directions:
            task.cancel()
        for writer in (broker_writer, client_writer):
            writer.close()
