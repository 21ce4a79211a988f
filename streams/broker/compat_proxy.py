"""A pass-through Kafka-protocol proxy in front of Tansu that makes it speak to librdkafka.

Tansu 0.6.0 ends its ApiVersions v3 response with tagged fields (supported and
finalized features, ZK migration) that librdkafka 2.0 (the `kcat` of Debian 12)
fails to skip: every `kcat` call dies with "ApiVersionRequest failed: Read
underflow". Those fields are optional, so the proxy rewrites that one response
with no tagged fields; every other byte passes through untouched. The broker
advertises the proxy's address, so all clients connect through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

API_VERSIONS = 18
FIRST_FLEXIBLE_API_VERSIONS = 3


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


async def _copy_requests(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flexible_api_versions: set[int]
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        api_key, api_version, correlation_id = struct.unpack(">hhi", payload[:8])
        if api_key == API_VERSIONS and api_version >= FIRST_FLEXIBLE_API_VERSIONS:
            flexible_api_versions.add(correlation_id)
        writer.write(header + payload)
        await writer.drain()


async def _copy_responses(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flexible_api_versions: set[int]
) -> None:
    while True:
        header = await reader.readexactly(4)
        payload = await reader.readexactly(struct.unpack(">i", header)[0])
        correlation_id = struct.unpack(">i", payload[:4])[0]
        if correlation_id in flexible_api_versions:
            flexible_api_versions.discard(correlation_id)
            payload = strip_api_versions_tags(payload)
            header = struct.pack(">i", len(payload))
        writer.write(header + payload)
        await writer.drain()


class CompatProxy:
    def __init__(self, listen_port: int, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.host = host
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.listen_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

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
        pending: set[int] = set()
        directions = [
            asyncio.create_task(_copy_requests(client_reader, broker_writer, pending)),
            asyncio.create_task(_copy_responses(broker_reader, client_writer, pending)),
        ]
        # Either side closing ends the connection, as it would without the proxy.
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for task in directions:
            task.cancel()
        for writer in (broker_writer, client_writer):
            writer.close()
