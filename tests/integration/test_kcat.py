"""A librdkafka client (`kcat`) lists the catalogue, produces an event that is accepted,
and a malformed one lands in `deadletter` with its reason."""

from __future__ import annotations

import asyncio
import shutil
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from schemas.events import EventRejected, OrderIntent
from streams.broker.embedded import EmbeddedBroker
from tests.integration.stack import Worker, create_topics, wait_for_events, worker_settings

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")

GOOD = (
    '{"type":"signal.emitted","ts":"2024-05-01T12:00:00Z","agent":"kcat-agent",'
    '"run_id":"7f1c2b1e-7d4a-4b8e-9c3f-2a1d0e4b5c6d","symbol":"BTC","direction":"LONG",'
    '"confidence":0.7}'
)


async def kcat(broker: EmbeddedBroker, *args: str, stdin: str = "") -> str:
    """Run kcat without blocking the loop (the broker's proxy runs in this process)."""
    assert KCAT is not None
    process = await asyncio.create_subprocess_exec(
        KCAT, "-b", broker.bootstrap, *args, stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_kcat_lists_produces_and_its_poison_is_deadlettered(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await create_topics(broker, prefix)
    listing = await kcat(broker, "-L")
    assert f'topic "{prefix}signals" with 4 partitions' in listing
    assert f'topic "{prefix}kills" with 1 partitions' in listing
    worker = Worker(broker, worker_settings(prefix, tmp_path))
    worker.start()
    try:
        await kcat(broker, "-P", "-t", f"{prefix}signals", "-k", "kcat-agent", stdin=GOOD + "\n")
        await kcat(
            broker, "-P", "-t", f"{prefix}signals", stdin='{"type": "signal.emitted", oops\n'
        )
        orders = await wait_for_events(broker, prefix, "orders", 1)
        rejected = await wait_for_events(broker, prefix, "deadletter", 1)
    finally:
        await worker.stop()
    assert isinstance(orders[0], OrderIntent) and orders[0].agent == "kcat-agent"
    assert isinstance(rejected[0], EventRejected) and "not valid UTF-8 JSON" in rejected[0].reason
    consumed = await kcat(broker, "-C", "-t", f"{prefix}deadletter", "-e", "-q")
    assert '"type":"event.rejected"' in consumed
