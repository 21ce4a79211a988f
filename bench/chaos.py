"""`make chaos`: one run of the embedded stack under every fault we know, then an audit.

    python -m bench.chaos [--kills 10] [--short] [--seed N] [--keep]

A fleet on real BTC prices (the shipped Bitfinex candles) goes through what `metasup up`
runs (embedded broker, durable log, Faust workers), in segments, every source event
twice; between segments, at points drawn from a seeded RNG: a worker SIGKILLed (and
restarted by the stack) `--kills` times, the broker SIGKILLed once while a segment is in
flight (and restored from the durable log by the stack), a second worker started
(rebalance) and stopped, and bad input of every kind the intakes must refuse
(`bench.chaos_inputs`). Once the workers have caught up the stack stops, and the durable
log is audited against pure recomputations with no broker (`bench.chaos_audit`). It
prints one table and the line `chaos: <faults> faults, <lost> lost, <double>
double-counted, <rejected>/<bad> bad records in deadletter`, and exits non-zero when
anything was lost or counted twice, or a bad record is not in `deadletter` with a reason
that says what is wrong. `--short` is the form `make test`
runs (fewer agents, days and kills).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bench.chaos_audit import BAD_SECTION, Position, Row, audit
from bench.chaos_inputs import (
    ACTOR,
    Outgoing,
    bad_commands,
    bad_data,
    bad_facts,
    fleet_stream,
    good,
    valid_commands,
)
from bench.pipeline import GroupProgress, wait_caught_up
from projections.log import read_durable_log
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import PriceObserved
from schemas.topics import CATALOGUE
from streams.broker.embedded import free_port, port_is_free
from streams.broker.offsets import consumer_lag
from streams.fleet.commands import load_keyring, new_key
from streams.runtime.settings import Settings
from streams.runtime.stack import Stack, WorkerProcess, durable_log_path
from streams.runtime.supervisor_key import ensure_key_pair, load_signer
from streams.runtime.waiting import eventually

Say = Callable[[str], None]
PREFIX = "chaos."
FAULTS, STREAM, BAD = "faults", "stream", BAD_SECTION
WORKER_KILL, BROKER_KILL = "worker SIGKILL", "broker SIGKILL"
WORKER_JOIN, WORKER_LEAVE = "second worker joins (rebalance)", "second worker leaves (rebalance)"
# The topics the workers read: once their committed offsets reach the end of each, every
# derived event is on the log (outputs are acknowledged before offsets are committed).
WORKER_INPUTS = [
    PREFIX + spec.name
    for spec in CATALOGUE
    if spec.origin in ("source", "internal") or spec.name in ("kills", "allocations")
]


@dataclass(frozen=True)
class Plan:
    """The size of one run; the RNG seeded with `seed` draws where the faults land."""

    seed: int
    worker_kills: int
    agents: int
    days: int
    segments: int
    # Pause between segments per record sent: keeps the stream flowing while faults land
    # (pacing only; nothing waits on it for correctness).
    seconds_per_record: float
    catch_up_s: float

    @classmethod
    def full(cls, seed: int, kills: int) -> Plan:
        return cls(
            seed, kills, agents=6, days=20, segments=48, seconds_per_record=0.006, catch_up_s=300
        )

    @classmethod
    def short(cls, seed: int, kills: int) -> Plan:
        return cls(
            seed, kills, agents=4, days=8, segments=16, seconds_per_record=0.006, catch_up_s=240
        )


@dataclass(frozen=True)
class Schedule:
    """Segment index of each fault and each bad record. The second worker joins in the
    first third and leaves by the middle, and the broker dies after that: a restore
    restarts only the stack's own worker. Worker kills fall anywhere but on the broker's
    segment, several on one segment if the draw says so."""

    kills: tuple[int, ...]
    broker_kill: int
    join: int
    leave: int
    bad_data: tuple[int, ...]
    commands: int
    facts: int

    @classmethod
    def draw(cls, plan: Plan, rng: random.Random, bad_records: int) -> Schedule:
        last = plan.segments - 1
        join = rng.randint(last * 2 // 10, last * 3 // 10)
        leave = rng.randint(last * 45 // 100, last * 55 // 100)
        broker = rng.randint(last * 65 // 100, last * 85 // 100)
        spots = [s for s in range(1, last) if s != broker]
        return cls(
            kills=tuple(sorted(rng.choices(spots, k=plan.worker_kills))),
            broker_kill=broker,
            join=join,
            leave=leave,
            bad_data=tuple(rng.randrange(last) for _ in range(bad_records)),
            commands=rng.randint(1, last - 1),
            facts=rng.randint(1, last - 1),
        )


@dataclass
class Sender:
    """One acks=all producer, as an outside client would use it: a send that fails (the
    broker died under it) is sent again once the stack is back, so records are
    delivered at least once. Remembers where each acknowledged record was written."""

    bootstrap: str
    ready: Callable[[], bool]
    acked: list[tuple[Position, bytes | None]] = field(default_factory=list)
    bad: list[tuple[Outgoing, Position]] = field(default_factory=list)
    resends: int = 0
    _producer: AIOKafkaProducer | None = None

    async def send(self, batch: list[Outgoing]) -> None:
        pending = batch
        while pending:
            pending = await self._attempt(pending)
            if pending:
                self.resends += len(pending)
                await self._reconnect()

    async def _attempt(self, batch: list[Outgoing]) -> list[Outgoing]:
        producer = await self._started()
        sent: list[tuple[Outgoing, Any]] = []
        failed: list[Outgoing] = []
        for at, outgoing in enumerate(batch):
            try:
                future = await producer.send(
                    PREFIX + outgoing.topic, outgoing.value, key=outgoing.key
                )
            except KafkaError:
                failed = batch[at:]
                break
            sent.append((outgoing, future))
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (outgoing, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(outgoing)
                continue
            position = (outgoing.topic, result.partition, result.offset)
            self.acked.append((position, outgoing.value))
            if outgoing.kind:
                self.bad.append((outgoing, position))
        return failed

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, request_timeout_ms=20000
            )
            await self._producer.start()
        return self._producer

    async def _reconnect(self) -> None:
        await self.close()
        await eventually(self.ready, timeout_s=180, every_s=0.2)

    async def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), timeout=10)
            self._producer = None


@dataclass
class Faults:
    """The faults, done to the stack `metasup up` runs; the stack itself recovers."""

    stack: Stack
    rng: random.Random
    say: Say
    done: dict[str, int] = field(default_factory=dict)
    extra: WorkerProcess | None = None

    def count(self, what: str) -> None:
        self.done[what] = self.done.get(what, 0) + 1

    def recovered(self) -> bool:
        broker, workers = self.stack.broker, self.stack.worker_processes
        return (
            broker is not None
            and broker.alive()
            and self.stack.recorder is not None
            and bool(workers)
            and all(w.alive() for w in workers)
        )

    async def kill_worker(self) -> None:
        worker = self.rng.choice(self.stack.worker_processes)
        await eventually(lambda: ready(worker), timeout_s=120, every_s=0.2)
        await asyncio.sleep(self.rng.uniform(0.0, 4.0))  # a random point of its work
        process = worker.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.count(WORKER_KILL)
        self.say(f"SIGKILL worker {worker.index + 1} (pid {process.pid})")
        await eventually(
            lambda: worker.process is not process and worker.alive(), timeout_s=120, every_s=0.1
        )
        self.say(
            f"  worker {worker.index + 1} restarted by the stack in "
            f"{time.monotonic() - killed:.1f} s"
        )

    async def kill_broker(self, sending: asyncio.Task[None]) -> None:
        broker = self.stack.broker
        assert broker is not None and broker.process is not None
        first = broker.process
        await asyncio.sleep(self.rng.uniform(0.0, 0.05))  # the rest of the segment in flight
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.count(BROKER_KILL)
        self.say(f"SIGKILL broker (pid {first.pid}) while a segment is being sent")
        await eventually(
            lambda: broker.process is not first and self.recovered(), timeout_s=240, every_s=0.2
        )
        self.say(
            f"  stack restored the broker from the durable log in {time.monotonic() - killed:.1f} s"
        )
        await sending

    def join(self, settings: Settings) -> None:
        self.extra = WorkerProcess(1, self.stack.bootstrap, settings)
        self.extra.start()
        self.stack.worker_processes.append(self.extra)
        self.count(WORKER_JOIN)
        self.say("second worker started: partitions rebalance")

    async def leave(self) -> None:
        if self.extra is None:
            return
        self.stack.worker_processes.remove(self.extra)  # the stack must not restart it
        await self.extra.stop()
        self.extra = None
        self.count(WORKER_LEAVE)
        self.say("second worker stopped: partitions rebalance back")


def ready(worker: WorkerProcess) -> bool:
    """Whether the worker's current process has said "Ready" in its log (it has joined
    the group and recovered its tables: it is processing)."""
    if not worker.alive() or worker.process is None:
        return False
    log = worker.settings.data_dir / f"worker-{worker.index}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"[{worker.process.pid}] [INFO] [^Worker]: Ready" in text


def segments(stream: list[Outgoing], count: int) -> list[list[Outgoing]]:
    """The stream in `count` pieces; each piece also carries the copies of the one before
    (every event twice, the copy late, as a client's retry or a replay would be)."""
    size = -(-len(stream) // count)
    pieces = [stream[at : at + size] for at in range(0, len(stream), size)]
    with_copies = [[*piece, *(pieces[i - 1] if i else [])] for i, piece in enumerate(pieces)]
    with_copies[-1] += pieces[-1]
    return with_copies


def settings_for(data_dir: Path) -> Settings:
    web = free_port()
    while not port_is_free(web + 1):  # the second worker serves on the next port
        web = free_port()
    return Settings(
        METASUP_DATA_DIR=data_dir,
        METASUP_BROKER_PORT=0,
        METASUP_TOPIC_PREFIX=PREFIX,
        METASUP_WEB_PORT=web,
    )


@dataclass(frozen=True)
class Outcome:
    rows: list[Row]
    caught_up: bool
    data_dir: Path

    @property
    def faults(self) -> int:
        return sum(r.live for r in self.rows if r.section == FAULTS)

    @property
    def lost(self) -> int:
        return sum(r.missing for r in self.rows if r.section not in (FAULTS, STREAM, BAD))

    @property
    def double(self) -> int:
        return sum(r.extra + r.wrong for r in self.rows if r.section.startswith("derived"))

    @property
    def bad_rows(self) -> list[Row]:
        return [r for r in self.rows if r.section == BAD and r.expected]

    @property
    def bad(self) -> int:
        return sum(r.expected for r in self.bad_rows)

    @property
    def rejected(self) -> int:
        return sum(r.live for r in self.bad_rows)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.double == 0 and self.rejected == self.bad

    def line(self) -> str:
        return (
            f"chaos: {self.faults} faults, {self.lost} lost, "
            f"{self.double} double-counted, {self.rejected}/{self.bad} bad records in deadletter"
        )


async def run(plan: Plan, say: Say, data_dir: Path) -> Outcome:
    """One chaos run in `data_dir`; returns the audit."""
    rng = random.Random(plan.seed)
    started = time.monotonic()

    def progress(line: str) -> None:
        say(f"[{time.monotonic() - started:6.1f} s] {line}")

    settings = settings_for(data_dir)
    ensure_key_pair(settings)
    secret = bytes.fromhex(new_key())
    (data_dir / "operator-keys.json").write_bytes(orjson.dumps({ACTOR: secret.hex()}))
    events = fleet_stream(plan.agents, plan.days, plan.seed)
    sample = next(e for e in events if isinstance(e, PriceObserved))
    pieces = segments([good(e) for e in events], plan.segments)
    bad = bad_data(sample)
    schedule = Schedule.draw(plan, rng, len(bad))
    for index, outgoing in zip(schedule.bad_data, bad, strict=True):
        pieces[index].insert(rng.randint(0, len(pieces[index])), outgoing)
    progress(
        f"seed {plan.seed}: {plan.agents} agents, {plan.days} days of hourly BTC prices, "
        f"{len(events):,} source events sent twice in {len(pieces)} segments; "
        f"{plan.worker_kills} worker kills at segments {list(schedule.kills)}, broker kill at "
        f"{schedule.broker_kill}, second worker from {schedule.join} to {schedule.leave}"
    )
    stack = Stack(settings, workers=1, say=lambda line: progress(f"stack: {line}"))
    stop = asyncio.Event()
    running = asyncio.create_task(stack.run(stop))
    faults = Faults(stack, rng, progress)
    await eventually(faults.recovered, timeout_s=120, every_s=0.1)
    sender = Sender(stack.bootstrap, faults.recovered)
    try:
        await drive(plan, schedule, pieces, sender, faults, settings, secret, progress)
        caught_up = await catch_up(stack.bootstrap, settings, plan, progress)
    finally:
        await sender.close()
        await faults.leave()
        stop.set()
        await asyncio.wait_for(running, timeout=120)
    progress("stack stopped; auditing the durable log (no broker)")
    records = read_durable_log(durable_log_path(settings), [PREFIX + s.name for s in CATALOGUE])
    rows = audit(
        records,
        PREFIX,
        load_signer(settings),
        load_keyring(settings.keyring_source()),
        sender.acked,
        sender.bad,
    )
    progress(f"audit done ({len(records):,} records)")
    return Outcome(
        [*fault_rows(plan, faults), *stream_rows(events, sender), *rows], caught_up, data_dir
    )


def fault_rows(plan: Plan, faults: Faults) -> list[Row]:
    planned = {
        WORKER_KILL: plan.worker_kills,
        BROKER_KILL: 1,
        WORKER_JOIN: 1,
        WORKER_LEAVE: 1,
    }
    return [Row(FAULTS, what, count, faults.done.get(what, 0)) for what, count in planned.items()]


def stream_rows(events: list[Event], sender: Sender) -> list[Row]:
    """What was sent: every source event twice (the copy late), each bad record once."""
    copies = Counter(value for _, value in sender.acked)
    twice = sum(copies[encode_event(event)] >= 2 for event in events)
    return [
        Row(
            STREAM,
            "source events sent twice",
            len(events),
            twice,
            note=f"{sender.resends} sends repeated by the client after failures",
        ),
        Row(STREAM, "bad records sent", len(sender.bad), len(sender.bad)),
    ]


async def drive(
    plan: Plan,
    schedule: Schedule,
    pieces: list[list[Outgoing]],
    sender: Sender,
    faults: Faults,
    settings: Settings,
    secret: bytes,
    progress: Say,
) -> None:
    """Send the segments in order, each followed by the faults drawn for it."""
    for index, piece in enumerate(pieces):
        batch = [*piece, *governance(index, schedule, secret)]
        if index == schedule.broker_kill:
            point = faults.rng.randint(1, len(batch) // 2)
            await sender.send(batch[:point])
            await faults.kill_broker(asyncio.create_task(sender.send(batch[point:])))
        else:
            await sender.send(batch)
        if index == schedule.join:
            faults.join(settings)
        if index == schedule.leave:
            await faults.leave()
        for _ in range(schedule.kills.count(index)):
            await faults.kill_worker()
        if index % 4 == 3 or index == len(pieces) - 1:
            progress(
                f"segment {index + 1}/{len(pieces)} acknowledged ({len(sender.acked):,} records)"
            )
        await asyncio.sleep(len(batch) * plan.seconds_per_record)


def governance(index: int, schedule: Schedule, secret: bytes) -> list[Outgoing]:
    """Operators' commands (each valid one twice: the copy is a replay) and forged facts,
    made when sent: commands are judged fresh at receipt."""
    now = datetime.now(UTC)
    out: list[Outgoing] = []
    if index == schedule.commands:
        valid = valid_commands(now, secret)
        out += [good(command) for command in valid] + bad_commands(now, secret, valid)
    if index == schedule.facts:
        out += bad_facts(now)
    return out


async def catch_up(bootstrap: str, settings: Settings, plan: Plan, progress: Say) -> bool:
    """Wait until the workers have committed every input to its end; name what lags if not."""
    progress("all sent; waiting for the workers to commit every input to its end")
    async with GroupProgress(bootstrap, settings.group_id) as group:
        done, seconds, behind = await wait_caught_up(
            group, WORKER_INPUTS, WORKER_INPUTS, plan.catch_up_s
        )
    if done:
        progress(f"workers caught up in {seconds:.1f} s")
        return True
    lags = await consumer_lag(bootstrap, settings.group_id, WORKER_INPUTS)
    stalled = ", ".join(
        f"{lag.topic.removeprefix(PREFIX)}[{lag.partition}] {lag.committed}/{lag.end}"
        for lag in lags
        if lag.lag
    )
    progress(f"workers did NOT catch up in {seconds:.0f} s ({behind:,} records behind: {stalled})")
    return False


def table(outcome: Outcome) -> str:
    """One table: faults done, then each check with what was expected and what was found."""
    headers = ("check", "expected", "found", "missing", "extra", "wrong", "note")
    lines: list[tuple[str, ...]] = []
    section = ""
    for row in outcome.rows:
        if row.section != section:
            section = row.section
            lines.append((section, "", "", "", "", "", ""))
        lines.append(
            (
                f"  {row.name}",
                f"{row.expected:,}",
                f"{row.live:,}",
                f"{row.missing:,}",
                f"{row.extra:,}",
                f"{row.wrong:,}",
                row.note[:90],
            )
        )
    widths = [max(len(line[i]) for line in [headers, *lines]) for i in range(len(headers) - 1)]

    def render(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        numbers = "  ".join(c.rjust(w) for c, w in zip(cells[1:-1], widths[1:], strict=True))
        return f"{first}  {numbers}  {cells[-1]}".rstrip()

    rule = "-" * (sum(widths) + 2 * len(widths) + 20)
    return "\n".join([render(headers), rule, *(render(line) for line in lines)])


async def main(plan: Plan, keep: bool) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="metasup-chaos-"))
    outcome = await run(plan, lambda line: print(line, flush=True), data_dir)
    print()
    print(table(outcome))
    print()
    if not outcome.caught_up:
        print("the workers did not catch up: what they had not processed counts as lost")
    if keep or not outcome.ok:
        print(f"data dir kept for inspection: {data_dir} (worker logs, durable log)")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(outcome.line())
    return 0 if outcome.ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, help="worker SIGKILLs (default 10, 3 with --short)")
    parser.add_argument("--short", action="store_true", help="the short form of `make test`")
    parser.add_argument("--seed", type=int, default=None, help="reproduce a run's fault points")
    parser.add_argument("--keep", action="store_true", help="keep the data dir even if all is well")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    plan = (
        Plan.short(seed, 3 if args.kills is None else args.kills)
        if args.short
        else Plan.full(seed, 10 if args.kills is None else args.kills)
    )
    sys.exit(asyncio.run(main(plan, args.keep)))


if __name__ == "__main__":
    cli()
