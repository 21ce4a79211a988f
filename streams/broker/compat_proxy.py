"""A pass-through Kafka-protocol proxy in front of Tansu, with two jobs.

1. Speak to librdkafka. Tansu 0.6.0 ends its ApiVersions v3 response with tagged
   fields (supported and finalized features, ZK migration) that librdkafka 2.0
   (the `kcat` of Debian 12) fails to skip: every `kcat` call dies with
   "ApiVersionRequest failed: Read underflow". Those fields are optional, so the
   proxy rewrites that one response with no tagged fields.
2. Acknowledge only what is durable. Tansu keeps records in memory only; with an
   `ack_gate` (the durable-log recorder's `wait_durable`), a Produce response is
   held until the recorder has stored the acknowledged records, so a producer
   never gets an ack for a record that a broker crash could lose.

Every other byte passes through untouched. The broker advertises the proxy's
address, so all clients connect through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any

PRODUCE = 0
API_VERSIONS = 18
FIRST_FLEXIBLE_API_VERSIONS = 3
FIRST_FLEXIBLE_PRODUCE = 9

# Waits until the record at (topic, partition, offset) is durable.
AckGate = Callable[[str, int, int], Coroutine[Any, Any, None]]


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


async def _copy_requests(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: dict[int, tuple[int, int]]
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        api_key, api_version, correlation_id = struct.unpack(">hhi", payload[:8])
        if api_key in (PRODUCE, API_VERSIONS):
            requests[correlation_id] = (api_key, api_version)
        writer.write(header + payload)
        await writer.drain()


async def _copy_responses(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: dict[int, tuple[int, int]],
    gate: Callable[[], AckGate | None],
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        api_key, version = requests.pop(struct.unpack(">i", payload[:4])[0], (-1, -1))
        if api_key == API_VERSIONS and version >= FIRST_FLEXIBLE_API_VERSIONS:
            payload = strip_api_versions_tags(payload)
            header = struct.pack(">i", len(payload))
        elif api_key == PRODUCE and (wait_durable := gate()) is not None:
            for topic, partition, error, base_offset in produce_offsets(payload, version):
                if error == 0 and base_offset >= 0:
                    await wait_durable(topic, partition, base_offset)
        writer.write(header + payload)
        await writer.drain()


class CompatProxy:
    """Runs in its own thread and event loop: a caller that blocks its own loop (a long
    projection, a SQLite write) must not stall every Kafka client of the broker."""

    def __init__(self, listen_port: int, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.host = host
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gate: tuple[AckGate, asyncio.AbstractEventLoop] | None = None

    def set_ack_gate(self, gate: AckGate | None) -> None:
        """Hold Produce acks on `gate`, which runs on the caller's loop (None: release)."""
        self._gate = None if gate is None else (gate, asyncio.get_running_loop())

    def _current_gate(self) -> AckGate | None:
        if self._gate is None:
            return None
        gate, loop = self._gate

        async def on_gate_loop(topic: str, partition: int, offset: int) -> None:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(gate(topic, partition, offset), loop)
            )

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
        requests: dict[int, tuple[int, int]] = {}
        directions = [
            asyncio.create_task(_copy_requests(client_reader, broker_writer, requests)),
            asyncio.create_task(
                _copy_responses(broker_reader, client_writer, requests, self._current_gate)
            ),
        ]
        # Either side closing ends the connection, as it would without the proxy.
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for task in directions:
            task.cancel()
        for writer in (broker_writer, client_writer):
            writer.close()
