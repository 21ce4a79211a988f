"""`metasup topics`: the catalogue with record counts."""

from __future__ import annotations

import argparse
import asyncio

from schemas.topics import CATALOGUE
from streams.broker.consumers import assigned_consumer
from streams.broker.durable_log import DurableLog
from streams.broker.offsets import true_end_offsets
from streams.cli.connection import resolve_bootstrap
from streams.runtime.settings import Settings
from streams.runtime.stack import durable_log_path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("topics", help="list the topic catalogue with record counts")
    parser.set_defaults(run=run)


async def broker_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    async with assigned_consumer(bootstrap, names) as (consumer, tps):
        starts = await consumer.beginning_offsets(tps)
        ends = await true_end_offsets(consumer, tps)
    counts = dict.fromkeys(names, 0)
    for tp, end in ends.items():
        counts[tp.topic] += end - starts[tp]
    return counts


def run(args: argparse.Namespace, settings: Settings) -> int:
    names = [settings.topic(spec.name) for spec in CATALOGUE]
    bootstrap = resolve_bootstrap(settings)
    try:
        counts = asyncio.run(asyncio.wait_for(broker_counts(bootstrap, names), timeout=15))
        where = f"broker {bootstrap}"
    except Exception as error:
        path = durable_log_path(settings)
        if not path.exists():
            print(f"cannot reach the broker at {bootstrap} ({error}); start it with `metasup up`")
            return 1
        counts = DurableLog(path).counts()
        where = f"durable log {path} (broker not reachable)"
    print(f"{'topic':<20} {'key':<13} {'parts':>5} {'origin':<8} {'records':>10}  types")
    for spec in CATALOGUE:
        count = counts.get(settings.topic(spec.name), 0)
        print(
            f"{spec.name:<20} {spec.key:<13} {spec.partitions:>5} {spec.origin:<8} "
            f"{count:>10,}  {', '.join(sorted(spec.types))}"
        )
    print(f"(counts from {where})")
    return 0
