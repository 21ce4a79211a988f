"""The live pipeline on the embedded broker, measured end to end, each figure beside its floor.

    python -m bench.pipeline [--days 20] [--agents 12] [--catchup-cap-s 150]

a) Raw produce through the proxy (acks=all, ack held until the durable log has the
   records): one record per batch beside normal batching, and whether
   `end_offsets()` through the proxy equals the true count.
b) Pipeline catch-up: `metasup up` (embedded broker, recorder, one Faust worker) in
   its own process, a generated fleet (12 agents, 20 days of hourly real BTC prices,
   hourly runs and signals per agent) produced by one plain aiokafka producer in
   event-time order to the source topics; timed until the workers' committed offsets
   reach the end of every internal and derived input they read (the lag logic of
   `metasup status`), in source events/s. Capped: a pipeline that does not catch up
   in time is reported with how far it got.
c) The floor: a Faust agent that does nothing with the same source records, on a
   fresh stack with no workers of ours.
d) Durable records written per source event (rows of the durable log by topic).
e) Latency under steady load (after catch-up): the fleet goes on at a steady pace;
   from the moment the price that closes a 24 h horizon is sent to the record
   timestamps of the `confidence.updated` (horizon 24 h, same event time) and
   `decision.made` (same event time) that follow. Approximate: producer and broker
   clocks are the same machine's.

Only public topics are used: the bench does not depend on the topology's internals.
Prints a table and writes JSON to var/bench/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import decode_event, encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import PriceObserved, RunCompleted, SignalEmitted
from schemas.topics import CATALOGUE, key_for, topic_for
from streams.broker.admin import topic_partitions
from streams.broker.embedded import free_port
from streams.broker.offsets import true_end_offsets
from streams.reconcile.candles import candle_to_event
from streams.reconcile.csv_source import DEMO_CSV, read_candles
from streams.runtime.topology import RELAYED_DERIVED

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "var" / "bench" / "pipeline.json"
SHARED_CSV = Path("/work/shared/data/bitfinex-1h-btc-usd.csv")
SOURCE_TOPICS = [spec.name for spec in CATALOGUE if spec.origin == "source"]
INTERNAL_TOPICS = [spec.name for spec in CATALOGUE if spec.origin == "internal"]

HOUR = timedelta(hours=1)
STRATEGIES = ("momentum", "mean_reversion", "breakout", "contrarian")


# ----------------------------------------------------------------------------- data


def fleet(
    days: int, agents: int, steady_hours: int, seed: int = 7
) -> tuple[list[Event], list[Event]]:
    """(backlog, steady): hourly prices, and per agent and hour a run and a signal, in
    event-time order (prices first at equal times). `steady` continues the backlog."""
    path = SHARED_CSV if SHARED_CSV.exists() else DEMO_CSV
    candles = read_candles(path)
    hours = days * 24 + steady_hours
    prices = [candle_to_event(c, "bench") for c in candles[1000 : 1000 + hours + 24]][:hours]
    rng = random.Random(seed)
    skills = [rng.uniform(0.4, 0.65) for _ in range(agents)]
    stream: list[Event] = []
    for hour, price in enumerate(prices):
        at = price.ts
        stream.append(price)
        ahead = prices[min(hour + 24, len(prices) - 1)].price
        for index in range(agents):
            name = f"agent-{index:02d}"
            run_id = uuid.UUID(str(derived_event_id("bench-run", name, hour)))
            stream.append(
                RunCompleted.create(
                    event_id=derived_event_id("run", run_id),
                    ts=at,
                    producer="bench",
                    agent=name,
                    run_id=run_id,
                    started_at=at - HOUR / 60,
                    latency_ms=rng.uniform(200, 1500),
                    tokens_in=1000,
                    tokens_out=200,
                    cost_usd=0.002,
                    errors=0,
                    strategy_class=STRATEGIES[index % len(STRATEGIES)],
                )
            )
            right = rng.random() < skills[index]
            up = ahead > price.price
            stream.append(
                SignalEmitted.create(
                    event_id=derived_event_id("signal", run_id),
                    ts=at,
                    producer="bench",
                    agent=name,
                    run_id=run_id,
                    symbol="BTC",
                    direction="LONG" if up == right else "SHORT",
                    confidence=round(rng.uniform(0.5, 0.9), 3),
                    regime="MIXED",
                    strategy_class=STRATEGIES[index % len(STRATEGIES)],
                )
            )
    boundary = prices[days * 24].ts if steady_hours else None
    backlog = [e for e in stream if boundary is None or e.ts < boundary]
    return backlog, stream[len(backlog) :]


def encoded(prefix: str, items: Iterable[Event]) -> list[tuple[str, bytes, bytes, Event]]:
    out = []
    for event in items:
        spec = topic_for(event)
        out.append((prefix + spec.name, key_for(event, spec), encode_event(event), event))
    return out


# ----------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> dict[int, str]:
    """pid -> role (stack, tansu, worker) for `root` and its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    roles = {}
    for pid in tree:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        roles[pid] = "worker" if "faust" in cmd else "stack" if pid == root else "tansu"
    return roles


