"""Side-by-side benchmarks: every speed or size claim is a ratio of two things measured here.

Run with `python -m bench.run` (`make bench`). Nothing here asserts a time: the
numbers depend on the machine, the ratios much less. Three benchmarks:

a) Changelog bytes per event. A realistic per-agent stream (hourly runs, 24 h
   reconciliations priced on the shipped BTC candles, 90 days, generated from a
   seed) is folded through `apply_agent_event`, and every new `AgentState` is
   persisted into a dict-backed table (a) through `ShardedStore` (head + per-day
   shards, only changed entries written) and (b) as the whole JSON value, the
   way a plain Faust table writes its changelog. Counted: bytes and records.
b) Replay throughput. The same events folded in memory, through the codec
   (encode + decode + fold), and produced to an embedded Tansu broker then read
   back with `projections.log.read_broker` + decode + fold.
c) Restore speed. A durable log of N records over 8 partitions restored into a
   fresh embedded broker with `streams.broker.restore.restore` (sends pipelined
   per partition) and, into another fresh broker, by awaiting each send.

The per-event numbers of (a) and (b) do not depend on the number of agents (each
agent's state is its own table key); `--agents` only scales the run time. The
default keeps the whole run near a minute and a half on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.report import Measure, Result, ratio, table
from projections.log import events as decoded_events
from projections.log import merged_by_receipt, read_broker
from schemas.codec import decode_event, encode_event
from schemas.envelope import Event
from schemas.events import Direction, RunCompleted, SignalReconciled
from schemas.topics import CATALOGUE
from streams.agents.assess import AgentState, apply_agent_event
from streams.agents.execution import TradingMode
from streams.broker.admin import ensure_topics
from streams.broker.consumers import assigned_consumer
from streams.broker.durable_log import DurableLog, StoredRecord
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.broker.offsets import true_end_offsets
from streams.broker.restore import restore
from streams.core.fleet_state import FleetState, policy_at
from streams.reconcile.csv_source import DEMO_CSV, read_candles
from streams.runtime.agent_shell import AGENT_SHARDS
from streams.runtime.sharded_store import ShardedStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "var" / "bench.json"

FLEET = FleetState()
MODE: TradingMode = "shadow"
PRODUCER = "bench"
# Per agent: the probability of calling the 24 h direction right, and of a failed run.
SKILLS = (0.56, 0.50, 0.47, 0.53, 0.51, 0.58, 0.45, 0.54)
ERROR_RATES = (0.0, 0.01, 0.03, 0.0, 0.02, 0.005, 0.04, 0.01)
# Topics of the stream: the catalogue's, so the broker replay partitions them as live.
STREAM_TOPICS = {
    spec.name: spec.partitions for spec in CATALOGUE if spec.name in ("runs", "reconciled")
}

AgentEvent = RunCompleted | SignalReconciled


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """While a broker starts, the client's "Unable connect" errors only mean "not yet"."""
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_log.setLevel(level)


# --- a realistic, deterministic stream -------------------------------------------------


