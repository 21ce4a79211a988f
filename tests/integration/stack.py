"""Test helpers: a real Faust worker process on the test broker, and log readers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from projections.log import events, read_broker
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.topics import key_for, topic_for
from streams.broker.admin import catalogue_partitions, ensure_topics
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.runtime.settings import Settings
from streams.runtime.stack import WorkerProcess
from streams.sdk.client import AsyncClient
from tests.conftest import eventually
from tests.keys import SUPERVISOR_KEY


def worker_settings(prefix: str, data_dir: Path) -> Settings:
    """A worker's settings: its own data dir, the session's supervisor key (workers that
    share a topic prefix must sign and verify with one key)."""
    return Settings(
        METASUP_TOPIC_PREFIX=prefix,
        METASUP_DATA_DIR=data_dir,
        METASUP_WEB_PORT=free_port(),
        METASUP_SUPERVISOR_KEY_FILE=SUPERVISOR_KEY.private,
        METASUP_SUPERVISOR_PUBLIC_KEY_FILE=SUPERVISOR_KEY.public,
    )


class Worker:
    """`faust -A streams.runtime.app worker` as a user would run it, on the test broker."""

    def __init__(self, broker: EmbeddedBroker, settings: Settings) -> None:
        self.process = WorkerProcess(0, broker.bootstrap, settings)
        self.settings = settings

    def start(self) -> None:
        self.process.start()

    def kill(self) -> None:
        assert self.process.process is not None
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait()
        self.process.process = None

    async def stop(self) -> None:
        await self.process.stop()

    def log(self) -> str:
        return (self.settings.data_dir / "worker-0.log").read_text(errors="replace")

    async def agents_view(self, path: str = "/agents/") -> dict[str, object]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.process.web_port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], head
        return dict(orjson.loads(body))


def guarded_client(broker: EmbeddedBroker, prefix: str) -> AsyncClient:
    """An SDK client that is its own kill-switch guard, verifying with the session's key."""
    return AsyncClient(
        broker.bootstrap,
        topic_prefix=prefix,
        follow_kills=True,
        supervisor_key=SUPERVISOR_KEY.verifier,
    )


async def create_topics(broker: EmbeddedBroker, prefix: str) -> None:
    await ensure_topics(broker.bootstrap, catalogue_partitions(prefix))


async def produce(
    broker: EmbeddedBroker,
    prefix: str,
    items: Iterable[Event | tuple[str, bytes]],
    stamped: datetime | None = None,
) -> None:
    """Send events (to their home topic, keyed per contract) or raw (topic, bytes) records,
    in order, with a plain aiokafka producer as any external client would; `stamped`: the
    records' timestamp (the broker's receipt time as readers see it), else now."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    stamp = int(stamped.timestamp() * 1000) if stamped else None
    await producer.start()
    try:
        for item in items:
            if isinstance(item, tuple):
                await producer.send_and_wait(
                    prefix + item[0], item[1], key=b"raw", timestamp_ms=stamp
                )
            else:
                spec = topic_for(item)
                await producer.send_and_wait(
                    prefix + spec.name,
                    encode_event(item),
                    key=key_for(item, spec),
                    timestamp_ms=stamp,
                )
    finally:
        await producer.stop()


async def read_events(broker: EmbeddedBroker, prefix: str, *names: str) -> list[Event]:
    records = await read_broker(broker.bootstrap, [prefix + name for name in names])
    return list(events(records))


async def wait_for_events(
    broker: EmbeddedBroker, prefix: str, name: str, count: int, timeout_s: float = 60.0
) -> list[Event]:
    """Wait until `name` holds at least `count` distinct events; return them."""
    found: list[Event] = []

    async def enough() -> bool:
        nonlocal found
        found = await read_events(broker, prefix, name)
        return len({e.event_id for e in found}) >= count

    await eventually(enough, timeout_s=timeout_s, every_s=0.5)
    return found


async def metasup(
    settings: Settings, broker: EmbeddedBroker, *words: str, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run the `metasup` command line as an operator would, beside the stack: the broker's
    address, the data dir with the operator keyring, and the supervisor's public key
    (`env`: more variables, e.g. where OpenAI and SendGrid are)."""
    variables = {
        **os.environ,
        **(env or {}),
        "METASUP_BROKER": f"kafka://{broker.bootstrap}",
        "METASUP_TOPIC_PREFIX": settings.topic_prefix,
        "METASUP_DATA_DIR": str(settings.data_dir),
        "METASUP_SUPERVISOR_PUBLIC_KEY_FILE": str(SUPERVISOR_KEY.public),
    }
    variables.pop("METASUP_OPERATOR_ACTOR", None)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streams.cli.main", *words],
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr
