"""The meta report (SPEC section 7): the whole fleet as the log stood, in one JSON document.

Every figure is over the policy's rolling window at the report's clock (the newest event
time among the facts the workers derived), so a report is a function of the records it
read and nothing else: the same records give the same bytes, whenever and wherever it is
built. Decisions, kills and allocations are the recorded facts; statistics come from the
agents' own stats fold; the deployed portfolio (each trade times its agent's weight at
signal time, the rest in cash) is recomputed from the recorded allocations, as the fleet
processor computes it for the breach.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import Field

from projections.fleet import FleetProjection, TradeFact, project_fleet
from projections.replay import Replay
from schemas.envelope import UtcDatetime, WireModel
from schemas.events import AllocationUpdated, Decision, KillFact, TargetType
from schemas.stats import AgentStats
from streams.core.fleet_state import default_policy, policy_at, regime_at
from streams.core.kill_facts import target_type_of
from streams.core.kill_list import KillEntry, active_kill
from streams.core.signing import FactVerifier
from streams.fleet.deployed import weights_at

Severity = Literal["high", "normal"]


class ReportMeta(WireModel):
    # The newest broker receipt time among the records read: what the report knew, and the
    # `--as-of` that rebuilds it.
    generated_at: UtcDatetime | None
    # The report's clock: the newest event time the workers derived; windows end here.
    event_time: UtcDatetime | None
    severity: Severity
    records: int
    # Where the read stopped, per "topic:partition" (the next offset): `--as-of-offsets`.
    position: dict[str, int] = Field(default_factory=dict)
    policy_version: int
    window_days: int
    focus_horizon_hours: int


class DeployedFigures(WireModel):
    """The portfolio as deployed over the window: weighted PnL, its worst and its current
    fall from the running peak (which the breach acts on)."""

    trades: int
    pnl_bps: float
    max_drawdown_bps: float
    current_drawdown_bps: float


class FleetSummary(WireModel):
    agents: int
    trading: int  # neither killed nor on the kill list
    trades: int
    pnl_bps: float
    hit_rate: float | None
    # Unweighted: every agent's trades pooled, as if each carried the same size.
    max_drawdown_bps: float
    cvar95_bps: float | None
    sharpe: float | None
    deployed: DeployedFigures
    regime: str | None
    unreconcilable: int
    deadletter: int


class AgentRow(WireModel):
    agent: str
    strategy_class: str | None
    decision: Decision | None
    previous: Decision | None
    reasons: list[str]
    decided_at: UtcDatetime | None
    retirement_score: int | None
    retirement_label: str | None
    confidence_mult: float | None
    weight: float
    contribution_bps: float | None
    stopped: str | None  # the kill or pause in force, described; None while trading
    parent: str | None
    stats: AgentStats


class AllocationView(WireModel):
    ts: UtcDatetime
    weights: dict[str, float]  # largest first
    cash_weight: float
    regime: str | None
    regime_cap: float


class KillHistoryRow(WireModel):
    """One kill or revive fact on the log, believed or not."""

    ts: UtcDatetime
    type: str
    target_type: TargetType
    target: str
    source: str
    actor: str
    reason: str
    until: UtcDatetime | None
    event_id: uuid.UUID
    signature_verified: bool
    problem: str | None = None


class ActiveKill(WireModel):
    entry: KillEntry
    description: str


class KillListView(WireModel):
    agents: list[ActiveKill]
    strategy_classes: list[ActiveKill]
    history: list[KillHistoryRow]


class LineageNode(WireModel):
    agent: str
    parent: str | None
    strategy_class: str | None
    spawned_at: UtcDatetime | None
    reason: str
    proposal_id: str | None
    children: list[str]


class LineageView(WireModel):
    roots: list[str]
    nodes: dict[str, LineageNode]


class StrategyRow(WireModel):
    strategy_class: str
    agents: list[str]
    trials: int
    stopped: str | None
    stats: AgentStats


class MetaReport(WireModel):
    meta: ReportMeta
    fleet: FleetSummary
    agents: list[AgentRow]
    allocation: AllocationView | None
    capital: dict[str, Any]
    kill_list: KillListView
    lineage: LineageView
    strategy_stats: list[StrategyRow]


# --- the deployed portfolio -------------------------------------------------------------


def deployed_pnls(projection: FleetProjection, trades: list[TradeFact]) -> list[float]:
    """Each trade's PnL times its agent's weight in force at its signal time (0 in cash)."""
    return [
        t.pnl_bps * weights_at(projection.weights, t.signal_ts).get(t.agent, 0.0) + 0.0
        for t in trades
    ]


def deployed_figures(projection: FleetProjection) -> DeployedFigures:
    trades = projection.window_trades()
    cum = peak = worst = 0.0
    for pnl in deployed_pnls(projection, trades):
        cum += pnl
        peak = max(peak, cum)
        worst = max(worst, peak - cum)
    return DeployedFigures(
        trades=len(trades), pnl_bps=cum, max_drawdown_bps=worst, current_drawdown_bps=peak - cum
    )


# --- sections ---------------------------------------------------------------------------


def _stopped(projection: FleetProjection, agent: str, strategy_class: str | None) -> str | None:
    at = projection.clock
    entry = None if at is None else active_kill(projection.fleet.kills, agent, strategy_class, at)
    return entry.describe() if entry is not None else None


def agent_rows(projection: FleetProjection) -> list[AgentRow]:
    allocation = projection.fleet.allocation
    rows = []
    for agent in projection.agents():
        made = projection.decisions.get(agent)
        confidence = projection.confidence.get(agent)
        group = projection.strategy_class.get(agent)
        spawned = projection.lineage.get(agent)
        rows.append(
            AgentRow(
                agent=agent,
                strategy_class=group,
                decision=made.decision if made else None,
                previous=made.previous if made else None,
                reasons=list(made.reasons) if made else [],
                decided_at=made.ts if made else None,
                retirement_score=made.retirement_score if made else None,
                retirement_label=made.retirement_label if made else None,
                confidence_mult=confidence.mult if confidence else None,
                weight=allocation.weights.get(agent, 0.0) if allocation else 0.0,
                contribution_bps=allocation.contributions.get(agent) if allocation else None,
                stopped=_stopped(projection, agent, group),
                parent=spawned.parent if spawned else None,
                stats=projection.agent_window(agent),
            )
        )
    return rows


def allocation_view(allocation: AllocationUpdated | None) -> AllocationView | None:
    if allocation is None:
        return None
    ranked = sorted(allocation.weights.items(), key=lambda item: (-item[1], item[0]))
    return AllocationView(
        ts=allocation.ts,
        weights=dict(ranked),
        cash_weight=allocation.cash_weight,
        regime=allocation.regime,
        regime_cap=allocation.regime_cap,
    )


def kill_list_view(projection: FleetProjection) -> KillListView:
    """What is stopped now (a pause past its `until` no longer is), and every kill or
    revive fact on the log in time order, with whether its signature verified."""
    kills = projection.fleet.kills
    at = projection.clock

    def active(entries: Mapping[str, KillEntry]) -> list[ActiveKill]:
        return [
            ActiveKill(entry=entry, description=entry.describe())
            for _, entry in sorted(entries.items())
            if at is None or entry.active(at)
        ]

    history = [
        KillHistoryRow(**record.model_dump(), signature_verified=True) for record in kills.history
    ]
    history += [
        KillHistoryRow(
            ts=fact.event.ts,
            type=fact.event.type,
            target_type=target_type_of(fact.event),
            target=fact.event.target,
            source=fact.event.source,
            actor=fact.event.actor,
            reason=fact.event.reason,
            until=fact.event.until,
            event_id=fact.event.event_id,
            signature_verified=False,
            problem=fact.problem,
        )
        for fact in projection.unverified
        if isinstance(fact.event, KillFact)
    ]
    history.sort(key=lambda row: row.ts)  # stable: facts of one time stay in log order
    return KillListView(
        agents=active(kills.agents),
        strategy_classes=active(kills.strategy_classes),
        history=history,
    )


def lineage_view(projection: FleetProjection) -> LineageView:
    """The family tree: every agent, its parent (None for a founder) and its children."""
    children: dict[str, list[str]] = {}
    for child, fact in projection.lineage.items():
        if fact.parent is not None:
            children.setdefault(fact.parent, []).append(child)
    names = sorted(set(projection.agents()) | children.keys())
    nodes = {}
    for agent in names:
        spawned = projection.lineage.get(agent)
        nodes[agent] = LineageNode(
            agent=agent,
            parent=spawned.parent if spawned else None,
            strategy_class=projection.strategy_class.get(agent),
            spawned_at=spawned.ts if spawned else None,
            reason=spawned.reason if spawned else "",
            proposal_id=spawned.proposal_id if spawned else None,
            children=sorted(children.get(agent, [])),
        )
    roots = [agent for agent, node in nodes.items() if node.parent is None]
    return LineageView(roots=roots, nodes=nodes)


def strategy_rows(
    projection: FleetProjection, pooled: dict[str, AgentStats]
) -> list[StrategyRow]:
    members: dict[str, list[str]] = {}
    for agent, group in sorted(projection.strategy_class.items()):
        if group is not None:
            members.setdefault(group, []).append(agent)
    kills = projection.fleet.kills.strategy_classes
    at = projection.clock
    rows = []
    for group, agents in sorted(members.items()):
        entry = kills.get(group)
        active = entry is not None and (at is None or entry.active(at))
        rows.append(
            StrategyRow(
                strategy_class=group,
                agents=agents,
                trials=max(len(agents), projection.fleet.class_trials.get(group, 0)),
                stopped=entry.describe() if entry is not None and active else None,
                stats=pooled.get(group, AgentStats()),
            )
        )
    return rows


def fleet_summary(
    projection: FleetProjection, rows: list[AgentRow], pooled: AgentStats
) -> FleetSummary:
    at = projection.clock
    return FleetSummary(
        agents=len(rows),
        trading=sum(1 for row in rows if row.stopped is None and row.decision != Decision.KILLED),
        trades=pooled.trades,
        pnl_bps=pooled.pnl_sum_bps,
        hit_rate=pooled.hit_rate,
        max_drawdown_bps=pooled.max_drawdown_bps,
        cvar95_bps=pooled.cvar95_bps,
        sharpe=pooled.sharpe,
        deployed=deployed_figures(projection),
        regime=regime_at(projection.fleet, at) if at is not None else None,
        unreconcilable=sum(projection.unreconcilable.values()),
        deadletter=sum(projection.deadletter.values()),
    )


def severity(fleet: FleetSummary) -> Severity:
    """High when the portfolio lost over the window: as deployed, or, before capital was
    deployed at all, the fleet's signals pooled."""
    return "high" if fleet.deployed.pnl_bps < 0 or fleet.pnl_bps < 0 else "normal"


