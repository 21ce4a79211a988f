"""What-if over a recorded year of a 100-agent fleet: how fast governance is re-run.

    python -m bench.whatif [--agents 100] [--days 365] [--every-hours 8] [--log FILE]

The log: bench.reports' recorded fleet (bench.engine's agents, each acting every
`--every-hours` hours on one of `--symbols` symbols; its reconciliations at three
horizons, decisions, signed kills and daily allocations), cut at `--days` days and
written into a durable log as `metasup up` records it. Measured in a fresh process
(`measure_whatif`, which bench.reports calls on its own log too): read + decode
(signatures checked) + split, then both runs as `metasup whatif` makes them (the
what-if forked beside the baseline) under a stricter kill line. Prints the figures and
writes JSON to var/bench/whatif.json.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.engine import HOUR, START, FleetSpec, in_child, peak_rss_mb, say
from bench.reports import report_log, supervisor_signer, write_durable_log
from projections.log import events
from projections.replay import DurableLogSource, Replay
from projections.whatif import plan, recorded_log
from schemas.envelope import Event
from schemas.policy import Policy
from streams.cli.whatif import run_what_if
from streams.core.gc_tuning import collect_less_often
from streams.core.signing import FactVerifier

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "var" / "bench" / "whatif.json"


def stricter_policy() -> Policy:
    """The default policy with a kill line at -100 bps on 5 trades (-150 on 10 recorded)."""
    policy = Policy()
    thresholds = policy.thresholds.model_copy(update={"kill_pnl_bps": -100.0, "kill_min_trades": 5})
    return policy.model_copy(update={"thresholds": thresholds})


def measure_whatif(
    log: Path, verifier: FactVerifier, policy: Policy | None = None
) -> dict[str, Any]:
    """Read + decode + split the durable log at `log`, then run the what-if of `policy`
    (default: `stricter_policy`) as `metasup whatif` does; timings, rates and peak RSS."""
    policy = policy or stricter_policy()
    gc.collect()
    rss_before = peak_rss_mb()
    records = 0

    def read(topics: Sequence[str]) -> Iterator[Event]:
        nonlocal records
        with closing(DurableLogSource(log)) as source:
            replay = Replay(source, topics, progress=False)
            yield from events(replay, verifier=verifier)
        records += replay.records_by_topic.total()

    started = time.perf_counter()
    recorded = recorded_log(read, policy)
    read_s = time.perf_counter() - started
    the_plan = plan(recorded, policy)
    result = run_what_if(the_plan)
    done = time.perf_counter()
    shared, per_run = the_plan.steps()
    fed = shared + 2 * per_run
    return {
        "records": records,
        "read_s": read_s,
        "run_s": done - started - read_s,
        "seconds": done - started,
        "inputs_per_run": shared + per_run,
        "events_fed": fed,
        "events_per_s": fed / (done - started - read_s),
        "days": (the_plan.end - the_plan.start).total_seconds() / 86_400,
        "agents": len(result.baseline.agents),
        "kills": {"baseline": result.baseline.kills, "what_if": result.what_if.kills},
        "agreement": result.agreement.model_dump(),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


def write_year(spec: FleetSpec, days: int, path: Path, seed: int) -> dict[str, Any]:
    """bench.reports' recorded fleet over `days` days, into a durable log at `path`."""
    end = START + days * 24 * HOUR
    # Enough events for the days at most (every agent acting every hour: a run, a signal,
    # three reconciliations, a confidence update; a decision and a kill a day), cut at `end`.
    bound = days * 24 * (spec.symbols + 8 * spec.agents + 1)
    expected = days * 24 * (spec.symbols + 6 * spec.agents // spec.every_hours)
    stream = itertools.takewhile(lambda event: event.ts < end, report_log(spec, bound))
    return write_durable_log(stream, path, supervisor_signer(seed), expected)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.whatif", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--every-hours", type=int, default=8, help="each agent acts this often")
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--log", type=Path, help="durable-log file: reused when it exists, else written and kept"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    collect_less_often()  # as every entry point that folds events (worker, CLI)
    if args.child:
        print(json.dumps(measure_whatif(args.log, supervisor_signer(args.seed).verifier)))
        return 0
    spec = FleetSpec(
        agents=args.agents,
        symbols=args.symbols,
        every_hours=args.every_hours,
        window_days=30,
        regime_every_days=7,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="bench-whatif-") as scratch:
        path = args.log or Path(scratch) / "log.sqlite3"
        if path.exists():
            say(f"[whatif] using the log already at {path}")
            log: dict[str, Any] = {"reused": str(path)}
        else:
            say(f"[whatif] writing {args.days} days into {path}: {spec.describe()}")
            log = write_year(spec, args.days, path, args.seed)
            say(f"    {log['events']:,} events ({log['generate_s']:,.0f} s): {log['types']}")
        say("[whatif] read + split, then baseline and what-if (fresh process)")
        found = in_child(["--log", str(path), "--seed", str(args.seed)], "bench.whatif")
    print(
        f"what-if over {found['days']:,.0f} days of {found['agents']} agents "
        f"({found['records']:,} records read): read + decode + split {found['read_s']:,.1f} s; "
        f"{found['inputs_per_run']:,} inputs per run, {found['events_fed']:,} fed in both runs "
        f"in {found['run_s']:,.1f} s ({found['events_per_s']:,.0f} events/s); wall time "
        f"{found['seconds']:,.1f} s; peak RSS {found['peak_rss_mb']:,.0f} MB; kills "
        f"{found['kills']['baseline']} baseline, {found['kills']['what_if']} what-if"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "params": vars(args) | {"log": str(path), "out": str(args.out)},
                "log": log,
                "result": found,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
