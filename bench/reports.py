"""The meta report rebuilt from a log of a million events, beside its read + decode floor.

    python -m bench.reports [--events 1000000] [--log FILE]

The log: bench.engine's deterministic fleet (a policy first, hourly prices of `--symbols`
symbols, hourly runs and signals of `--agents` agents, a regime change weekly) and what
the supervisor would have derived from it, generated directly (the in-memory pipeline
over a million events takes far too long): each signal reconciled at the policy's three
horizons once its exit price is in, a confidence update per focus-horizon trade (the
real multiplier fold), a decision when an agent's verdict changes, a signed
`agent.killed` when it turns KILL (its later signals are dropped, as its SDK guard would
refuse them), and an allocation every day. The verdict is simplified so that kills stay
occasional: KILL when the window's trade PnL is significantly negative (t-statistic
below -2, at least kill_min_trades trades), PROMOTE when significantly positive with the
gate's hit rate and trades. Every event is written into a durable-log file (SQLite, as
`metasup up` records the broker) on its topic, partitioned by its key, received at its
event time; governance facts are signed with a key derived from the seed.

Measured, each in a fresh process so that neither the generator's memory nor the other's
counts: (floor) replay every record through `projections.replay` and decode it
(signatures checked); (rebuild) replay, admit and fold every record through
`FleetProjection`, then build the meta report and its JSON bytes; (what-if) bench.whatif's
measurement of `metasup whatif` under a stricter kill line, over the same log.
Records/s of the first two and their ratio, the report's share of the time, the
what-if's time beside the floor's, and peak RSS. Prints a table and writes JSON to
var/bench/reports.json.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tqdm import tqdm

from bench.engine import (
    HOUR,
    START,
    FleetSpec,
    fleet_stream,
    in_child,
    peak_rss_mb,
    price_walks,
    replay_spec,
    say,
)
from bench.report import Measure, Result, ratio, table
from projections.fleet import REPORT_TOPICS, FleetProjection
from projections.log import events
from projections.replay import EPOCH, DurableLogSource, Replay
from projections.reports.meta import meta_report, report_json
from schemas.codec import encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentKilled,
    AllocationUpdated,
    Decision,
    DecisionMade,
    GovernanceFact,
    SignalEmitted,
    SignalReconciled,
)
from schemas.policy import Policy
from schemas.topics import BY_NAME, key_for, topic_for
from streams.agents.confidence import ConfidenceState, apply_reconciled
from streams.broker.durable_log import DurableLog, StoredRecord
from streams.core.gc_tuning import collect_less_often
from streams.core.signing import FactSigner
from streams.fleet.allocation import CapitalAtRisk

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "var" / "bench" / "reports.json"
PRODUCER = "bench.supervisor"
POLICY = Policy()
THRESHOLDS = POLICY.thresholds
BPS = 10_000.0
SIGNIFICANT_T = 2.0
WRITE_BATCH = 10_000


def supervisor_signer(seed: int) -> FactSigner:
    """The bench supervisor's key, derived from the seed: the same log, byte for byte."""
    secret = hashlib.sha256(f"bench-supervisor-{seed}".encode()).digest()
    return FactSigner(Ed25519PrivateKey.from_private_bytes(secret))


# --- what the supervisor would have derived ----------------------------------------------


@dataclass
class AgentBook:
    """One agent as the stand-in supervisor sees it."""

    confidence: ConfidenceState
    window: deque[tuple[int, float]] = field(default_factory=deque)  # (day, pnl bps)
    decision: Decision | None = None

    @property
    def killed(self) -> bool:
        return self.decision == Decision.KILL


