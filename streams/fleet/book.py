"""The fleet-level rules as one pure fold: portfolio stats, allocation, breach, classes.

A single processor (one partition of `fleet-input`) folds every agent assessment
(with the focus-horizon trade that caused it, if any) and every regime change into a
`FleetBook`, and returns the events that follow: `allocation.updated` when the
weights move, `agent.killed` (source breach) when the portfolio drawdown crosses
the limit, and `strategy.killed` when a class meets 2 of the 4 conditions.
Kill facts it emits are remembered until the kill list (folded from `kills`)
shows them, so a re-evaluation before that never emits a second copy.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel
from schemas.events import (
    AgentAssessed,
    AgentSpawned,
    Decision,
    KillFact,
    PolicyUpdated,
    RegimeChanged,
    SignalReconciled,
)
from schemas.policy import Policy
from streams.agents.stats import (
    StatsState,
    apply_event,
    window_cvar95_bps,
    window_drawdown_bps,
)
from streams.core.day_window import day_of, evict_days, put_day
from streams.core.fleet_state import FleetState, policy_at, regime_at
from streams.core.processing import Routed, routed
from streams.fleet.allocation import (
    AllocationResult,
    allocate,
    allocation_changed,
    allocation_event,
)
from streams.fleet.breach import breach_kills
from streams.fleet.strategy import (
    ClassDay,
    ClassTrade,
    evaluate_class,
    strategy_kill_events,
    summarise_class,
)
from streams.fleet.trials import with_member

PORTFOLIO = "portfolio"
FLEET_KEY = "fleet"


class FleetBook(WireModel):
    agents: dict[str, AgentAssessed] = Field(default_factory=dict)
    portfolio: StatsState = Field(default_factory=StatsState)
    # Each class's window of trades by ISO day (streams.core.day_window).
    class_trades: dict[str, dict[str, ClassDay]] = Field(default_factory=dict)
    # The agents whose latest assessment is PROMOTE, in name order: a breach stops them.
    promoted: tuple[str, ...] = ()
    allocation: AllocationResult | None = None
    rebalanced_at: UtcDatetime | None = None  # event time of the last reallocation
    # Targets this processor has killed whose kill the kill list may not show yet.
    breach_killed: tuple[str, ...] = ()
    classes_killed: tuple[str, ...] = ()
    # Every agent ever seen per strategy class, by name: the trials of the deflated Sharpe.
    class_members: dict[str, tuple[str, ...]] = Field(default_factory=dict)


def _window_start(policy: Policy, at: datetime) -> datetime | None:
    days = policy.thresholds.window_days
    return None if days == 0 else at - timedelta(days=days)


def _add_class_trade(book: FleetBook, rec: SignalReconciled, policy: Policy) -> FleetBook:
    """The book with the trade in its class's window (one day touched, whole days evicted)."""
    if rec.strategy_class is None:
        return book
    trade = ClassTrade(
        signal_id=rec.signal_id,
        exit_ts=rec.exit_ts,
        pnl_bps=rec.realized_pnl_bps,
        regime=rec.regime,
    )
    days = book.class_trades.get(rec.strategy_class, {})
    day = day_of(trade.exit_ts)
    bucket = days.get(day)
    days = put_day(days, day, ClassDay.of((trade,)) if bucket is None else bucket.with_fact(trade))
    start = _window_start(policy, rec.exit_ts)
    if start is not None:
        days = evict_days(days, start)
    return book.model_copy(update={"class_trades": {**book.class_trades, rec.strategy_class: days}})


def _judge_class(
    book: FleetBook,
    strategy_class: str,
    policy: Policy,
    fleet: FleetState,
    at: datetime,
    cause: Event,
) -> tuple[FleetBook, list[Event]]:
    if strategy_class in book.classes_killed:
        return book, []
    members = [a for a in book.agents.values() if a.strategy_class == strategy_class]
    inputs = summarise_class(
        strategy_class,
        book.class_trades.get(strategy_class, {}),
        {a.agent: a.mult for a in members},
        sum(a.stats.cost_usd for a in members),
        at,
        policy,
    )
    kills = strategy_kill_events(evaluate_class(inputs, policy), fleet.kills, at, cause.event_id)
    if kills:
        book = book.model_copy(update={"classes_killed": (*book.classes_killed, strategy_class)})
    return book, list(kills)


def _check_breach(
    book: FleetBook, policy: Policy, fleet: FleetState, at: datetime, cause: Event
) -> tuple[FleetBook, list[Event]]:
    # Over every trade the book holds, up to the newest exit: a trade that arrives after
    # later ones (another symbol's prices lag) does not hide them from the breach.
    newest = max(at, book.portfolio.watermark or at)
    drawdown_bps = window_drawdown_bps(book.portfolio, newest, policy.thresholds.window_days)
    decisions = {name: Decision.PROMOTE for name in book.promoted if name not in book.breach_killed}
    kills = breach_kills(drawdown_bps, decisions, fleet.kills, policy, at, cause.event_id)
    if kills:
        book = book.model_copy(
            update={"breach_killed": (*book.breach_killed, *(k.target for k in kills))}
        )
    return book, list(kills)


