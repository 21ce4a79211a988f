"""The pure engine, measured beside its floors: replay of a large log, per-event cost vs history.

    python -m bench.engine [--events 1000000] [--quick]

a) Pure replay. A deterministic log of `--events` source events (hourly prices of a
   few symbols, hourly runs and signals of `--agents` agents, a policy first and a
   weekly regime change, in event-time order) is encoded once with the wire codec
   into a JSON-lines file (the "log"). Then, each in a fresh process so that neither
   the generator's nor the other's memory counts: (floor) read + decode every record;
   (replay) read + decode + feed every record through `InMemoryPipeline`, the pure
   processors wired as the live topology wires them, in chunks (outputs counted and
   dropped after each chunk). Events/s of both, their ratio, and peak RSS of both.
b) Per-event cost against history. A policy with the case's window first, then hourly
   prices of one symbol and runs + signals per agent until the window is full of
   reconciled trades (window + the longest horizon), then a measured segment of the
   same stream: 10 agents acting every hour with a 1-day window, beside 1,000 agents
   with a 90-day window. For the large case each agent acts every k hours (staggered,
   k chosen so that the fill stays near `--fill-events`): 1,000 distinct agents, a
   90-day window full of trades, affordable to generate. Each case in a fresh process.

Nothing here asserts a time: the ratios are what to read. Prints a table and writes
JSON to var/bench/engine.json.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.report import Measure, Result, ratio, table
from projections.pipeline import InMemoryPipeline
from schemas.codec import decode_event, encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import (
    PolicyUpdated,
    PriceObserved,
    RegimeChanged,
    RunCompleted,
    SignalEmitted,
    SignalReconciled,
)
from schemas.policy import Policy
from streams.core.gc_tuning import collect_less_often

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "var" / "bench" / "engine.json"

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRODUCER = "bench"
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK")
FIRST_PRICES = (42_000.0, 2_300.0, 100.0, 0.6, 0.5, 0.09, 35.0, 15.0)
STRATEGY_CLASSES = ("momentum", "contrarian", "breakout", "carry")
REGIME_CYCLE = ("RISK_ON", "MIXED", "HIGH_VOL", "MIXED", "RISK_OFF", "MIXED")
HOURLY_VOLATILITY = 0.006
CHUNK = 10_000
PROGRESS_EVERY_S = 10.0

# Targets of issue 9, printed beside what was reached.
TARGET_REPLAY_SHARE = 0.25
TARGET_RSS_MB = 500.0
TARGET_COST_RATIO = 2.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process. On Linux from VmHWM: getrusage's maxrss of
    a child starts at its parent's peak (fork copies it, exec keeps it), so a child of a
    parent that generated a log reported the parent's 144 MB as its own."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --- a deterministic fleet -------------------------------------------------------------


@dataclass(frozen=True)
class FleetSpec:
    """What to generate: `agents` agents on `symbols` symbols, from START on.

    Agent i runs at the hours h with (h + i) % every_hours == 0 (staggered), and emits a
    signal on its symbol unless the run failed. `window_days` set: a `policy.updated`
    with that window comes first. `regime_every_days` > 0: a `regime.changed` at the
    start of every such period (before that hour's prices).
    """

    agents: int
    symbols: int = 1
    every_hours: int = 1
    window_days: int | None = None
    regime_every_days: int = 0
    seed: int = 7

    def __post_init__(self) -> None:
        if self.agents < 1 or self.every_hours < 1:
            raise ValueError("agents and every_hours must be at least 1")
        if not 1 <= self.symbols <= len(SYMBOLS):
            raise ValueError(f"symbols must be between 1 and {len(SYMBOLS)}")

    def min_events_per_hour(self) -> int:
        """A lower bound of events per hour (prices and runs; signals are extra)."""
        return self.symbols + self.agents // self.every_hours

    def describe(self) -> str:
        acting = (
            "every hour" if self.every_hours == 1 else f"every {self.every_hours} h (staggered)"
        )
        window = "default" if self.window_days is None else f"{self.window_days} d"
        return (
            f"{self.agents:,} agents acting {acting}, {self.symbols} symbol(s) hourly, "
            f"window {window}"
        )


@dataclass(frozen=True)
class FakeAgent:
    name: str
    strategy_class: str
    symbol: str
    skill: float  # probability of calling the next 24 h direction right
    error_rate: float
    latency_ms: float


def make_agents(spec: FleetSpec) -> list[FakeAgent]:
    rng = random.Random(f"agents-{spec.seed}")
    return [
        FakeAgent(
            name=f"agent-{i:04d}",
            strategy_class=STRATEGY_CLASSES[i % len(STRATEGY_CLASSES)],
            symbol=SYMBOLS[i % spec.symbols],
            skill=round(rng.uniform(0.50, 0.66), 3),
            error_rate=rng.choice((0.0, 0.0, 0.01, 0.02)),
            latency_ms=round(rng.uniform(200.0, 1200.0), 1),
        )
        for i in range(spec.agents)
    ]


def price_walks(spec: FleetSpec, hours: int) -> dict[str, list[float]]:
    """Hourly geometric random walks, one per symbol, `hours` long."""
    walks: dict[str, list[float]] = {}
    for index, symbol in enumerate(SYMBOLS[: spec.symbols]):
        rng = random.Random(f"walk-{spec.seed}-{symbol}")
        price, walk = FIRST_PRICES[index], []
        for _ in range(hours):
            price *= 1 + rng.gauss(0.0, HOURLY_VOLATILITY)
            walk.append(round(price, 6))
        walks[symbol] = walk
    return walks


def policy_event(window_days: int, seed: int) -> PolicyUpdated:
    policy = Policy()
    return PolicyUpdated.create(
        event_id=derived_event_id("bench-policy", seed, window_days),
        ts=START,
        producer=PRODUCER,
        **{
            **policy.model_dump(),
            "thresholds": policy.thresholds.model_copy(
                update={"window_days": window_days}
            ).model_dump(),
        },
    )


def fleet_stream(spec: FleetSpec, hours: int) -> Iterator[Event]:
    """Source events of `hours` hours in event-time order; the same spec, the same events.

    At each hour: the regime change (if due), the prices, then every acting agent's run
    and signal. A signal's direction is right about the price 24 h later with the
    agent's skill. Ids derive from the seed, so the bytes are reproducible.
    """
    agents = make_agents(spec)
    walks = price_walks(spec, hours + 25)
    rng = random.Random(f"behaviour-{spec.seed}")
    if spec.window_days is not None:
        yield policy_event(spec.window_days, spec.seed)
    regime = "MIXED"
    for hour in range(hours):
        at = START + hour * HOUR
        if spec.regime_every_days and hour % (24 * spec.regime_every_days) == 0:
            period = hour // (24 * spec.regime_every_days)
            regime = REGIME_CYCLE[period % len(REGIME_CYCLE)]
            yield RegimeChanged.create(
                event_id=derived_event_id("bench-regime", spec.seed, hour),
                ts=at,
                producer=PRODUCER,
                regime=regime,
                source="operator",
            )
        for symbol, walk in walks.items():
            yield PriceObserved.create(
                event_id=derived_event_id("bench-price", spec.seed, symbol, hour),
                ts=at,
                producer=PRODUCER,
                symbol=symbol,
                price=walk[hour],
                source="file",
                interval="1h",
            )
        for index in range((-hour) % spec.every_hours, spec.agents, spec.every_hours):
            agent = agents[index]
            run_id = uuid.UUID(str(derived_event_id("bench-run", spec.seed, agent.name, hour)))
            failed = rng.random() < agent.error_rate
            yield RunCompleted.create(
                event_id=derived_event_id("run", run_id),
                ts=at,
                producer=PRODUCER,
                agent=agent.name,
                run_id=run_id,
                started_at=at - timedelta(milliseconds=agent.latency_ms),
                latency_ms=round(agent.latency_ms * rng.uniform(0.5, 1.5), 1),
                tokens_in=1_000,
                tokens_out=200,
                cost_usd=0.002,
                errors=int(failed),
                strategy_class=agent.strategy_class,
            )
            if failed:
                continue
            walk = walks[agent.symbol]
            up = walk[hour + 24] > walk[hour]
            right = rng.random() < agent.skill
            yield SignalEmitted.create(
                event_id=derived_event_id("signal", run_id),
                ts=at,
                producer=PRODUCER,
                agent=agent.name,
                run_id=run_id,
                symbol=agent.symbol,
                direction="LONG" if up == right else "SHORT",
                confidence=round(rng.uniform(0.5, 0.9), 3),
                regime=regime,
                strategy_class=agent.strategy_class,
            )


def replay_spec(agents: int, symbols: int, seed: int) -> FleetSpec:
    """The fleet of the replay log: a 30-day window policy first, weekly regime changes."""
    return FleetSpec(agents=agents, symbols=symbols, window_days=30, regime_every_days=7, seed=seed)


def log_events(spec: FleetSpec, events: int) -> Iterator[Event]:
    """Exactly `events` source events of the spec (enough hours are generated)."""
    hours = math.ceil(events / spec.min_events_per_hour()) + 1
    return itertools.islice(fleet_stream(spec, hours), events)


def write_log(events: Iterable[Event], path: Path, total: int | None = None) -> dict[str, Any]:
    """Encode each event once with the wire codec; one JSON record per line (orjson
    never writes a raw newline). Returns counts by type and bytes."""
    types: Counter[str] = Counter()
    size = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    started = last = time.perf_counter()
    with path.open("wb", buffering=1 << 20) as out:
        for event in events:
            record = encode_event(event)
            out.write(record + b"\n")
            size += len(record) + 1
            types[event.type] += 1
            first_ts = first_ts or event.ts
            last_ts = event.ts
            now = time.perf_counter()
            if now - last > PROGRESS_EVERY_S:
                last = now
                of = f" of {total:,}" if total else ""
                say(f"    generated {types.total():,}{of} events ({now - started:,.0f} s)")
    return {
        "events": types.total(),
        "bytes": size,
        "types": dict(sorted(types.items())),
        "first_ts": None if first_ts is None else first_ts.isoformat(),
        "last_ts": None if last_ts is None else last_ts.isoformat(),
        "generate_s": time.perf_counter() - started,
    }


# --- a) replay of the log --------------------------------------------------------------


def read_chunks(path: Path, chunk: int) -> Iterator[list[bytes]]:
    with path.open("rb", buffering=1 << 20) as log:
        while lines := list(itertools.islice(log, chunk)):
            yield lines


def replay_log(
    path: Path, mode: str, chunk: int = CHUNK, cap_s: float | None = None
) -> dict[str, Any]:
    """Read + decode every record (mode "floor"), or also feed them through the whole
    in-memory pipeline in chunks (mode "replay"). Stops after `cap_s` seconds if given
    (then `complete` is False). Outputs are counted by type, then dropped."""
    if mode not in ("floor", "replay"):
        raise ValueError(f"mode must be floor or replay, got {mode!r}")
    gc.collect()
    rss_before = peak_rss_mb()
    pipeline = InMemoryPipeline() if mode == "replay" else None
    outputs: Counter[str] = Counter()
    done = 0
    complete = True
    started = last = time.perf_counter()
    for lines in read_chunks(path, chunk):
        events = [decode_event(line) for line in lines]
        if pipeline is not None:
            pipeline.feed(events)
            outputs.update(routed.event.type for routed in pipeline.emitted)
            pipeline.emitted.clear()
        done += len(events)
        del events
        now = time.perf_counter()
        if now - last > PROGRESS_EVERY_S:
            last = now
            say(f"    {mode}: {done:,} events, {done / (now - started):,.0f}/s")
        if cap_s is not None and now - started > cap_s:
            complete = False
            break
    elapsed = time.perf_counter() - started
    return {
        "mode": mode,
        "events": done,
        "complete": complete,
        "seconds": elapsed,
        "events_per_s": done / elapsed if elapsed else 0.0,
        "outputs": sum(outputs.values()),
        "outputs_by_type": dict(sorted(outputs.items())),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


# --- b) per-event cost against history -------------------------------------------------


@dataclass(frozen=True)
class WindowCase:
    """A fleet with a window: fill until the window is full of trades, then measure."""

    label: str
    spec: FleetSpec
    measure_events: int

    @property
    def window_days(self) -> int:
        assert self.spec.window_days is not None
        return self.spec.window_days

    def fill_hours(self) -> int:
        """Hours before the measured segment: the window, plus the longest horizon so that
        the window's first signals are reconciled, plus one."""
        return self.window_days * 24 + max(Policy().thresholds.horizons_hours) + 1

    def total_hours(self) -> int:
        return self.fill_hours() + math.ceil(self.measure_events / self.spec.min_events_per_hour())

    def measure_start(self) -> datetime:
        return START + self.fill_hours() * HOUR


def every_hours_for(agents: int, window_days: int, fill_events: int) -> int:
    """How often each agent acts so that filling the window takes about `fill_events`
    (a run and a signal per action); 1 when every agent can act every hour."""
    fill_hours = window_days * 24 + max(Policy().thresholds.horizons_hours) + 1
    return max(1, math.ceil(2 * agents * fill_hours / max(1, fill_events)))


def feed_counting(
    pipeline: InMemoryPipeline, events: Sequence[Event], since: datetime | None = None
) -> tuple[Counter[str], int]:
    """Feed events; return the derived outputs by type and how many of them are trades
    (`signal.reconciled`) that exit at or after `since`. Outputs are then dropped."""
    pipeline.feed(events)
    outputs: Counter[str] = Counter()
    trades = 0
    for routed in pipeline.emitted:
        event = routed.event
        outputs[event.type] += 1
        if since is not None and isinstance(event, SignalReconciled) and event.exit_ts >= since:
            trades += 1
    pipeline.emitted.clear()
    return outputs, trades


def measure_window_case(case: WindowCase, chunk: int = CHUNK) -> dict[str, Any]:
    """Fill the window (untimed), then time the pipeline over the next `measure_events`
    source events, generated beforehand. Cost is per source event, all derived work
    (reconciliations, assessments, fleet steps) included."""
    stream = fleet_stream(case.spec, case.total_hours())
    measure_start = case.measure_start()
    window_start = measure_start - timedelta(days=case.window_days)
    pipeline = InMemoryPipeline()
    fill_types: Counter[str] = Counter()
    fill_outputs: Counter[str] = Counter()
    trades_in_window = 0
    pending: list[Event] = []
    started = last = time.perf_counter()
    first_measured: Event | None = None
    for event in stream:
        if event.ts >= measure_start:
            first_measured = event
            break
        pending.append(event)
        fill_types[event.type] += 1
        if len(pending) >= chunk:
            outputs, trades = feed_counting(pipeline, pending, window_start)
            fill_outputs += outputs
            trades_in_window += trades
            pending = []
            now = time.perf_counter()
            if now - last > PROGRESS_EVERY_S:
                last = now
                say(f"    {case.label}: filled {fill_types.total():,} events")
    outputs, trades = feed_counting(pipeline, pending, window_start)
    fill_outputs += outputs
    trades_in_window += trades
    fill_s = time.perf_counter() - started
    if first_measured is None:
        raise RuntimeError("the stream ended before the measured segment")
    measured = [first_measured, *itertools.islice(stream, case.measure_events - 1)]
    gc.collect()
    measured_outputs: Counter[str] = Counter()
    started = last = time.perf_counter()
    for start in range(0, len(measured), chunk):
        outputs, _ = feed_counting(pipeline, measured[start : start + chunk])
        measured_outputs += outputs
        now = time.perf_counter()
        if now - last > PROGRESS_EVERY_S:
            last = now
            done = min(start + chunk, len(measured))
            say(f"    {case.label}: measured {done:,} of {len(measured):,}")
    elapsed = time.perf_counter() - started
    agents = case.spec.agents
    return {
        "label": case.label,
        "generated": case.spec.describe(),
        "agents": agents,
        "every_hours": case.spec.every_hours,
        "window_days": case.window_days,
        "fill_hours": case.fill_hours(),
        "fill_events": fill_types.total(),
        "fill_events_by_type": dict(sorted(fill_types.items())),
        "fill_outputs": fill_outputs.total(),
        "fill_s": fill_s,
        "trades_in_window_at_start": trades_in_window,
        "trades_per_agent_in_window": trades_in_window / agents,
        "measured_events": len(measured),
        "measured_from": measured[0].ts.isoformat(),
        "measured_to": measured[-1].ts.isoformat(),
        "measured_outputs_by_type": dict(sorted(measured_outputs.items())),
        "outputs_per_event": measured_outputs.total() / len(measured),
        "seconds": elapsed,
        "events_per_s": len(measured) / elapsed if elapsed else 0.0,
        "us_per_event": 1e6 * elapsed / len(measured),
        "peak_rss_mb": peak_rss_mb(),
    }


def window_case(
    label: str,
    agents: int,
    window_days: int,
    every_hours: int,
    measure_events: int,
    seed: int,
) -> WindowCase:
    spec = FleetSpec(
        agents=agents, symbols=1, every_hours=every_hours, window_days=window_days, seed=seed
    )
    return WindowCase(label=label, spec=spec, measure_events=measure_events)


# --- fresh processes -------------------------------------------------------------------


def in_child(arguments: list[str], module: str = "bench.engine") -> dict[str, Any]:
    """Run `python -m <module> --child ...` (a fresh process: nothing the parent holds
    counts in its memory) and return the JSON it prints last."""
    command = [sys.executable, "-m", module, "--child", *arguments]
    completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"child {' '.join(arguments)} failed with code {completed.returncode}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def child_main(args: argparse.Namespace) -> int:
    collect_less_often()  # as every entry point that folds events (worker, CLI)
    child: str = args.child
    if child in ("floor", "replay"):
        result = replay_log(Path(args.log), child, args.chunk, args.cap_s or None)
    elif child == "window":
        case = window_case(
            args.label, args.agents, args.window_days, args.every_hours, args.measure, args.seed
        )
        result = measure_window_case(case, args.chunk)
    else:
        raise SystemExit(f"unknown child {child!r}")
    print(json.dumps(result))
    return 0


def replay_results(floor: dict[str, Any], replay: dict[str, Any], events: int) -> list[Result]:
    share = ratio(replay["events_per_s"], floor["events_per_s"])
    scope = "" if replay["complete"] else f" (capped: {replay['events']:,} of {events:,})"
    return [
        Result(
            name=f"replay {events:,} events",
            a=Measure("read+decode", floor["events_per_s"], "ev/s"),
            b=Measure("replay", replay["events_per_s"], "ev/s"),
            ratio=share,
            ratio_of="B/A",
            meaning=(
                f"the whole pure pipeline runs at this share of the rate at which the log "
                f"can merely be read and decoded{scope}; it derived "
                f"{replay['outputs'] / max(1, replay['events']):,.2f} events per source event"
            ),
            target=f">= {TARGET_REPLAY_SHARE:.2f}x",
            met=share >= TARGET_REPLAY_SHARE,
        ),
        Result(
            name="replay peak RSS",
            a=Measure("read+decode", floor["peak_rss_mb"], "MB"),
            b=Measure("replay", replay["peak_rss_mb"], "MB"),
            ratio=ratio(replay["peak_rss_mb"], floor["peak_rss_mb"]),
            ratio_of="B/A",
            meaning=(
                f"peak RSS of each fresh process (both start near "
                f"{floor['rss_before_mb']:,.0f} MB after imports); the replay's is the "
                f"pipeline's states plus one chunk{scope}"
            ),
            target=f"B <= {TARGET_RSS_MB:,.0f} MB",
            met=(replay["peak_rss_mb"] <= TARGET_RSS_MB) if replay["complete"] else None,
        ),
    ]


def cost_result(small: dict[str, Any], large: dict[str, Any]) -> Result:
    growth = ratio(large["us_per_event"], small["us_per_event"])
    return Result(
        name="per-event cost vs history",
        a=Measure(
            f"{small['agents']:,} ag/{small['window_days']} d", small["us_per_event"], "us/ev"
        ),
        b=Measure(
            f"{large['agents']:,} ag/{large['window_days']} d", large["us_per_event"], "us/ev"
        ),
        ratio=growth,
        ratio_of="B/A",
        meaning=(
            f"cost per source event (all derived work included) with a large fleet and a "
            f"long window full of trades ({large['trades_per_agent_in_window']:,.0f} per "
            f"agent) over a small one ({small['trades_per_agent_in_window']:,.0f} per agent); "
            f"derived events per source event {small['outputs_per_event']:,.2f} vs "
            f"{large['outputs_per_event']:,.2f}"
        ),
        target=f"<= {TARGET_COST_RATIO:.0f}x",
        met=growth <= TARGET_COST_RATIO,
    )


# --- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[Result], dict[str, Any]]:
    started = time.perf_counter()
    results: list[Result] = []
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "params": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key != "child"
        },
    }
    if not args.skip_replay:
        spec = replay_spec(args.agents, args.symbols, args.seed)
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
            path = Path(scratch) / "log.jsonl"
            say(f"[a] generating and encoding {args.events:,} events: {spec.describe()}")
            log = write_log(log_events(spec, args.events), path, args.events)
            say(
                f"    {log['events']:,} events, {log['bytes'] / 1e6:,.0f} MB, "
                f"{log['first_ts']} .. {log['last_ts']} ({log['generate_s']:,.0f} s)"
            )
            cap = ["--cap-s", str(args.cap_s)]
            common = ["--log", str(path), "--chunk", str(args.chunk)]
            say("[a] floor: read + decode every record (fresh process)")
            floor = in_child(["floor", *common])
            say(
                f"    {floor['events_per_s']:,.0f} events/s, "
                f"peak RSS {floor['peak_rss_mb']:,.0f} MB"
            )
            say("[a] replay: read + decode + InMemoryPipeline (fresh process)")
            replay = in_child(["replay", *common, *cap])
            say(
                f"    {replay['events_per_s']:,.0f} events/s, "
                f"peak RSS {replay['peak_rss_mb']:,.0f} MB"
                + ("" if replay["complete"] else f" (capped after {replay['events']:,})")
            )
        results += replay_results(floor, replay, log["events"])
        report["replay"] = {
            "generated": spec.describe() + " (a policy.updated first), a regime change weekly",
            "log": log,
            "floor": floor,
            "replay": replay,
        }
    if not args.skip_cost:
        every = args.every_hours or every_hours_for(
            args.large_agents, args.large_window_days, args.fill_events
        )
        cases = [
            ("small", args.small_agents, args.small_window_days, 1),
            ("large", args.large_agents, args.large_window_days, every),
        ]
        measured: dict[str, dict[str, Any]] = {}
        for label, agents, window_days, every_hours in cases:
            case = window_case(label, agents, window_days, every_hours, args.measure, args.seed)
            say(
                f"[b] {label}: {case.spec.describe()}; fill {case.fill_hours()} h, then measure "
                f"{args.measure:,} events (fresh process)"
            )
            measured[label] = in_child(
                [
                    "window",
                    "--label",
                    label,
                    "--agents",
                    str(agents),
                    "--window-days",
                    str(window_days),
                    "--every-hours",
                    str(every_hours),
                    "--measure",
                    str(args.measure),
                    "--seed",
                    str(args.seed),
                    "--chunk",
                    str(args.chunk),
                ]
            )
            got = measured[label]
            say(
                f"    filled {got['fill_events']:,} events in {got['fill_s']:,.0f} s "
                f"({got['trades_in_window_at_start']:,} trades in the window); "
                f"{got['events_per_s']:,.0f} events/s, {got['us_per_event']:,.0f} us/event"
            )
        results.append(cost_result(measured["small"], measured["large"]))
        report["cost"] = measured
    report["results"] = [asdict(result) for result in results]
    report["wall_s"] = time.perf_counter() - started
    return results, report


