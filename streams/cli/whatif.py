"""`metasup whatif --policy FILE [--from TIME] [--to TIME] [--format table|json] [--out FILE]`:
what governance would have decided on the recorded log under another policy.

The rules run twice over the same inputs (projections.whatif): under the recorded
policies (the baseline) and under the file's. The two runs share everything before
`--from`, then go on in two processes when the machine has two cores: each is the
pure engine's cost per event, which no shortcut inside a run avoids.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

import orjson
from tqdm import tqdm

from projections.log import events
from projections.whatif import (
    AgentOutcome,
    Column,
    Milestone,
    Plan,
    Run,
    RunOutcome,
    WhatIfError,
    WhatIfResult,
    compare,
    plan,
    policy_from_json,
    recorded_log,
    run_period,
    run_prefix,
)
from schemas.envelope import Event, format_utc, to_utc
from streams.cli.connection import replayed
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "whatif",
        help="re-run governance over the log under another policy, against the recorded one",
    )
    parser.add_argument(
        "--policy",
        required=True,
        type=Path,
        help="policy JSON file (the form of streams/config/policy-v1.json)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=_event_time,
        help="ISO-8601 event time with timezone: the file's policy applies from then "
        "(default: the start of the log; before it, the recorded policies)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=_event_time,
        help="ISO-8601 event time with timezone: nothing later is replayed (default: the end)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--out", type=Path, help="write to this file instead of stdout")
    parser.set_defaults(run=run)


def _event_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time, e.g. 2024-03-01T00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a timezone, e.g. 2024-03-01T00:00Z")
    return to_utc(value)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        policy = policy_from_json(args.policy.read_bytes())
    except OSError as error:
        print(
            f"error: cannot read the policy file {args.policy}: {error.strerror}", file=sys.stderr
        )
        return 2
    except WhatIfError as error:
        print(f"error: policy file {args.policy}: {error}", file=sys.stderr)
        return 2
    verifier = load_verifier(settings)
    sources: set[str] = set()

    def read(names: Sequence[str]) -> Iterator[Event]:
        with replayed(settings, names) as (replay, where):
            sources.add(where)
            yield from events(replay, verifier=verifier)

    started = time.perf_counter()
    log = recorded_log(read, policy)
    loaded = time.perf_counter()
    try:
        the_plan = plan(log, policy, args.start, args.end)
    except WhatIfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    before, period = the_plan.steps()
    with tqdm(
        total=before + period, unit=" events", desc="what-if", disable=None, file=sys.stderr
    ) as bar:
        result = run_what_if(the_plan, bar.update)
    ran = time.perf_counter() - loaded
    fed = before + 2 * period
    print(
        f"read the log from the {' and the '.join(sorted(sources))} in {loaded - started:.1f} s; "
        f"fed {fed:,} events "
        f"({before:,} shared before --from, {period:,} in each run) in {ran:.1f} s: "
        f"{fed / ran:,.0f} events/s",
        file=sys.stderr,
    )
    text = as_json(result) if args.format == "json" else as_table(result, args.policy.name)
    if args.out is None:
        sys.stdout.buffer.write(text)
    else:
        args.out.write_bytes(text)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


# --- the two runs ----------------------------------------------------------------------


def run_what_if(the_plan: Plan, progress: Callable[[int], object] | None = None) -> WhatIfResult:
    """Both runs: the shared part once, then the what-if in a forked process (it inherits
    the shared states, nothing is copied in) beside the baseline here; one after the other
    on a single core. `progress` follows the shared part and the baseline."""
    shared = run_prefix(the_plan, progress)
    if (os.cpu_count() or 1) < 2:
        baseline = run_period(the_plan, shared, "baseline", progress)
        return compare(the_plan, baseline, run_period(the_plan, shared, "what_if"))
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_what_if_period, args=(the_plan, shared, send), daemon=True)
    child.start()
    send.close()
    try:
        baseline = run_period(the_plan, shared, "baseline", progress)
        try:
            what_if: RunOutcome = receive.recv()
        except EOFError:
            child.join()
            raise RuntimeError(
                f"the what-if run failed in its process (exit code {child.exitcode}); "
                "its error is above"
            ) from None
    finally:
        receive.close()
        child.join()
    return compare(the_plan, baseline, what_if)


def _what_if_period(the_plan: Plan, shared: Run, send: Connection) -> None:
    send.send(run_period(the_plan, shared, "what_if"))
    send.close()


# --- output ----------------------------------------------------------------------------


def as_json(result: WhatIfResult) -> bytes:
    """Deterministic bytes: keys sorted, no wall-clock figure."""
    return (
        orjson.dumps(
            result.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
        )
        + b"\n"
    )


def _when(at: datetime | None) -> str:
    return "-" if at is None else format_utc(at)[:16].replace("T", " ")


def _kill(milestone: Milestone | None) -> str:
    return "-" if milestone is None else f"{_when(milestone.at)} {milestone.rule}"


def _verdict_rows(result: WhatIfResult) -> list[str]:
    """Each agent's first kill, promotion and retirement in the three columns, and the move;
    rows where nothing happened in any column are left out."""
    header = ("agent", "first", "recorded", "baseline", "what-if", "change")
    rows: list[tuple[str, ...]] = []
    for agent, change in result.changes.items():
        columns = [
            result.recorded.agents.get(agent, AgentOutcome()),
            result.baseline.agents.get(agent, AgentOutcome()),
            result.what_if.agents.get(agent, AgentOutcome()),
        ]
        for kind, cells, moved in (
            ("killed", [_kill(c.killed) for c in columns], change.killed),
            ("promoted", [_when(c.promoted) for c in columns], change.promoted),
            ("retired", [_when(c.retired) for c in columns], change.retired),
        ):
            if any(cell != "-" for cell in cells):
                rows.append((agent, kind, *cells, moved))
    if not rows:
        return ["(no kill, promotion or retirement in any column)"]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    return [
        " ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in (header, *rows)
    ]


def _weight_rows(result: WhatIfResult) -> list[str]:
    rows = []
    for agent, baseline in result.baseline.agents.items():
        what_if = result.what_if.agents.get(agent, AgentOutcome())
        rows.append(
            f"{agent:<20} {baseline.avg_weight:>8.4f} {what_if.avg_weight:>8.4f} "
            f"{baseline.final_weight:>8.4f} {what_if.final_weight:>8.4f} "
            f"{baseline.deployed_pnl_bps:>+10.1f} {what_if.deployed_pnl_bps:>+10.1f}"
        )
    return rows


def _portfolio(name: str, column: Column) -> str:
    return (
        f"{name:<10} deployed PnL {column.deployed_pnl_bps:>+10.1f} bps, max drawdown "
        f"{column.deployed_max_drawdown_bps:>7.1f} bps, cash {column.avg_cash:.3f} on average, "
        f"{column.final_cash:.3f} at the end; {column.kills} kills, {column.pauses} pauses, "
        f"{column.decisions} decision changes, {column.allocations} allocations"
    )


def _summary(result: WhatIfResult) -> str:
    if not result.differs:
        return (
            "No difference: under this policy the rules decide exactly as under the recorded one."
        )
    moves: dict[str, dict[str, int]] = {}
    for change in result.changes.values():
        for kind, moved in (
            ("kills", change.killed),
            ("promotions", change.promoted),
            ("retirements", change.retired),
        ):
            if moved and moved != "same":
                word = moved.split(" by ")[0]
                counts = moves.setdefault(kind, {})
                counts[word] = counts.get(word, 0) + 1
    listed = "; ".join(
        f"{kind} {', '.join(f'{count} {word}' for word, count in sorted(counts.items()))}"
        for kind, counts in moves.items()
    )
    return f"The what-if changes: {listed or 'no verdict, only weights'}."


def as_table(result: WhatIfResult, policy_name: str) -> bytes:
    fed = ", ".join(f"{count:,} {kind}" for kind, count in result.fed.items())
    agreement = result.agreement
    lines = [
        f"What-if of {policy_name}, {_when(result.start)} to {_when(result.end)} UTC",
        f"Fed in event-time order: {fed}",
        "",
        "Policy changes (recorded in force at --from -> file):",
        *(
            f"  {c.key:<40} {orjson.dumps(c.in_force).decode()} -> "
            f"{orjson.dumps(c.what_if).decode()}"
            for c in result.policy_changes
        ),
        *([] if result.policy_changes else ["  none"]),
        "",
        "Baseline: the same engine and inputs under the recorded policies. It reproduces "
        f"{agreement.reproduced_kills} of {agreement.recorded_kills} recorded kills and "
        f"{agreement.reproduced_promotions} of {agreement.recorded_promotions} promotions",
        f"(the same fact from the same event) and adds {agreement.baseline_kills_not_recorded} "
        f"kills and {agreement.baseline_promotions_not_recorded} promotions the log lacks. "
        "Changes are what-if against baseline.",
        "",
        _summary(result),
        "",
        *_verdict_rows(result),
        "",
        f"{'':<20} {'avg weight':>17} {'final weight':>17} {'deployed PnL bps':>21}",
        f"{'agent':<20} {'baseline':>8} {'what-if':>8} {'baseline':>8} {'what-if':>8} "
        f"{'baseline':>10} {'what-if':>10}",
        *_weight_rows(result),
        "",
        _portfolio("recorded", result.recorded),
        _portfolio("baseline", result.baseline),
        _portfolio("what-if", result.what_if),
        *(["", *(f"Note: {note}" for note in result.notes)] if result.notes else []),
    ]
    return ("\n".join(lines) + "\n").encode()
