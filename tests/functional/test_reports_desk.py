"""Forensics, the PR comment and the LP email over the demo desk's recorded log (90 days of
real BTC prices, ten agents): at its end, and as of 2019-04-30 (receipt time), when two
agents were PROMOTE and five held capital. Their figures are checked here against the raw
events or against the meta report (itself checked in test_reports_meta), then frozen.

The golden files `tests/golden/{forensics,pr-comment,lp-email}-desk*.{json,md,txt,html}`
were read by hand once; rerun with `METASUP_UPDATE_GOLDEN=1` to rewrite them after an
intended change, and read the diff.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from projections.fleet import FleetProjection, project_fleet
from projections.reports.forensics import (
    ForensicsReport,
    forensics_markdown,
    forensics_report,
    forensics_text,
)
from projections.reports.lp_email import lp_email
from projections.reports.markup import md_text, signed_bps
from projections.reports.meta import MetaReport, meta_report, report_json
from projections.reports.pr_comment import pr_comment
from schemas.codec import decode_event
from schemas.envelope import Event
from schemas.events import (
    AllocationUpdated,
    Decision,
    DecisionMade,
    RegimeChanged,
    RunCompleted,
    SignalReconciled,
)
from schemas.policy import Policy
from streams.core.fleet_state import policy_at
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CUTS = {"desk": None, "desk-0430": datetime(2019, 4, 30, tzinfo=UTC)}


@cache
def projection(cut: str) -> FleetProjection:
    until = CUTS[cut]
    records = [r for r in desk_log() if until is None or r.received_at <= until]
    return project_fleet(records, SUPERVISOR_KEY.verifier)


@cache
def meta(cut: str) -> MetaReport:
    return meta_report(projection(cut))


def policy(cut: str) -> Policy:
    clock = projection(cut).clock
    assert clock is not None
    return policy_at(projection(cut).fleet, clock)


@cache
def forensics(cut: str) -> ForensicsReport:
    return forensics_report(projection(cut))


@cache
def events(cut: str) -> tuple[Event, ...]:
    until = CUTS[cut]
    return tuple(
        decode_event(r.value) for r in desk_log() if until is None or r.received_at <= until
    )


def window_trades(cut: str) -> list[SignalReconciled]:
    """The focus-horizon trades whose exit is in the report's window, from the raw events."""
    report = meta(cut)
    clock = report.meta.event_time
    assert clock is not None
    start = clock - timedelta(days=report.meta.window_days)
    unique = {
        e.event_id: e
        for e in events(cut)
        if isinstance(e, SignalReconciled)
        and e.horizon_hours == report.meta.focus_horizon_hours
        and start < e.exit_ts <= clock
    }
    return list(unique.values())


def regime_at_signal(cut: str, trade: SignalReconciled) -> str | None:
    signalled = trade.ts - timedelta(hours=trade.horizon_hours)
    changes = sorted(
        (e for e in events(cut) if isinstance(e, RegimeChanged) and e.ts <= signalled),
        key=lambda e: e.ts,
    )
    return trade.regime or (changes[-1].regime if changes else None)


@pytest.mark.parametrize("cut", CUTS)
def test_the_worst_trades_are_the_window_losses_joined_with_their_runs(cut: str) -> None:
    report = forensics(cut)
    trades = window_trades(cut)
    losses = sorted(
        (t for t in trades if t.realized_pnl_bps < 0),
        key=lambda t: (t.realized_pnl_bps, t.exit_ts, t.signal_id),
    )
    assert (report.trades, report.losses) == (len(trades), len(losses))
    assert [(w.signal_id, w.pnl_bps) for w in report.worst] == [
        (t.signal_id, t.realized_pnl_bps) for t in losses[:25]
    ]
    runs = {e.run_id: e for e in events(cut) if isinstance(e, RunCompleted)}
    for worst, trade in zip(report.worst, losses, strict=False):
        run = runs[trade.run_id]
        assert worst.run is not None
        assert (worst.run.latency_ms, worst.run.tokens, worst.run.cost_usd, worst.run.errors) == (
            run.latency_ms,
            run.tokens_in + run.tokens_out,
            run.cost_usd,
            run.errors,
        )
        assert worst.regime == regime_at_signal(cut, trade)


@pytest.mark.parametrize("cut", CUTS)
def test_each_losing_agent_matches_the_raw_events_and_the_meta_report(cut: str) -> None:
    report, trades = forensics(cut), window_trades(cut)
    clock = meta(cut).meta.event_time
    assert clock is not None
    start = clock - timedelta(days=meta(cut).meta.window_days)
    stats = {row.agent: row.stats for row in meta(cut).agents}
    losers = {t.agent for t in trades if t.realized_pnl_bps < 0}
    assert {row.agent for row in report.agents} == losers
    for row in report.agents:
        losses = [
            t.realized_pnl_bps for t in trades if t.agent == row.agent and t.realized_pnl_bps < 0
        ]
        assert row.losses == len(losses)
        assert row.avg_loss_bps == pytest.approx(statistics.mean(losses))
        runs = [
            e
            for e in events(cut)
            if isinstance(e, RunCompleted)
            and e.agent == row.agent
            and e.skipped_reason is None  # refused by the kill switch: never ran
            and start < e.ts <= clock
        ]
        assert row.runs == len(runs) == stats[row.agent].runs
        assert row.median_tokens == statistics.median(e.tokens_in + e.tokens_out for e in runs)
        assert row.error_rate == pytest.approx(stats[row.agent].error_rate)