@dataclass
class CpuMeter:
    root: int
    start: dict[int, float] = field(default_factory=dict)
    started_at: float = 0.0

    def begin(self) -> None:
        self.start = {pid: cpu_seconds(pid) for pid in process_tree(self.root)}
        self.started_at = time.monotonic()

    def percent(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        used: dict[str, float] = {}
        for pid, role in process_tree(self.root).items():
            used[role] = used.get(role, 0.0) + cpu_seconds(pid) - self.start.get(pid, 0.0)
        return {role: round(100 * seconds / elapsed, 1) for role, seconds in used.items()}


@dataclass
class StackProcess:
    """`metasup up` in its own process, as a user runs it."""

    data_dir: Path
    prefix: str
    workers: int
    app_id: str = "metasup"
    process: subprocess.Popen[bytes] | None = None
    bootstrap: str = ""

    async def start(self, timeout_s: float = 60.0) -> None:
        env = {
            **os.environ,
            "METASUP_DATA_DIR": str(self.data_dir),
            "METASUP_BROKER_PORT": "0",
            "METASUP_TOPIC_PREFIX": self.prefix,
            "METASUP_APP_ID": self.app_id,
            "METASUP_WEB_PORT": str(free_port()),
            "METASUP_PRICE_FEED": "none",
        }
        env.pop("METASUP_BROKER", None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = spawn(
            [sys.executable, "-m", "streams.cli.main", "up", "--workers", str(self.workers)],
            env,
            self.data_dir / "stack.out",
        )
        deadline = time.monotonic() + timeout_s
        stack_json = self.data_dir / "stack.json"
        while not has_text(stack_json, "bootstrap"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stack did not start: {self.output()[-2000:]}")
            await asyncio.sleep(0.1)
        self.bootstrap = json.loads(stack_json.read_text())["bootstrap"]
        for index in range(self.workers):
            await wait_for_text(self.data_dir / f"worker-{index}.log", "Worker ready", deadline)

    def output(self) -> str:
        return (self.data_dir / "stack.out").read_text(errors="replace")

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(self.process.wait, 90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)
        self.process = None


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def has_text(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def wait_for_text(path: Path, text: str, deadline: float) -> None:
    while True:
        if has_text(path, text):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in {path} in time")
        await asyncio.sleep(0.1)


# ----------------------------------------------------------------------------- measuring


class GroupProgress:
    """Committed offsets of a consumer group against the true ends (fetch highwater),
    without joining the group: `metasup status`'s lag logic, on one reused consumer."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )

    async def __aenter__(self) -> GroupProgress:
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def snapshot(
        self, topics: list[str]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        existing = await topic_partitions(self.bootstrap)
        tps = [TopicPartition(t, p) for t in topics for p in range(existing.get(t, 0))]
        self.consumer.assign(tps)
        committed = {}
        for tp in tps:
            offset = await self.consumer.committed(tp)
            if offset is not None and offset >= 0:
                committed[tp] = offset
        ends = await true_end_offsets(self.consumer, tps)
        return committed, ends


async def wait_caught_up(
    progress: GroupProgress,
    topics: list[str],
    required: list[str],
    cap_s: float,
    every_s: float = 0.5,
) -> tuple[bool, float, int]:
    """Wait until every partition of `required` with records, and every partition the
    group has committed, is committed to its end (twice in a row). Returns (caught up,
    seconds, records still behind at the last look)."""
    started = time.monotonic()
    clean = 0
    behind = -1
    while time.monotonic() - started < cap_s:
        committed, ends = await progress.snapshot(topics)
        behind = 0
        for tp, end in ends.items():
            if tp in committed or (tp.topic in required and end > 0):
                behind += max(0, end - committed.get(tp, 0))
        clean = clean + 1 if behind == 0 else 0
        if clean >= 2:
            return True, time.monotonic() - started, 0
        await asyncio.sleep(every_s)
    return False, time.monotonic() - started, behind


async def produce_all(
    bootstrap: str,
    records: list[tuple[str, bytes, bytes, Any]],
    cap_s: float | None = None,
    **producer_args: Any,
) -> tuple[float, int]:
    """Send everything pipelined (one producer, in order), in chunks of 1000 if `cap_s`
    (then stopping after the chunk that passes it); (seconds until all sent records are
    acknowledged, records sent)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_args)
    await producer.start()
    try:
        started = time.monotonic()
        chunk = 1000 if cap_s is not None else len(records) or 1
        sent = 0
        for at in range(0, len(records), chunk):
            pending = [
                await producer.send(topic, value, key=key)
                for topic, key, value, _ in records[at : at + chunk]
            ]
            await asyncio.gather(*pending)
            sent += len(pending)
            if cap_s is not None and time.monotonic() - started > cap_s:
                break
        return time.monotonic() - started, sent
    finally:
        await producer.stop()


async def end_offset_check(bootstrap: str, topic: str) -> tuple[int, int]:
    """(sum of end_offsets() through the proxy, sum of true ends from fetch highwater)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = (await topic_partitions(bootstrap))[topic]
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        reported = sum((await consumer.end_offsets(tps)).values())
        true = sum((await true_end_offsets(consumer, tps)).values())
        return reported, true
    finally:
        await consumer.stop()


def durable_counts(data_dir: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{data_dir / 'log.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        return dict(db.execute("SELECT topic, count(*) FROM records GROUP BY topic").fetchall())
    finally:
        db.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- phases


async def raw_produce(work: Path, count: int) -> dict[str, Any]:
    stack = StackProcess(work / "raw", "r.", workers=0)
    await stack.start()
    try:
        value = b"x" * 200
        result: dict[str, Any] = {"records": count}
        for label, args in (
            ("one_record_batches", {"max_batch_size": 1, "linger_ms": 0}),
            ("batched", {"linger_ms": 5}),
        ):
            topic = f"r.raw-{label}"
            records = [(topic, str(i % 64).encode(), value, None) for i in range(count)]
            seconds, sent = await produce_all(stack.bootstrap, records, cap_s=20.0, **args)
            reported, true = await end_offset_check(stack.bootstrap, topic)
            result[label] = {
                "records": sent,
                "records_per_s": round(sent / seconds),
                "end_offsets_reported": reported,
                "end_offsets_true": true,
            }
        return result
    finally:
        await stack.stop()


async def pipeline(
    work: Path, backlog: list[Event], steady: list[Event], cap_s: float, steady_rate: float
) -> dict[str, Any]:
    prefix = "p."
    stack = StackProcess(work / "pipeline", prefix, workers=1)
    await stack.start()
    assert stack.process is not None
    meter = CpuMeter(stack.process.pid)
    result: dict[str, Any] = {"source_events": len(backlog)}
    topics = [prefix + spec.name for spec in CATALOGUE]
    # What the workers read: the source intakes, the processor inputs, and the relays of
    # the fleet facts the processors write themselves.
    required = [
        prefix + n for n in ("runs", "signals", "prices", *INTERNAL_TOPICS, *RELAYED_DERIVED)
    ]
    try:
        async with GroupProgress(stack.bootstrap, prefix + "metasup") as progress:
            meter.begin()
            started = time.monotonic()
            produce_s, _ = await produce_all(stack.bootstrap, encoded(prefix, backlog))
            caught_up, _, behind = await wait_caught_up(
                progress, topics, required, max(cap_s - (time.monotonic() - started), 1.0)
            )
            elapsed = time.monotonic() - started
            written = sum(durable_counts(stack.data_dir).values())
            result.update(
                pipeline_records_written=written - len(backlog),
                pipeline_records_per_s=round((written - len(backlog)) / elapsed, 1),
                produce_s=round(produce_s, 1),
                caught_up=caught_up,
                seconds=round(elapsed, 1),
                records_behind_at_cap=behind,
                cpu_percent=meter.percent(),
            )
            if caught_up:
                result["events_per_s"] = round(len(backlog) / elapsed, 1)
            else:
                committed, ends = await progress.snapshot([prefix + n for n in SOURCE_TOPICS])
                done = sum(committed.get(tp, 0) for tp in ends)
                result["source_committed"] = done
                # Not a catch-up rate: the intakes' progress only (downstream lags more).
                result["source_intake_per_s"] = round(done / elapsed, 1)
                result["events_per_s"] = None
            result["latency"] = (
                await steady_latency(stack, progress, prefix, steady, steady_rate, topics, required)
                if caught_up and steady
                else None
            )
        result["durable_by_topic"] = durable_counts(stack.data_dir)
    finally:
        await stack.stop()
    result["durable_by_topic_after_stop"] = durable_counts(stack.data_dir)
    warnings = stack.output() + (stack.data_dir / "worker-0.log").read_text(errors="replace")
    result["log_counts"] = {
        text: warnings.count(text)
        for text in (
            "released before it was copied",
            "not acknowledged after",
            "producer buffer full",
        )
    }
    return result


async def steady_latency(
    stack: StackProcess,
    progress: GroupProgress,
    prefix: str,
    steady: list[Event],
    rate: float,
    topics: list[str],
    required: list[str],
) -> dict[str, Any]:
    """Send `steady` at `rate` events/s; latency from each price's send to the outputs."""
    sent_at: dict[datetime, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for index, (topic, key, value, event) in enumerate(encoded(prefix, steady)):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if isinstance(event, PriceObserved):
                sent_at[event.ts] = time.time()
            pending.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    caught_up, _, _ = await wait_caught_up(progress, topics, required, 60.0)
    latencies: dict[str, list[float]] = {"confidence": [], "decisions": []}
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        for name in latencies:
            parts = (await topic_partitions(stack.bootstrap)).get(prefix + name, 0)
            tps = [TopicPartition(prefix + name, p) for p in range(parts)]
            if not tps:
                continue
            consumer.assign(tps)
            ends = await true_end_offsets(consumer, tps)
            for tp in tps:
                consumer.seek(tp, 0)
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                for tp, messages in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                    for m in messages:
                        event = decode_event(m.value)
                        at = sent_at.get(event.ts)
                        if at is None:
                            continue
                        if name == "confidence" and getattr(event, "horizon_hours", 24) != 24:
                            continue
                        latencies[name].append(m.timestamp / 1000 - at)
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return {
        "events": len(steady),
        "rate_per_s": rate,
        "caught_up_after": caught_up,
        **{
            name: {
                "n": len(values),
                "p50_s": _round(percentile(values, 0.5)),
                "p99_s": _round(percentile(values, 0.99)),
                "mean_s": _round(statistics.fmean(values) if values else None),
            }
            for name, values in latencies.items()
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


NOOP_ENV = "BENCH_PIPELINE_NOOP"


def noop_worker() -> None:
    """A Faust worker with the project's settings and one agent that does nothing."""
    import faust

    from streams.runtime.app import faust_settings
    from streams.runtime.faust_fixes import apply_faust_fixes
    from streams.runtime.settings import get_settings

    settings = get_settings()
    apply_faust_fixes()
    app = faust.App(settings.group_id, **faust_settings(settings))
    topic = app.topic(
        *[settings.topic(n) for n in ("runs", "signals", "prices")],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic)
    async def nothing(stream: Any) -> None:
        async for _ in stream:
            pass

    sys.argv = ["faust", "worker", "-l", "info", "--web-port", str(settings.web_port)]
    app.main()


async def floor(work: Path, backlog: list[Event], cap_s: float) -> dict[str, Any]:
    prefix = "f."
    stack = StackProcess(work / "floor", prefix, workers=0)
    await stack.start()
    records = encoded(prefix, backlog)
    worker: subprocess.Popen[bytes] | None = None
    try:
        await produce_all(stack.bootstrap, records)
        env = {
            **os.environ,
            "METASUP_BROKER": f"kafka://{stack.bootstrap}",
            "METASUP_TOPIC_PREFIX": prefix,
            "METASUP_APP_ID": "bench-noop",
            "METASUP_DATA_DIR": str(work / "floor-worker"),
            "METASUP_WEB_PORT": str(free_port()),
            NOOP_ENV: "1",
        }
        (work / "floor-worker").mkdir(parents=True, exist_ok=True)
        log_path = work / "floor-worker.log"
        worker = spawn([sys.executable, "-m", "bench.pipeline"], env, log_path)
        await wait_for_text(log_path, "Worker ready", time.monotonic() + 60)
        started = time.monotonic()
        sources = [prefix + n for n in ("runs", "signals", "prices")]
        async with GroupProgress(stack.bootstrap, prefix + "bench-noop") as progress:
            caught_up, _, _ = await wait_caught_up(progress, sources, sources, cap_s, every_s=0.1)
        elapsed = time.monotonic() - started
        return {
            "source_events": len(backlog),
            "caught_up": caught_up,
            "seconds_after_ready": round(elapsed, 2),
            "events_per_s": round(len(backlog) / elapsed, 1) if caught_up else None,
        }
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, 30)
            except subprocess.TimeoutExpired:
                worker.kill()
        await stack.stop()


async def restore_speed(work: Path, count: int, partitions: int = 8) -> dict[str, Any]:
    """`streams.broker.restore.restore` of a durable log of `count` records (200 B) over
    `partitions` partitions into a fresh embedded broker; the ends must equal the log's."""
    from streams.broker.durable_log import DurableLog, StoredRecord
    from streams.broker.embedded import EmbeddedBroker
    from streams.broker.restore import restore

    durable_log = DurableLog(work / "restore" / "log.sqlite3")
    topic = "restore-bench"
    durable_log.set_topics({topic: partitions})
    per_partition = count // partitions
    durable_log.append(
        StoredRecord(topic, p, o, 1_700_000_000_000 + o, f"k{o % 50}".encode(), b"x" * 200)
        for p in range(partitions)
        for o in range(per_partition)
    )
    broker = EmbeddedBroker(port=free_port(), log_path=work / "restore" / "tansu.log")
    await broker.start()
    try:
        started = time.monotonic()
        report = await restore(broker.bootstrap, durable_log, compact_changelog_topics=False)
        seconds = time.monotonic() - started
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            ends = await true_end_offsets(consumer, tps)
            listed = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return {
            "records": report.records,
            "records_per_s": round(report.records / seconds),
            "ends_equal_log": all(e == per_partition for e in ends.values()),
            "end_offsets_equal_log": all(e == per_partition for e in listed.values()),
        }
    finally:
        await broker.close()
        durable_log.close()


# ----------------------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    raw = result["raw_produce"]
    pipe = result["pipeline"]
    flo = result["floor"]
    lines = [
        f"pipeline bench ({result['agents']} agents, {result['days']} days, "
        f"{pipe['source_events']:,} source events; {result['cores']} cores)",
        "",
        "a) raw produce through the proxy, acks=all, pipelined "
        f"(up to {raw['records']:,} records of 200 B, 20 s at most)",
        f"   {'':<22}{'records/s':>10}{'end_offsets()':>15}{'true end':>10}",
    ]
    for label in ("one_record_batches", "batched"):
        row = raw[label]
        lines.append(
            f"   {label:<22}{row['records_per_s']:>10,}{row['end_offsets_reported']:>15,}"
            f"{row['end_offsets_true']:>10,}"
        )
    state = (
        "caught up"
        if pipe["caught_up"]
        else f"NOT caught up ({pipe['records_behind_at_cap']:,} behind)"
    )
    ratio = (
        f"{100 * pipe['events_per_s'] / flo['events_per_s']:.1f} %"
        if flo.get("events_per_s") and pipe.get("events_per_s")
        else "n/a"
    )
    rate = (
        f"{pipe['events_per_s']:>8,.1f}"
        if pipe.get("events_per_s")
        else f"{'n/a':>8} (intakes committed {pipe.get('source_intake_per_s', 0):,.1f}/s)"
    )
    lines += [
        "",
        "b/c) catch-up, source events/s",
        f"   pipeline (metasup up, 1 worker)  {rate}  "
        f"in {pipe['seconds']} s, {state}; producer done in {pipe['produce_s']} s",
        f"   Faust no-op agent (floor)        {flo['events_per_s'] or 0:>8,.1f}  "
        f"({flo['seconds_after_ready']} s after ready)",
        f"   pipeline / floor                 {ratio:>8}",
        f"   records the pipeline wrote (derived, internal, changelogs) in that time: "
        f"{pipe['pipeline_records_written']:,} ({pipe['pipeline_records_per_s']:,.1f}/s)",
        f"   CPU % during catch-up: {pipe['cpu_percent']}",
        "",
    ]
    durable = pipe["durable_by_topic_after_stop"]
    total = sum(durable.values())
    lines.append(
        f"d) durable records per source event: {total / pipe['source_events']:.2f} "
        f"({total:,} rows; includes the steady phase's)"
    )
    for topic, count in sorted(durable.items(), key=lambda kv: -kv[1]):
        lines.append(f"   {topic:<40}{count:>8,}")
    latency = pipe.get("latency")
    lines.append("")
    if latency:
        lines.append(
            f"e) latency under steady load ({latency['rate_per_s']:g} events/s, "
            f"{latency['events']:,} events), price sent -> output record"
        )
        for name in ("confidence", "decisions"):
            row = latency[name]
            lines.append(
                f"   {name:<12} n={row['n']:>5}  p50 {row['p50_s']} s  p99 {row['p99_s']} s"
            )
    else:
        lines.append("e) latency: not measured (the pipeline did not catch up)")
    lines.append(f"worker/stack log counts: {pipe['log_counts']}")
    restored = result.get("restore")
    if restored:
        lines.append(
            f"f) restore from the durable log: {restored['records_per_s']:,} records/s "
            f"({restored['records']:,} records; ends equal the log: {restored['ends_equal_log']},"
            f" end_offsets() too: {restored['end_offsets_equal_log']})"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    backlog, steady = fleet(args.days, args.agents, args.steady_hours)
    work = Path(tempfile.mkdtemp(prefix="metasup-bench-pipeline-"))
    started = time.monotonic()
    result: dict[str, Any] = {
        "days": args.days,
        "agents": args.agents,
        "cores": os.cpu_count(),
        "label": args.label,
    }
    if args.only == "restore":
        result["restore"] = await restore_speed(work, args.restore_records)
        return result
    result["raw_produce"] = await raw_produce(work, args.raw_records)
    result["pipeline"] = await pipeline(work, backlog, steady, args.catchup_cap_s, args.steady_rate)
    result["floor"] = await floor(work, backlog, 120.0)
    result["restore"] = await restore_speed(work, args.restore_records)
    result["total_s"] = round(time.monotonic() - started, 1)
    result["work_dir"] = str(work)
    return result


def cli() -> None:
    if os.environ.get(NOOP_ENV):
        noop_worker()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--agents", type=int, default=12)
    parser.add_argument("--steady-hours", type=int, default=30)
    parser.add_argument("--steady-rate", type=float, default=50.0, help="events/s in (e)")
    parser.add_argument("--raw-records", type=int, default=10_000)
    parser.add_argument("--catchup-cap-s", type=float, default=150.0)
    parser.add_argument("--restore-records", type=int, default=20_000)
    parser.add_argument("--only", choices=["restore"], help="run one part only")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.only:
        print(json.dumps(result, indent=2))
        return
    print(report(result))
    print(f"total {result['total_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
