"""Issue 4, the key test of the design, with the crash test: a worker is SIGKILLed
mid-stream and restarted, records are re-sent (duplicates), and at the end

- replaying the log through the projection gives exactly the stats and multipliers the
  live tables hold, and
- those equal a clean run: the pure folds over the input, with no broker and no crash.

With one worker, and with two workers sharing the partitions (the killed one's move over
and back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from projections.agents import AGENT_TOPICS, project_agents
from projections.log import events, merged_by_receipt, read_broker
from streams.broker.embedded import EmbeddedBroker
from tests.conftest import eventually
from tests.fleet_data import clean_run, comparable, comparable_agents, fleet_events, interleave
from tests.integration.stack import Worker, create_topics, produce, wait_for_events, worker_settings


def live_stats(views: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {agent: comparable(view["state"]) for agent, view in views.items()}


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def live_views(workers: list[Worker]) -> dict[str, Any] | None:
    """The union of what the workers' tables hold (each serves its own partitions)."""
    union: dict[str, Any] = {}
    for worker in workers:
        try:
            union.update(await worker.agents_view())
        except OSError:
            return None  # a (re)started worker's web server is not up yet
    return union


@pytest.mark.parametrize("worker_count", [1, 2])
async def test_after_a_worker_crash_live_tables_equal_the_replay_and_a_clean_run(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, worker_count: int
) -> None:
    await create_topics(broker, prefix)
    prices, others = fleet_events(seed=7, days=12)
    stream = interleave(prices, others)
    half = len(stream) // 2
    workers = [
        Worker(broker, worker_settings(prefix, mkdir(tmp_path / f"worker-{i}")))
        for i in range(worker_count)
    ]
    for worker in workers:
        worker.start()
    try:
        await produce(broker, prefix, stream[:half])
        await wait_for_events(broker, prefix, "reconciled", 30)
        workers[0].kill()  # mid-stream: the rest is still unprocessed
        # Redelivered and re-sent records: duplicates must not count twice.
        await produce(broker, prefix, [*stream[half:], *stream[half - 40 : half + 40]])
        workers[0].start()

        last: list[dict[str, Any] | None] = [None]

        async def live_equals_replay() -> bool:
            live = await live_views(workers)
            settled = live is not None and live == last[0]
            last[0] = live
            if not live or not settled:
                return False  # still processing: replaying now would only burn CPU
            records = await read_broker(broker.bootstrap, [prefix + name for name in AGENT_TOPICS])
            replay = project_agents(events(merged_by_receipt(records)))
            return live_stats(live) == comparable_agents(replay)

        await eventually(live_equals_replay, timeout_s=240, every_s=3)
        live = await live_views(workers)
        views = [await w.agents_view() for w in workers]
        holder = workers[next(i for i, view in enumerate(views) if "buggy" in view)]
        one = await holder.agents_view("/agents/buggy/")
    finally:
        for worker in workers:
            await worker.stop()
    assert live is not None
    assert live_stats(live) == comparable_agents(clean_run(stream))
    # The stream really was processed: every agent has trades and a multiplier moved.
    assert all(view["window"]["trades"] > 0 for view in live.values())
    assert any(view["state"]["confidence"]["mult"] != 1.0 for view in live.values())
    assert live["buggy"]["window"]["error_rate"] > 0.2
    assert one == live["buggy"]  # the per-agent view answers the same