@pytest.mark.parametrize("cut", CUTS)
def test_the_regime_hypotheses_are_the_concentrations_counted_here(cut: str) -> None:
    """Independent count: per agent, losses and trades per regime at signal time; a lift
    (loss share over trade share) of 1.5 or more on 3 losses or more."""
    expected = set()
    trades = window_trades(cut)
    for agent in {t.agent for t in trades}:
        mine = [t for t in trades if t.agent == agent]
        lost = [t for t in mine if t.realized_pnl_bps < 0]
        regimes = Counter(regime_at_signal(cut, t) for t in mine)
        for regime, count in Counter(regime_at_signal(cut, t) for t in lost).items():
            lift = (count / len(lost)) / (regimes[regime] / len(mine))
            if regime is not None and count >= 3 and lift >= 1.5:
                expected.add((agent, regime, round(lift, 9)))
    found = {
        (row.agent, str(h.figures["regime"]), round(float(h.figures["lift"]), 9))
        for row in forensics(cut).agents
        for h in row.hypotheses
        if h.kind == "regime_concentration"
    }
    assert found == expected
    if cut == "desk":  # read by hand in the golden file
        assert {(agent, regime) for agent, regime, _ in found} == {
            ("llm-macro", "HIGH_VOL"),
            ("llm-trend", "RISK_ON"),
        }


def latest_decisions(cut: str) -> list[DecisionMade]:
    """Each agent's newest decision, the newest first (ties in name order)."""
    latest: dict[str, DecisionMade] = {}
    for event in events(cut):
        if isinstance(event, DecisionMade):
            latest[event.agent] = event
    return sorted(latest.values(), key=lambda d: (-d.ts.timestamp(), d.agent))


@pytest.mark.parametrize("cut", CUTS)
def test_the_pr_comment_shows_the_meta_figures_the_decisions_and_the_weights(cut: str) -> None:
    report = meta(cut)
    comment = pr_comment(report, policy(cut))
    deployed = report.fleet.deployed
    assert (
        f"| PnL | {signed_bps(deployed.pnl_bps)} bps | {signed_bps(report.fleet.pnl_bps)} bps |"
        in comment
    )
    decided = comment[comment.index("### Decisions") : comment.index("### Allocation")]
    names = [line.split(" | ")[1].replace("\\", "") for line in decided.splitlines()[4:-1]]
    assert names == [d.agent for d in latest_decisions(cut)][:10]
    last = [e for e in events(cut) if isinstance(e, AllocationUpdated)][-1]
    for agent, weight in sorted(last.weights.items(), key=lambda w: -w[1])[:10]:
        assert f"| {md_text(agent)} | {weight:.1%} |" in comment


@pytest.mark.parametrize("cut", CUTS)
def test_the_lp_email_shows_the_deployed_figures_and_the_recorded_lists(cut: str) -> None:
    report = meta(cut)
    email = lp_email(report)
    deployed = report.fleet.deployed
    assert email.subject == (
        f"[LP Daily] PnL {deployed.pnl_bps:+.1f} bps | DD {deployed.max_drawdown_bps:.1f} bps"
    )
    decided = latest_decisions(cut)
    promoted = sorted(d.agent for d in decided if d.decision == Decision.PROMOTE)
    assert f"PROMOTE: {', '.join(promoted) or 'none'}" in email.text
    stopped = sorted(
        f"{d.agent} ({d.decision})"
        for d in decided
        if d.decision in (Decision.KILL, Decision.RETIRE, Decision.KILLED)
    )
    assert f"KILL / RETIRE: {', '.join(stopped) or 'none'}\n" in email.text
    best = sorted(report.agents, key=lambda row: (-row.stats.pnl_sum_bps, row.agent))[:15]
    table = email.text[email.text.index("Agents (top 15") :].splitlines()[2 : 2 + len(best)]
    assert [line.split()[0] for line in table] == [row.agent for row in best]


GOLDEN_OUTPUTS: dict[str, Callable[[str], str]] = {
    "forensics-{cut}.json": lambda cut: report_json(forensics(cut)).decode(),
    "forensics-{cut}.md": lambda cut: forensics_markdown(forensics(cut)),
    "forensics-{cut}.txt": lambda cut: forensics_text(forensics(cut)),
    "pr-comment-{cut}.md": lambda cut: pr_comment(meta(cut), policy(cut)),
    "lp-email-{cut}.txt": lambda cut: (
        f"Subject: {lp_email(meta(cut)).subject}\n\n" + lp_email(meta(cut)).text
    ),
    "lp-email-{cut}.html": lambda cut: lp_email(meta(cut)).html,
}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name", GOLDEN_OUTPUTS)
def test_the_reports_are_frozen_in_golden_files(name: str, cut: str) -> None:
    path = GOLDEN / name.format(cut=cut)
    body = GOLDEN_OUTPUTS[name](cut).encode()
    if os.environ.get("METASUP_UPDATE_GOLDEN"):
        path.write_bytes(body)
    assert body == path.read_bytes(), f"{path.name} changed; see the module docstring"
