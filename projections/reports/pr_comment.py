"""The pull-request comment (SPEC section 7): the meta report as a reviewer reads it under a
change, in markdown for GitHub.

Its figures are the meta report's, so the comment and the JSON cannot disagree. Decisions
are each agent's standing decision, the most recently changed first: an agent that flapped
between HOLD and PROMOTE takes one line, not the whole list. A decision is recorded when it
changes, with the reasons of that moment; so the promotion gate is shown as it stands over
the window now (`streams.agents.decide.promotion_gate`, the rule's own function), beside
the recorded decision, with PSR and DSR.

Agent names, regimes and reasons come from outside: each goes through `md_text`, so a
hostile name renders as its own text, never as a link, an image, a mention or HTML.
"""

from __future__ import annotations

from typing import NamedTuple

from projections.reports.digest import fleet_line, portfolio_figures, top_weights
from projections.reports.markup import MISSING, md_table, md_text, ratio, share
from projections.reports.meta import AgentRow, MetaReport
from schemas.envelope import format_utc
from schemas.events import Decision
from schemas.policy import Policy
from streams.agents.decide import promotion_gate

TOP_DECISIONS = 10
TOP_WEIGHTS = 10
GATE_ROWS = 10  # the gate's table: those that pass, then the nearest to passing


def pr_comment(report: MetaReport, policy: Policy) -> str:
    """The comment's markdown; `policy` is the one in force at the report's clock (the
    gate's thresholds)."""
    return "\n".join(
        [
            *_heading(report),
            *_portfolio(report),
            *_decisions(report.agents),
            *_allocation(report),
            *_gate(report, policy),
        ]
    )


def _when(report: MetaReport) -> str:
    generated = report.meta.generated_at
    event_time = report.meta.event_time
    return (
        f"generated {format_utc(generated) if generated else MISSING}, event time "
        f"{format_utc(event_time) if event_time else MISSING}"
    )


def _heading(report: MetaReport) -> list[str]:
    meta = report.meta
    severity = meta.severity.upper() if meta.severity == "high" else meta.severity
    return [
        "## Meta-supervisor report",
        "",
        f"**Severity: {severity}** · {_when(report)} · policy v{meta.policy_version} · "
        f"{meta.window_days}-day window, {meta.focus_horizon_hours} h horizon",
        "",
    ]


def _portfolio(report: MetaReport) -> list[str]:
    rows = [[f.label, f.deployed, f.unweighted] for f in portfolio_figures(report.fleet)]
    return [
        "### Portfolio",
        "",
        md_table(["", "deployed>", "unweighted>"], rows),
        fleet_line(report.fleet, md_text),
        "",
    ]


def _reasons(row: AgentRow) -> str:
    return md_text("; ".join(row.reasons)) if row.reasons else ""


def _decisions(agents: list[AgentRow]) -> list[str]:
    dated = sorted(
        ((row.decided_at, row) for row in agents if row.decided_at and row.decision),
        key=lambda item: item[1].agent,
    )
    dated.sort(key=lambda item: item[0], reverse=True)  # stable: one time, name order
    lines = [f"### Decisions ({TOP_DECISIONS} most recent)", ""]
    if not dated:
        return [*lines, "No decision yet.", ""]
    rows = [
        [
            format_utc(decided_at),
            md_text(row.agent),
            f"**{row.decision}**",
            str(row.previous) if row.previous else MISSING,
            _reasons(row),
        ]
        for decided_at, row in dated[:TOP_DECISIONS]
    ]
    return [*lines, md_table(["decided", "agent", "decision", "was", "why"], rows)]


def _allocation(report: MetaReport) -> list[str]:
    allocation = report.allocation
    lines = [f"### Allocation (top {TOP_WEIGHTS})", ""]
    if allocation is None:
        return [*lines, "No allocation yet: all in cash.", ""]
    regime = md_text(allocation.regime) if allocation.regime else MISSING
    top = top_weights(allocation, TOP_WEIGHTS)
    rows = [[md_text(agent), share(weight)] for agent, weight in top.weights]
    if top.others:
        rows.append([f"{top.others} others", share(top.others_weight)])
    rows.append(["cash", share(top.cash_weight)])
    return [
        *lines,
        f"As of {format_utc(allocation.ts)}, regime {regime}, "
        f"cap {share(allocation.regime_cap)} of capital.",
        "",
        md_table(["agent", "weight>"], rows),
    ]


class GateRow(NamedTuple):
    row: AgentRow
    failures: list[str]  # empty: the gate passes


def _gate_now(report: MetaReport, policy: Policy) -> list[GateRow]:
    """The gate over each agent's window now, passing first, then the nearest to passing
    (highest DSR)."""
    rows = [
        GateRow(
            row,
            promotion_gate(
                row.stats,
                policy.confidence.start if row.confidence_mult is None else row.confidence_mult,
                row.stopped is not None,
                policy,
            ),
        )
        for row in report.agents
    ]
    rows.sort(key=lambda gate: (bool(gate.failures), -(gate.row.stats.dsr or 0.0), gate.row.agent))
    return rows


def _gate(report: MetaReport, policy: Policy) -> list[str]:
    gates = _gate_now(report, policy)
    passing = sum(1 for gate in gates if not gate.failures)
    promoted = sum(1 for row in report.agents if row.decision == Decision.PROMOTE)
    lines = [
        "### Promotion gate",
        "",
        f"{passing} of {len(gates)} agents pass it over the window now; {promoted} recorded "
        "as PROMOTE.",
        "",
    ]
    if not gates:
        return lines
    table = [
        [
            md_text(gate.row.agent),
            str(gate.row.decision) if gate.row.decision else MISSING,
            "fail" if gate.failures else "pass",
            ratio(gate.row.stats.psr),
            ratio(gate.row.stats.dsr),
            md_text("; ".join(gate.failures)),
        ]
        for gate in gates[:GATE_ROWS]
    ]
    headers = ["agent", "decision", "gate", "PSR>", "DSR>", "fails on"]
    lines.append(md_table(headers, table))
    if len(gates) > GATE_ROWS:
        lines += [f"And {len(gates) - GATE_ROWS} more that fail it.", ""]
    return lines