def _reallocate(
    book: FleetBook, policy: Policy, fleet: FleetState, at: datetime, cause: Event
) -> tuple[FleetBook, list[Event]]:
    def allocation(portfolio_cvar_bps: float | None) -> AllocationResult:
        return allocate(
            {name: a.stats for name, a in book.agents.items()},
            {name: a.mult for name, a in book.agents.items()},
            {name: a.decision for name, a in book.agents.items()},
            fleet.kills,
            {name: a.strategy_class for name, a in book.agents.items()},
            regime_at(fleet, at),
            policy,
            at,
            portfolio_cvar_bps,
        )

    last = book.rebalanced_at
    book = book.model_copy(update={"rebalanced_at": at if last is None else max(last, at)})
    if not allocation_changed(book.allocation, allocation(None)):
        return book, []
    # Capital at risk needs the portfolio CVaR, a tail over the whole window: computed only
    # for an allocation that is emitted.
    result = allocation(window_cvar95_bps(book.portfolio, at, policy.thresholds.window_days))
    return book.model_copy(update={"allocation": result}), [
        allocation_event(result, at, cause.event_id)
    ]


def _book_trade(
    book: FleetBook, trade: SignalReconciled, fleet: FleetState
) -> tuple[FleetBook, list[Event]]:
    """Add a focus-horizon trade to the portfolio and its class; judge breach and class."""
    policy = policy_at(fleet, trade.ts)
    portfolio = apply_event(book.portfolio, trade, policy.thresholds)
    if portfolio is book.portfolio:
        return book, []  # duplicate, or not the focus horizon
    book = _add_class_trade(book.model_copy(update={"portfolio": portfolio}), trade, policy)
    at = trade.ts
    book, kills = _check_breach(book, policy, fleet, at, trade)
    if trade.strategy_class is None:
        return book, list(kills)
    book, class_kills = _judge_class(book, trade.strategy_class, policy, fleet, at, trade)
    return book, [*kills, *class_kills]


def apply_fleet_input(
    book: FleetBook, event: Event, fleet: FleetState
) -> tuple[FleetBook, list[Event]]:
    """Fold one fleet input; return the new book and the events to emit."""
    policy = policy_at(fleet, event.ts)
    at = event.ts
    emitted: list[Event] = []
    urgent = False
    if isinstance(event, AgentSpawned):
        return _with_trial(book, event.strategy_class, event.child, at)
    if isinstance(event, AgentAssessed):
        known = book.agents.get(event.agent)
        if known is not None and known.seq >= event.seq:
            return book, []  # an older or repeated assessment
        urgent = known is None or known.decision != event.decision
        breach_killed = tuple(
            name
            for name in book.breach_killed
            if name != event.agent or event.decision in (Decision.PROMOTE, Decision.KILLED)
        )
        book = book.model_copy(
            update={
                "agents": {**book.agents, event.agent: event},
                "breach_killed": breach_killed,
                "promoted": _promoted(book.promoted, event),
            }
        )
        book, emitted = _with_trial(book, event.strategy_class, event.agent, at)
        # After the assessment it caused, so a breach the trade deepens judges the fresh
        # decisions.
        if event.trade is not None:
            book, booked = _book_trade(book, event.trade, fleet)
            emitted += booked
    elif isinstance(event, RegimeChanged | PolicyUpdated | KillFact):
        urgent = True  # `fleet` already holds the change
    else:
        return book, []
    if not (urgent or _rebalance_due(book, policy, at)):
        return book, emitted
    book, allocation = _reallocate(book, policy, fleet, at, event)
    return book, emitted + allocation


def _with_trial(
    book: FleetBook, strategy_class: str | None, agent: str, at: datetime
) -> tuple[FleetBook, list[Event]]:
    members, facts = with_member(book.class_members, strategy_class, agent, at)
    if members is None:
        return book, []
    return book.model_copy(update={"class_members": members}), list(facts)


def _promoted(promoted: tuple[str, ...], assessed: AgentAssessed) -> tuple[str, ...]:
    """The promoted agents after `assessed`: kept as the assessments arrive, so a breach
    looks at them, not at every agent of the fleet."""
    now = assessed.decision == Decision.PROMOTE
    if (assessed.agent in promoted) == now:
        return promoted
    if now:
        return tuple(sorted((*promoted, assessed.agent)))
    return tuple(name for name in promoted if name != assessed.agent)


def _rebalance_due(book: FleetBook, policy: Policy, at: datetime) -> bool:
    """Whether the cadence (`Allocation.rebalance_minutes` of event time) has come round."""
    last = book.rebalanced_at
    return last is None or at >= last + timedelta(minutes=policy.allocation.rebalance_minutes)


class FleetProcessor:
    """The fleet processor as a pure step over `fleet-input` (one partition, one order):
    focus-horizon trades and assessments from the agent processors, and every regime,
    policy and kill fact from the relays."""

    name = "supervise_fleet"
    input_topic = "fleet-input"
    state_model = FleetBook

    def key_of(self, event: Event) -> str | None:
        return FLEET_KEY

    def step(
        self, facts: FleetState, state: FleetBook | None, event: Event
    ) -> tuple[FleetBook, list[Routed]]:
        book, events = apply_fleet_input(state or FleetBook(), event, facts)
        return book, routed(events)