def meta_report(
    projection: FleetProjection, position: Mapping[tuple[str, int], int] | None = None
) -> MetaReport:
    """The meta report of what `projection` folded; `position` is where the read stopped."""
    rows = agent_rows(projection)
    pooled = projection.pooled_windows()
    fleet = fleet_summary(projection, rows, pooled.portfolio)
    at = projection.clock
    policy = policy_at(projection.fleet, at) if at is not None else default_policy()
    allocation = projection.fleet.allocation
    return MetaReport(
        meta=ReportMeta(
            generated_at=projection.received_until,
            event_time=projection.clock,
            severity=severity(fleet),
            records=projection.records,
            position={f"{t}:{p}": offset for (t, p), offset in sorted((position or {}).items())},
            policy_version=policy.version,
            window_days=policy.thresholds.window_days,
            focus_horizon_hours=policy.thresholds.focus_horizon_hours,
        ),
        fleet=fleet,
        agents=rows,
        allocation=allocation_view(allocation),
        capital=dict(allocation.capital) if allocation else {},
        kill_list=kill_list_view(projection),
        lineage=lineage_view(projection),
        strategy_stats=strategy_rows(projection, pooled.classes),
    )


def report_json(report: WireModel) -> bytes:
    """The bytes every report is written as: the same report, the same bytes."""
    return orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"


def replayed_report(
    replay: Replay, verifier: FactVerifier, prefix: str = ""
) -> tuple[FleetProjection, MetaReport]:
    """Fold a replay of the report topics into the fleet projection; its meta report, with
    the position the replay reached (topics without the prefix)."""
    projection = project_fleet(replay, verifier, prefix)
    position = {(t.removeprefix(prefix), p): o for (t, p), o in replay.position.items()}
    return projection, meta_report(projection, position)