def summary(report: dict[str, Any]) -> list[str]:
    lines = []
    if "replay" in report:
        replay = report["replay"]
        lines.append(
            f"replay log: {replay['log']['events']:,} events ({replay['generated']}), "
            f"{replay['log']['bytes'] / 1e6:,.0f} MB encoded; replayed "
            f"{replay['replay']['events']:,} in {replay['replay']['seconds']:,.1f} s"
        )
    for case in report.get("cost", {}).values():
        lines.append(
            f"cost {case['label']}: {case['generated']}; filled {case['fill_events']:,} events "
            f"({case['fill_hours']} h, {case['trades_in_window_at_start']:,} trades in the "
            f"window), measured {case['measured_events']:,} events: "
            f"{case['events_per_s']:,.0f} events/s, {case['us_per_event']:,.0f} us/event, "
            f"peak RSS {case['peak_rss_mb']:,.0f} MB"
        )
    lines.append(f"wall time {report['wall_s']:,.1f} s")
    return lines


QUICK = {
    "events": 20_000,
    "agents": 20,
    "large_agents": 50,
    "fill_events": 10_000,
    "measure": 2_000,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a small run: {', '.join(f'{k}={v:,}' for k, v in QUICK.items())}",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the replay log")
    parser.add_argument("--agents", type=int, default=50, help="agents in the replay log")
    parser.add_argument("--symbols", type=int, default=3, help="symbols in the replay log")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="events fed per call")
    parser.add_argument(
        "--cap-s",
        type=float,
        default=1200.0,
        help="stop the replay after this many seconds and report how far it got (0: no cap)",
    )
    parser.add_argument("--small-agents", type=int, default=10)
    parser.add_argument("--small-window-days", type=int, default=1)
    parser.add_argument("--large-agents", type=int, default=1_000)
    parser.add_argument("--large-window-days", type=int, default=90)
    parser.add_argument(
        "--fill-events",
        type=int,
        default=200_000,
        help="about how many events fill the large case's window (sets how often agents act)",
    )
    parser.add_argument(
        "--every-hours", type=int, default=0, help="large case: each agent acts every k hours"
    )
    parser.add_argument("--measure", type=int, default=20_000, help="measured events per case")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    # Internal: what a fresh child process measures.
    parser.add_argument("--child", choices=("floor", "replay", "window"), help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="case", help=argparse.SUPPRESS)
    parser.add_argument("--window-days", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        explicit = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in QUICK.items():
            if f"--{key.replace('_', '-')}" not in explicit:
                setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    results, report = run(args)
    print(table(results))
    print()
    for line in summary(report):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