def generate_stream(agents: int, days: int, seed: int) -> list[AgentEvent]:
    """Hourly runs of `agents` agents and the 24 h reconciliation of each run's signal.

    Prices are the shipped BTC-USD hourly candles (90 days); a candle's close price
    stands for its close time. Every run emits one signal at the close; it is
    reconciled 24 h later at the then-closed price, in the direction the agent
    called (right with its skill's probability). Log order is time order, with the
    reconciliations of an instant before its runs. All ids come from `seed`.
    """
    candles = read_candles(DEMO_CSV)
    closes = {candle.close_time: candle.close for candle in candles}
    instants = sorted(closes)
    available = (instants[-1] - instants[0]).days
    if not 1 <= days <= available:
        raise SystemExit(f"--days must be between 1 and {available} (the shipped candles)")
    if not 1 <= agents <= len(SKILLS):
        raise SystemExit(f"--agents must be between 1 and {len(SKILLS)}")
    end = instants[0] + timedelta(days=days)
    instants = [instant for instant in instants if instant <= end]
    rng = random.Random(seed)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    keyed: list[tuple[datetime, int, str, AgentEvent]] = []
    for at in instants:
        exit_at = at + timedelta(hours=24)
        for index in range(agents):
            agent = f"agent-{index}"
            strategy = ("momentum", "mean-reversion", "carry")[index % 3]
            run_id = new_id()
            tokens_in, tokens_out = rng.randint(2_000, 6_000), rng.randint(200, 900)
            keyed.append(
                (
                    at,
                    1,
                    agent,
                    RunCompleted.create(
                        event_id=new_id(),
                        ts=at,
                        producer=PRODUCER,
                        agent=agent,
                        run_id=run_id,
                        started_at=at - timedelta(seconds=rng.uniform(1, 20)),
                        latency_ms=rng.lognormvariate(6.3, 0.4),
                        tokens_in=tokens_in,
                        tokens_out=tokens_out,
                        cost_usd=(tokens_in * 0.15 + tokens_out * 0.6) / 1e6,
                        errors=1 if rng.random() < ERROR_RATES[index] else 0,
                        strategy_class=strategy,
                    ),
                )
            )
            if exit_at not in closes:
                continue
            entry, exit_price = closes[at], closes[exit_at]
            up = exit_price >= entry
            right = rng.random() < SKILLS[index]
            direction = Direction.LONG if up == right else Direction.SHORT
            sign = 1.0 if direction is Direction.LONG else -1.0
            keyed.append(
                (
                    exit_at,
                    0,
                    agent,
                    SignalReconciled.create(
                        event_id=new_id(),
                        ts=exit_at,
                        producer=PRODUCER,
                        signal_id=new_id(),
                        run_id=run_id,
                        agent=agent,
                        symbol="BTC",
                        direction=direction,
                        horizon_hours=24,
                        entry_ts=at,
                        entry_price=entry,
                        exit_ts=exit_at,
                        exit_price=exit_price,
                        realized_pnl_bps=sign * (exit_price / entry - 1) * 1e4,
                        confidence=round(rng.uniform(0.5, 0.95), 3),
                        strategy_class=strategy,
                    ),
                )
            )
    keyed.sort(key=lambda item: item[:3])
    return [event for *_, event in keyed]


# --- the fold --------------------------------------------------------------------------


def fold_all(
    stream: Iterable[Event], history: list[tuple[str, AgentState]] | None = None
) -> dict[str, AgentState]:
    """Fold each event into its agent's state; `history` gets every state that changed."""
    states: dict[str, AgentState] = {}
    for event in stream:
        if not isinstance(event, RunCompleted | SignalReconciled):
            raise TypeError(f"unexpected event {event.type}")
        before = states.get(event.agent) or AgentState.start(
            event.agent, policy_at(FLEET, event.ts)
        )
        after, _ = apply_agent_event(before, event, FLEET, MODE)
        states[event.agent] = after
        if history is not None and after is not before:
            history.append((event.agent, after))
    return states


@contextmanager
def no_gc() -> Iterator[None]:
    """Collect, then keep the cyclic GC out of a timed section (as `timeit` does): the states
    kept for benchmark (a) would otherwise make collections slower in one pass than another."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed_fold(
    stream: Iterable[Event], history: list[tuple[str, AgentState]] | None = None
) -> tuple[dict[str, AgentState], float]:
    with no_gc():
        started = time.perf_counter()
        states = fold_all(stream, history)
        return states, time.perf_counter() - started


# --- a) changelog bytes ----------------------------------------------------------------


class CountingTable(MutableMapping[bytes, bytes]):
    """A dict that counts what a Faust changelog would carry: one record per write or delete."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.records = 0
        self.tombstones = 0
        self.value_bytes = 0
        self.key_bytes = 0
        self.shard_value_bytes = 0  # values under `<key>|<shard>` keys (ShardedStore)

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.records += 1
        self.value_bytes += len(value)
        self.key_bytes += len(key)
        if b"|" in key:
            self.shard_value_bytes += len(value)

    def __delitem__(self, key: bytes) -> None:
        del self.data[key]
        self.records += 1
        self.tombstones += 1
        self.key_bytes += len(key)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "tombstones": self.tombstones,
            "value_bytes": self.value_bytes,
            "shard_value_bytes": self.shard_value_bytes,
            "head_value_bytes": self.value_bytes - self.shard_value_bytes,
            "key_bytes": self.key_bytes,
        }


