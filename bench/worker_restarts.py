"""Measures how often a restarted Faust worker comes back with exact tables.

The scenario of `tests/integration/test_agents_live_equals_replay.py`, run again and
again: one worker, stopped (SIGKILL, or a clean stop) after 30 reconciliations, the
rest of the stream and 80 re-sent records produced while it is down, the worker
started again. Each run ends as one of

- exact:   the live agent tables equal the replay of the log and the clean result
           (the pure folds over the input, no broker);
- differs: the live tables differ from the replay of the log (the tables lost or
           double-counted something the log holds);
- short:   tables equal the replay but not the clean result (records missing upstream,
           or processing stalled before the end).

    python -m bench.worker_restarts [--runs 10] [--stop kill|clean]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from projections.agents import AGENT_TOPICS, project_agents
from projections.log import events, merged_by_receipt, read_broker
from streams.broker.embedded import EmbeddedBroker, free_port
from tests.fleet_data import clean_run, comparable, comparable_agents, fleet_events, interleave
from tests.integration.stack import Worker, create_topics, produce, wait_for_events, worker_settings

PREFIX = "r."
SETTLE_CHECKS = 4  # equal views this many times in a row, 4 s apart: done
MAX_CHECKS = 40


async def settled_view(worker: Worker) -> dict[str, Any]:
    """The worker's /agents/ view once it stopped changing (or the last one seen)."""
    last: dict[str, Any] = {}
    same = 0
    for _ in range(MAX_CHECKS):
        await asyncio.sleep(4)
        try:
            view = await worker.agents_view()
        except OSError:
            continue  # web server not up yet
        same = same + 1 if view == last else 0
        last = view
        if same >= SETTLE_CHECKS:
            break
    return last


async def one_run(stop: str, data_dir: Path) -> str:
    broker = EmbeddedBroker(port=free_port())
    await broker.start()
    worker = Worker(broker, worker_settings(PREFIX, data_dir))
    try:
        await create_topics(broker, PREFIX)
        prices, others = fleet_events(seed=7, days=12)
        stream = interleave(prices, others)
        half = len(stream) // 2
        worker.start()
        await produce(broker, PREFIX, stream[:half])
        await wait_for_events(broker, PREFIX, "reconciled", 30)
        if stop == "kill":
            worker.kill()
        else:
            await worker.stop()
        await produce(broker, PREFIX, [*stream[half:], *stream[half - 40 : half + 40]])
        worker.start()
        live = {agent: comparable(v["state"]) for agent, v in (await settled_view(worker)).items()}
        records = await read_broker(broker.bootstrap, [PREFIX + name for name in AGENT_TOPICS])
        if live != comparable_agents(project_agents(events(merged_by_receipt(records)))):
            return "differs"
        return "exact" if live == comparable_agents(clean_run(stream)) else "short"
    finally:
        await worker.stop()
        await broker.close()


async def main(runs: int, stop: str) -> None:
    outcomes: dict[str, int] = {"exact": 0, "differs": 0, "short": 0}
    for run in range(1, runs + 1):
        data_dir = Path(tempfile.mkdtemp(prefix="metasup-restart-"))
        outcome = await one_run(stop, data_dir)
        outcomes[outcome] += 1
        kept = f" (worker log kept: {data_dir}/worker-0.log)" if outcome != "exact" else ""
        print(f"run {run}/{runs} ({stop}): {outcome}{kept}", flush=True)
        if outcome == "exact":
            shutil.rmtree(data_dir, ignore_errors=True)
    summary = ", ".join(f"{count} {name}" for name, count in outcomes.items())
    print(f"{runs} restarts after a {stop}: {summary}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stop", choices=["kill", "clean"], default="kill")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.stop))
