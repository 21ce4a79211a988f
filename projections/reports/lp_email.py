"""The LP daily email (SPEC section 7): the meta report for the fund's investors, as a
subject, a plain-text body and an HTML body.

The subject carries the deployed portfolio's figures over the policy's window: its PnL and
its maximum drawdown from the running peak (`fleet.deployed` of the meta report), what an
investor's capital actually earned and risked, not the unweighted pool of every signal.

Every string from outside (agent names, regimes, decisions' labels alike) is escaped with
`html.escape(..., quote=True)` in the HTML body, which holds no script, no event handler and
no link; its only styling is the small inline stylesheet below.
"""

from __future__ import annotations

import html

from projections.reports.digest import fleet_line, portfolio_figures, top_weights
from projections.reports.markup import (
    MISSING,
    html_table,
    latency,
    printable,
    share,
    signed_bps,
    text_table,
    usd,
)
from projections.reports.meta import AgentRow, MetaReport
from schemas.envelope import WireModel, format_utc
from schemas.events import Decision

TOP_WEIGHTS = 10
TOP_AGENTS = 15
DISCLAIMER = "Informational performance summary. Not investment advice."
STOPPED = (Decision.KILL, Decision.RETIRE, Decision.KILLED)

_STYLE = """<style>
body { font-family: Arial, Helvetica, sans-serif; color: #222; }
table { border-collapse: collapse; margin: 0 0 16px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.num { text-align: right; }
p.note { color: #666; font-size: 12px; }
</style>"""


class LpEmail(WireModel):
    subject: str
    text: str
    html: str


def subject(report: MetaReport) -> str:
    deployed = report.fleet.deployed
    return (
        f"[LP Daily] PnL {signed_bps(deployed.pnl_bps)} bps | "
        f"DD {deployed.max_drawdown_bps:.1f} bps"
    )


def lp_email(report: MetaReport) -> LpEmail:
    """The email of the meta report: subject, plain text and HTML, the same sections."""
    return LpEmail(subject=subject(report), text=_text(report), html=_html(report))


# --- what both bodies show --------------------------------------------------------------


def _as_of(report: MetaReport) -> str:
    event_time = report.meta.event_time
    return (
        f"As of {format_utc(event_time) if event_time else MISSING}, over the last "
        f"{report.meta.window_days} days."
    )


def _portfolio_rows(report: MetaReport) -> list[list[str]]:
    fleet = report.fleet
    return [[f.label, f.deployed, f.unweighted] for f in portfolio_figures(fleet)]


def _promoted(report: MetaReport) -> list[str]:
    return [row.agent for row in report.agents if row.decision == Decision.PROMOTE]


def _stopped(report: MetaReport) -> list[str]:
    return [f"{row.agent} ({row.decision})" for row in report.agents if row.decision in STOPPED]


def _weight_rows(report: MetaReport) -> list[list[str]]:
    top = top_weights(report.allocation, TOP_WEIGHTS)
    rows = [[agent, share(weight)] for agent, weight in top.weights]
    if top.others:
        rows.append([f"{top.others} others", share(top.others_weight)])
    rows.append(["cash", share(top.cash_weight)])
    return rows


def _top_agents(report: MetaReport) -> list[AgentRow]:
    """The agents with the best window PnL (ties in name order)."""
    return sorted(report.agents, key=lambda row: (-row.stats.pnl_sum_bps, row.agent))[:TOP_AGENTS]


_AGENT_HEADERS = (
    "agent", "decision", "PnL bps>", "hit>", "err>", "latency>", "cost>", "retire",
)  # fmt: skip


def _agent_cells(row: AgentRow) -> list[str]:
    stats = row.stats
    return [
        row.agent,
        str(row.decision) if row.decision else MISSING,
        signed_bps(stats.pnl_sum_bps),
        share(stats.hit_rate),
        share(stats.error_rate),
        latency(stats.avg_latency_ms),
        usd(stats.cost_usd),
        row.retirement_label or MISSING,
    ]


def _listed(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


# --- bodies -----------------------------------------------------------------------------


def _text(report: MetaReport) -> str:
    agents = [_agent_cells(row) for row in _top_agents(report)]
    lines = [
        "LP daily summary",
        _as_of(report),
        "",
        "Portfolio:",
        text_table(["", "deployed>", "unweighted>"], _portfolio_rows(report), "  "),
        printable(fleet_line(report.fleet, str)),
        "",
        printable(f"PROMOTE: {_listed(_promoted(report))}"),
        printable(f"KILL / RETIRE: {_listed(_stopped(report))}"),
        "",
        f"Allocation (top {TOP_WEIGHTS}):",
        text_table(["agent", "weight>"], _weight_rows(report), "  "),
        f"Agents (top {TOP_AGENTS} by window PnL):",
        text_table(_AGENT_HEADERS, agents, "  "),
        DISCLAIMER,
    ]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _html_list(names: list[str]) -> str:
    return _escape(_listed(names))


def _html(report: MetaReport) -> str:
    agents = [_agent_cells(row) for row in _top_agents(report)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head>\n<meta charset="utf-8">',
        f"<title>{_escape(subject(report))}</title>",
        _STYLE,
        "</head>",
        "<body>",
        "<h1>LP daily summary</h1>",
        f"<p>{_escape(_as_of(report))}</p>",
        "<h2>Portfolio</h2>",
        html_table(["", "deployed>", "unweighted>"], _portfolio_rows(report)),
        f"<p>{fleet_line(report.fleet, _escape)}</p>",
        f"<p><strong>PROMOTE:</strong> {_html_list(_promoted(report))}</p>",
        f"<p><strong>KILL / RETIRE:</strong> {_html_list(_stopped(report))}</p>",
        f"<h2>Allocation (top {TOP_WEIGHTS})</h2>",
        html_table(["agent", "weight>"], _weight_rows(report)),
        f"<h2>Agents (top {TOP_AGENTS} by window PnL)</h2>",
        html_table(_AGENT_HEADERS, agents),
        f'<p class="note">{_escape(DISCLAIMER)}</p>',
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