def bench_changelog(
    history: Sequence[tuple[str, AgentState]], final: dict[str, AgentState]
) -> tuple[list[Result], dict[str, bool]]:
    sharded_table, whole_table = CountingTable(), CountingTable()
    store = ShardedStore(sharded_table, AgentState, AGENT_SHARDS)
    sharded_s = whole_s = 0.0
    with no_gc():
        for agent, state in history:
            key = agent.encode()
            started = time.perf_counter()
            store.save(key, state)
            middle = time.perf_counter()
            whole_table[key] = state.model_dump_json().encode()
            whole_s += time.perf_counter() - middle
            sharded_s += middle - started
    writes = len(history)
    reloaded = ShardedStore(sharded_table, AgentState, AGENT_SHARDS)
    checks = {
        "sharded table loads back the final states": all(
            reloaded.load(agent.encode()) == state for agent, state in final.items()
        ),
        "whole table holds the final states": all(
            AgentState.model_validate_json(whole_table[agent.encode()]) == state
            for agent, state in final.items()
        ),
    }
    largest = max(len(value) for value in whole_table.data.values())
    details = {
        "state_writes": writes,
        "sharded": sharded_table.counts(),
        "whole": whole_table.counts(),
        "largest_whole_value_bytes": largest,
    }
    sharded_per = sharded_table.value_bytes / writes
    whole_per = whole_table.value_bytes / writes
    results = [
        Result(
            "a) changelog bytes / event",
            Measure("sharded", sharded_per, "B"),
            Measure("whole value", whole_per, "B"),
            ratio(whole_per, sharded_per),
            "B/A",
            f"a whole-value table writes this many times more changelog bytes per event "
            f"(its value is up to {largest / 1024:,.0f} KB: the 30-day window); "
            f"totals {sharded_table.value_bytes / 1e6:,.1f} MB vs "
            f"{whole_table.value_bytes / 1e6:,.1f} MB; heads are "
            f"{1 - sharded_table.shard_value_bytes / sharded_table.value_bytes:.0%} of the "
            f"sharded bytes",
            details,
        ),
        Result(
            "a) changelog records / event",
            Measure("sharded", sharded_table.records / writes, "rec"),
            Measure("whole value", whole_table.records / writes, "rec"),
            ratio(sharded_table.records, whole_table.records),
            "A/B",
            "the sharded store writes a head plus the changed day shards (and tombstones for "
            "evicted days): more, much smaller records",
        ),
        Result(
            "a) persist CPU / event",
            Measure("sharded save", sharded_s / writes * 1e3, "ms"),
            Measure("model_dump_json", whole_s / writes * 1e3, "ms"),
            ratio(sharded_s, whole_s),
            "A/B",
            "CPU to turn a state into table writes (splitting costs some CPU; the bytes it "
            "saves are broker, network and recovery time)",
        ),
    ]
    return results, checks


# --- b) replay throughput --------------------------------------------------------------