def verdict(pnls: Sequence[float]) -> Decision:
    """KILL / PROMOTE only when the window's mean trade PnL is significantly off zero."""
    n = len(pnls)
    if n < 2:
        return Decision.HOLD
    mean = math.fsum(pnls) / n
    spread = math.sqrt(math.fsum((p - mean) ** 2 for p in pnls) / (n - 1)) or 1.0
    t = mean / spread * math.sqrt(n)
    if n >= THRESHOLDS.kill_min_trades and t < -SIGNIFICANT_T:
        return Decision.KILL
    hit_rate = sum(1 for p in pnls if p > 0) / n
    if (
        n >= THRESHOLDS.promote_min_trades
        and t > SIGNIFICANT_T
        and hit_rate >= THRESHOLDS.promote_min_hit_rate
    ):
        return Decision.PROMOTE
    return Decision.HOLD


class StandInSupervisor:
    """Derives, simply and directly, what the pipeline records for a stream of sources."""

    def __init__(self, spec: FleetSpec, hours: int) -> None:
        self.walks = price_walks(spec, hours + max(THRESHOLDS.horizons_hours) + 1)
        self.books: dict[str, AgentBook] = {}
        self.due: dict[int, list[SignalReconciled]] = {}  # exit hour -> reconciliations
        self.regime: str | None = None

    def admits(self, event: Event) -> bool:
        """A killed agent's signals never reach the log (its guard refuses the run)."""
        if not isinstance(event, SignalEmitted):
            return True
        book = self.books.get(event.agent)
        return book is None or not book.killed

    def observe(self, event: Event, hour: int) -> None:
        if isinstance(event, SignalEmitted):
            self._schedule(event, hour)
        elif event.type == "regime.changed":
            self.regime = str(getattr(event, "regime", None))

    def _schedule(self, signal: SignalEmitted, hour: int) -> None:
        self.books.setdefault(
            signal.agent, AgentBook(ConfidenceState.start(signal.agent, POLICY.confidence))
        )
        walk = self.walks[signal.symbol]
        side = 1.0 if signal.direction == "LONG" else -1.0
        for horizon in THRESHOLDS.horizons_hours:
            exit_hour = hour + horizon
            self.due.setdefault(exit_hour, []).append(
                SignalReconciled.create(
                    event_id=derived_event_id("bench-reconciled", signal.event_id, horizon),
                    ts=START + exit_hour * HOUR,
                    producer=PRODUCER,
                    signal_id=signal.event_id,
                    run_id=signal.run_id,
                    agent=signal.agent,
                    symbol=signal.symbol,
                    direction=signal.direction,
                    horizon_hours=horizon,
                    entry_ts=signal.ts,
                    entry_price=walk[hour],
                    exit_ts=START + exit_hour * HOUR,
                    exit_price=walk[exit_hour],
                    realized_pnl_bps=round(side * (walk[exit_hour] / walk[hour] - 1) * BPS, 4),
                    regime=signal.regime,
                    confidence=signal.confidence,
                    strategy_class=signal.strategy_class,
                )
            )

    def derived_at(self, hour: int) -> Iterator[Event]:
        """What the supervisor records at `hour`: the trades that exit then (and their
        confidence updates); on each new day, verdicts that changed and the allocation."""
        for trade in self.due.pop(hour, ()):
            yield trade
            if trade.horizon_hours == THRESHOLDS.focus_horizon_hours:
                book = self.books[trade.agent]
                book.window.append((hour // 24, trade.realized_pnl_bps))
                book.confidence, update = apply_reconciled(
                    book.confidence, trade, POLICY.confidence, THRESHOLDS.focus_horizon_hours
                )
                if update is not None:
                    yield update
        if hour % 24 == 0 and hour > 0:
            yield from self._daily(hour)

    def _daily(self, hour: int) -> Iterator[Event]:
        at = START + hour * HOUR
        day = hour // 24
        scores: dict[str, float] = {}
        for agent, book in sorted(self.books.items()):
            while book.window and book.window[0][0] <= day - THRESHOLDS.window_days:
                book.window.popleft()
            if book.killed:
                continue
            pnls = [pnl for _, pnl in book.window]
            decision = verdict(pnls)
            if decision != book.decision:
                yield DecisionMade.create(
                    event_id=derived_event_id("bench-decision", agent, hour),
                    ts=at,
                    producer=PRODUCER,
                    agent=agent,
                    decision=decision,
                    previous=book.decision,
                    reasons=[f"window t-statistic of {len(pnls)} trades"],
                    retirement_score=0,
                    retirement_label="KEEP",
                    stats={"trades": len(pnls), "pnl_sum_bps": math.fsum(pnls)},
                )
                if decision == Decision.KILL:
                    yield AgentKilled.create(
                        event_id=derived_event_id("bench-kill", agent, hour),
                        ts=at,
                        producer=PRODUCER,
                        target=agent,
                        source="auto",
                        reason="window PnL significantly negative",
                    )
                book.decision = decision
            total = math.fsum(pnls)
            if decision != Decision.KILL and total > 0:
                hit_rate = sum(1 for p in pnls if p > 0) / len(pnls)
                scores[agent] = total * (0.5 + hit_rate) * book.confidence.mult
        yield self._allocation(scores, at)

    def _allocation(self, scores: dict[str, float], at: datetime) -> AllocationUpdated:
        cap = POLICY.regime_caps.get(self.regime or "", POLICY.unknown_regime_cap)
        quality = math.fsum(scores.values())
        weights = {agent: cap * score / quality for agent, score in scores.items()}
        budget = POLICY.capital.nav_usd * POLICY.capital.risk_budget_pct
        per_agent = {agent: budget * weight for agent, weight in weights.items()}
        capital = CapitalAtRisk(
            nav_usd=POLICY.capital.nav_usd,
            risk_budget_usd=budget,
            per_agent_usd=per_agent,
            at_risk_usd=math.fsum(per_agent.values()),
            portfolio_cvar_usd=POLICY.capital.unknown_cvar_nav_pct * POLICY.capital.nav_usd,
            cvar_basis="nav_fraction",
        )
        return AllocationUpdated.create(
            event_id=derived_event_id("bench-allocation", at.isoformat()),
            ts=at,
            producer=PRODUCER,
            weights=weights,
            regime=self.regime,
            regime_cap=cap,
            cash_weight=1.0 - cap if weights else 1.0,
            capital=capital.model_dump(mode="json"),
        )


def report_log(spec: FleetSpec, total: int) -> Iterator[Event]:
    """Exactly `total` events: the fleet's sources with what was derived, in event-time
    order (what an hour's prices settle right after that hour's sources)."""
    hours = math.ceil(total / spec.min_events_per_hour()) + 1
    supervisor = StandInSupervisor(spec, hours)

    def stream() -> Iterator[Event]:
        settled = 0  # hours whose derived events are out
        for event in fleet_stream(spec, hours):
            hour = (event.ts - START) // HOUR
            # What an hour's prices settle follows that hour's sources.
            while settled < hour:
                yield from supervisor.derived_at(settled)
                settled += 1
            if supervisor.admits(event):
                yield event
                supervisor.observe(event, hour)

    return itertools.islice(stream(), total)


# --- the log as the recorder writes it -------------------------------------------------


def write_durable_log(
    stream: Iterable[Event], path: Path, signer: FactSigner, total: int
) -> dict[str, Any]:
    """Each event on its catalogue topic, on the partition its key hashes to, received at
    its event time; governance facts signed. Returns counts by type and topic. The file
    appears at `path` only once complete (an interrupted run leaves no log to reuse)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    durable_log = DurableLog(partial)
    durable_log.set_topics({name: BY_NAME[name].partitions for name in REPORT_TOPICS})
    offsets: Counter[tuple[str, int]] = Counter()
    types: Counter[str] = Counter()
    topics: Counter[str] = Counter()
    size = 0
    batch: list[StoredRecord] = []
    started = time.perf_counter()
    try:
        for event in tqdm(stream, total=total, unit="ev", desc="generate", file=sys.stderr):
            spec = topic_for(event)
            fact = signer.sign(event) if isinstance(event, GovernanceFact) else event
            key = key_for(fact, spec)
            where = (spec.name, zlib.crc32(key) % spec.partitions)
            value = encode_event(fact)
            received_ms = (fact.ts - EPOCH) // timedelta(milliseconds=1)
            batch.append(StoredRecord(*where, offsets[where], received_ms, key, value))
            offsets[where] += 1
            types[fact.type] += 1
            topics[spec.name] += 1
            size += len(value)
            if len(batch) == WRITE_BATCH:
                durable_log.append(batch)
                batch = []
        durable_log.append(batch)
    finally:
        durable_log.close()
    partial.replace(path)
    return {
        "events": types.total(),
        "bytes": size,
        "file_bytes": path.stat().st_size,
        "types": dict(sorted(types.items())),
        "topics": dict(sorted(topics.items())),
        "first_ts": START.isoformat(),
        "generate_s": time.perf_counter() - started,
    }


# --- measured in a fresh process -------------------------------------------------------


def measure(log: Path, mode: str, seed: int) -> dict[str, Any]:
    """Replay + decode every record (mode "floor"), or replay + admit + fold through
    FleetProjection and build the meta report (mode "rebuild")."""
    if mode not in ("floor", "rebuild"):
        raise ValueError(f"mode must be floor or rebuild, got {mode!r}")
    verifier = supervisor_signer(seed).verifier
    gc.collect()
    rss_before = peak_rss_mb()
    result: dict[str, Any] = {"mode": mode}
    started = time.perf_counter()
    with closing(DurableLogSource(log)) as source:
        replay = Replay(source, list(REPORT_TOPICS))
        if mode == "floor":
            result["events"] = sum(1 for _ in events(replay, verifier=verifier))
        else:
            projection = FleetProjection()
            for record in replay:
                projection.apply_record(record, verifier)
            folded = time.perf_counter()
            report = report_json(meta_report(projection, replay.position))
            result["fold_s"] = folded - started
            result["report_s"] = time.perf_counter() - folded
            result["report_bytes"] = len(report)
            result["report_sha256"] = hashlib.sha256(report).hexdigest()
            result["trades"] = len(projection.trades)
            result["unverified_facts"] = len(projection.unverified)
    elapsed = time.perf_counter() - started
    records = replay.records_by_topic.total()
    result.update(
        records=records,
        seconds=elapsed,
        records_per_s=records / elapsed if elapsed else 0.0,
        rss_before_mb=rss_before,
        peak_rss_mb=peak_rss_mb(),
    )
    return result


def child_main(args: argparse.Namespace) -> int:
    collect_less_often()  # as every entry point that folds events (worker, CLI)
    print(json.dumps(measure(Path(args.log), args.child, args.seed)))
    return 0


def results(floor: dict[str, Any], rebuild: dict[str, Any], events_total: int) -> list[Result]:
    share = ratio(rebuild["records_per_s"], floor["records_per_s"])
    return [
        Result(
            name=f"report rebuild from {events_total:,} events",
            a=Measure("read+decode", floor["records_per_s"], "rec/s"),
            b=Measure("rebuild", rebuild["records_per_s"], "rec/s"),
            ratio=share,
            ratio_of="B/A",
            meaning=(
                f"the meta report rebuilt from the durable log (replay, admission, "
                f"FleetProjection, report) runs at this share of the rate at which the log "
                f"can merely be replayed and decoded: {floor['seconds']:,.1f} s vs "
                f"{rebuild['seconds']:,.1f} s, of which building the report from the "
                f"folded projection took {rebuild['report_s']:,.2f} s"
            ),
        ),
        Result(
            name="report rebuild peak RSS",
            a=Measure("read+decode", floor["peak_rss_mb"], "MB"),
            b=Measure("rebuild", rebuild["peak_rss_mb"], "MB"),
            ratio=ratio(rebuild["peak_rss_mb"], floor["peak_rss_mb"]),
            ratio_of="B/A",
            meaning=(
                f"peak RSS of each fresh process (both start near "
                f"{floor['rss_before_mb']:,.0f} MB after imports); the floor streams the "
                f"log, the rebuild also keeps the projection ({rebuild['trades']:,} trades)"
            ),
        ),
    ]


def whatif_result(floor: dict[str, Any], whatif: dict[str, Any]) -> Result:
    """The what-if (projections.whatif, measured by bench.whatif) beside the same floor."""
    return Result(
        name="what-if over the same log",
        a=Measure("read+decode", floor["seconds"], "s"),
        b=Measure("what-if", whatif["seconds"], "s"),
        ratio=ratio(whatif["seconds"], floor["seconds"]),
        ratio_of="B/A",
        meaning=(
            f"re-running governance under a stricter kill line over {whatif['days']:,.0f} days "
            f"of {whatif['agents']} agents (read + decode + split {whatif['read_s']:,.1f} s, "
            f"then baseline and what-if {whatif['run_s']:,.1f} s) takes this multiple of the "
            f"time to replay and decode the log; kills: {whatif['kills']['baseline']} re-run "
            f"under the policy in force, {whatif['kills']['what_if']} under the stricter line"
        ),
    )


# --- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[Result], dict[str, Any]]:
    started = time.perf_counter()
    spec = replay_spec(args.agents, args.symbols, args.seed)
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as scratch:
        path = args.log or Path(scratch) / "log.sqlite3"
        if args.log is not None and args.log.exists():
            say(f"[reports] using the log already at {path}")
            log: dict[str, Any] = {"reused": str(path), "file_bytes": path.stat().st_size}
        else:
            say(f"[reports] writing {args.events:,} events into {path}: {spec.describe()}")
            stream = report_log(spec, args.events)
            log = write_durable_log(stream, path, supervisor_signer(args.seed), args.events)
            say(
                f"    {log['events']:,} events, {log['file_bytes'] / 1e6:,.0f} MB on disk "
                f"({log['generate_s']:,.0f} s); by topic: {log['topics']}"
            )
        common = ["--log", str(path), "--seed", str(args.seed)]
        say("[reports] floor: replay + decode every record (fresh process)")
        floor = in_child(["floor", *common], "bench.reports")
        say(f"    {floor['records_per_s']:,.0f} records/s, peak RSS {floor['peak_rss_mb']:,.0f} MB")
        say("[reports] rebuild: replay + FleetProjection + meta report (fresh process)")
        rebuild = in_child(["rebuild", *common], "bench.reports")
        say(
            f"    {rebuild['records_per_s']:,.0f} records/s, peak RSS "
            f"{rebuild['peak_rss_mb']:,.0f} MB, report {rebuild['report_bytes']:,} bytes"
        )
        found = results(floor, rebuild, floor["records"])
        report.update(log=log, floor=floor, rebuild=rebuild)
        if not args.skip_whatif:
            say("[reports] what-if over the same log: bench.whatif's measurement (fresh process)")
            whatif = in_child(common, "bench.whatif")
            say(f"    {whatif['seconds']:,.1f} s, peak RSS {whatif['peak_rss_mb']:,.0f} MB")
            found.append(whatif_result(floor, whatif))
            report["whatif"] = whatif
    report["wall_s"] = time.perf_counter() - started
    report["results"] = [asdict(result) for result in found]
    return found, report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reports", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--log",
        type=Path,
        help="durable-log file: reused when it exists, else written there and kept",
    )
    parser.add_argument(
        "--skip-whatif", action="store_true", help="the rebuild and its floor only (quicker)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    # Internal: what a fresh child process measures.
    parser.add_argument("--child", choices=("floor", "rebuild"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    found, report = run(args)
    print(table(found))
    print()
    rebuild = report["rebuild"]
    print(
        f"log: {report['floor']['records']:,} records; rebuild: fold "
        f"{rebuild['fold_s']:,.1f} s + report {rebuild['report_s']:,.2f} s; "
        f"wall time {report['wall_s']:,.1f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