async def produce_stream(bootstrap: str, stream: Sequence[AgentEvent]) -> float:
    """Produce the stream keyed by agent, stamped with event time; return the seconds taken."""
    await ensure_topics(bootstrap, STREAM_TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for event in stream:
            topic = "runs" if isinstance(event, RunCompleted) else "reconciled"
            pending.append(
                await producer.send(
                    topic,
                    encode_event(event),
                    key=event.agent.encode(),
                    timestamp_ms=int(event.ts.timestamp() * 1000),
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def bench_replay(
    stream: Sequence[AgentEvent], memory_s: float, reference: dict[str, AgentState]
) -> tuple[list[Result], dict[str, bool]]:
    count = len(stream)
    say(f"[b] encode + decode + fold of {count:,} events")
    codec_states, codec_s = timed_fold(decode_event(encode_event(event)) for event in stream)
    checks = {"codec replay gives the same states": codec_states == reference}
    memory_rate = count / memory_s
    results = [
        Result(
            "b) replay: in memory vs codec",
            Measure("fold", memory_rate, "ev/s"),
            Measure("encode+decode+fold", count / codec_s, "ev/s"),
            ratio(memory_rate, count / codec_s),
            "A/B",
            "what the orjson + pydantic codec adds to a pure fold",
        )
    ]
    broker = EmbeddedBroker(port=free_port())
    try:
        with quiet_kafka_client():
            await broker.start()
        say(f"[b] produce {count:,} events to an embedded broker on {broker.bootstrap}")
        produce_s = await produce_stream(broker.bootstrap, stream)
        say("[b] read back with read_broker + decode + fold")
        with no_gc():
            started = time.perf_counter()
            records = await read_broker(broker.bootstrap, sorted(STREAM_TOPICS))
            read_s = time.perf_counter() - started
            broker_states = fold_all(decoded_events(merged_by_receipt(records)))
            broker_s = time.perf_counter() - started
    finally:
        broker.stop()
    checks["broker replay reads every event"] = len(records) == count
    checks["broker replay gives the same states"] = broker_states == reference
    broker_rate = count / broker_s
    results.append(
        Result(
            "b) replay: in memory vs broker",
            Measure("fold", memory_rate, "ev/s"),
            Measure("read_broker+decode+fold", broker_rate, "ev/s"),
            ratio(memory_rate, broker_rate),
            "A/B",
            f"a replay from the broker is fold-bound: reading alone ran at "
            f"{count / read_s:,.0f} ev/s (producing at {count / produce_s:,.0f} ev/s)",
            {
                "events": count,
                "produce_s": produce_s,
                "read_s": read_s,
                "decode_fold_s": broker_s - read_s,
                "memory_fold_s": memory_s,
                "codec_fold_s": codec_s,
            },
        )
    )
    return results, checks


# --- c) restore speed ------------------------------------------------------------------


def fill_durable_log(
    durable_log: DurableLog, total: int, values: Sequence[tuple[bytes, bytes]]
) -> dict[tuple[str, int], int]:
    """`total` records spread round-robin over the stream topics' partitions (8 here)."""
    durable_log.set_topics(STREAM_TOPICS)
    partitions = [
        (topic, p) for topic, count in sorted(STREAM_TOPICS.items()) for p in range(count)
    ]
    next_offset = dict.fromkeys(partitions, 0)
    base_ms = int(datetime(2019, 4, 5, tzinfo=UTC).timestamp() * 1000)
    records = []
    for index in range(total):
        topic, partition = partitions[index % len(partitions)]
        key, value = values[index % len(values)]
        offset = next_offset[(topic, partition)]
        next_offset[(topic, partition)] = offset + 1
        records.append(StoredRecord(topic, partition, offset, base_ms + index * 1000, key, value))
    durable_log.append(records)
    return next_offset


async def naive_restore(bootstrap: str, durable_log: DurableLog) -> int:
    """The same records, producer settings and topics, but each send awaited before the next."""
    topics = durable_log.topics()
    await ensure_topics(bootstrap, topics)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1, linger_ms=0
    )
    await producer.start()
    count = 0
    try:
        for topic, partitions in topics.items():
            for partition in range(partitions):
                for record in durable_log.read(topic, partition):
                    await producer.send_and_wait(
                        topic,
                        record.value,
                        key=record.key,
                        partition=partition,
                        timestamp_ms=record.timestamp_ms,
                    )
                    count += 1
    finally:
        await producer.stop()
    return count


async def end_offsets(bootstrap: str) -> dict[tuple[str, int], int]:
    async with assigned_consumer(bootstrap, sorted(STREAM_TOPICS)) as (consumer, tps):
        ends = await true_end_offsets(consumer, tps)
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


async def bench_restore(
    total: int, values: Sequence[tuple[bytes, bytes]]
) -> tuple[list[Result], dict[str, bool]]:
    brokers = [EmbeddedBroker(port=free_port()), EmbeddedBroker(port=free_port())]
    with tempfile.TemporaryDirectory(prefix="metasup-bench-") as tmp:
        durable_log = DurableLog(Path(tmp) / "log.sqlite3")
        try:
            expected = fill_durable_log(durable_log, total, values)
            with quiet_kafka_client():
                await asyncio.gather(*(broker.start() for broker in brokers))
            pipelined, naive = brokers
            say(f"[c] restore {total:,} records (pipelined) into {pipelined.bootstrap}")
            started = time.perf_counter()
            report = await restore(pipelined.bootstrap, durable_log)
            pipelined_s = time.perf_counter() - started
            say(
                f"[c] restore {total:,} records (one send awaited at a time) into {naive.bootstrap}"
            )
            started = time.perf_counter()
            naive_count = await naive_restore(naive.bootstrap, durable_log)
            naive_s = time.perf_counter() - started
            checks = {
                "pipelined restore: every partition at its recorded end": (
                    report.records == total and await end_offsets(pipelined.bootstrap) == expected
                ),
                "naive restore: every partition at its recorded end": (
                    naive_count == total and await end_offsets(naive.bootstrap) == expected
                ),
            }
        finally:
            for broker in brokers:
                broker.stop()
            durable_log.close()
    pipelined_rate, naive_rate = total / pipelined_s, total / naive_s
    result = Result(
        "c) restore from the durable log",
        Measure("pipelined restore()", pipelined_rate, "rec/s"),
        Measure("send_and_wait loop", naive_rate, "rec/s"),
        ratio(pipelined_rate, naive_rate),
        "A/B",
        f"{total:,} records over {len(expected)} partitions, one record per batch: pipelining "
        f"cuts start-up after a broker loss from {naive_s:,.1f} s to {pipelined_s:,.1f} s",
        {"records": total, "pipelined_s": pipelined_s, "naive_s": naive_s},
    )
    return [result], checks


# --- report ----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[list[Result], dict[str, Any]]:
    started = time.perf_counter()
    say(f"[a] generating {args.agents} agents x {args.days} days (seed {args.seed})")
    stream = generate_stream(args.agents, args.days, args.seed)
    fold_all(stream[:200])  # warm-up: first-call costs stay out of the timings
    say(f"[b] pure fold of {len(stream):,} events")
    history: list[tuple[str, AgentState]] = []
    states, memory_s = timed_fold(stream, history)
    say(f"[a] persist {len(history):,} states two ways")
    results, checks = bench_changelog(history, states)
    del history
    replay_results, replay_checks = await bench_replay(stream, memory_s, states)
    values = [(event.agent.encode(), encode_event(event)) for event in stream[:5_000]]
    restore_results, restore_checks = await bench_restore(args.restore_records, values)
    results += replay_results + restore_results
    return results, {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "params": {
            "agents": args.agents,
            "days": args.days,
            "seed": args.seed,
            "events": len(stream),
            "restore_records": args.restore_records,
        },
        "results": [asdict(result) for result in results],
        "checks": {**checks, **replay_checks, **restore_checks},
        "wall_s": time.perf_counter() - started,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--agents", type=int, default=2, help="agents in the stream (default 2)")
    parser.add_argument("--days", type=int, default=90, help="days of the stream (default 90)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--restore-records", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results, report = asyncio.run(run(args))
    print(table(results))
    print()
    for name, ok in report["checks"].items():
        print(f"check: {name}: {'ok' if ok else 'FAILED'}")
    params = report["params"]
    print(
        f"{params['events']:,} events ({params['agents']} agents x {params['days']} days), "
        f"{params['restore_records']:,} restore records; wall time {report['wall_s']:,.1f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
