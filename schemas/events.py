"""Every event type of the wire contract (SPEC section 3), one frozen model each.

Source events are facts from outside (runs, signals, prices, commands, regimes,
policy, proposals); every other event is derived and gets an id from its causes.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel
from schemas.policy import Policy
from schemas.stats import AgentStats


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class Regime(StrEnum):
    RISK_OFF = "RISK_OFF"
    HIGH_VOL = "HIGH_VOL"
    MIXED = "MIXED"
    RISK_ON = "RISK_ON"


class Decision(StrEnum):
    HOLD = "HOLD"
    PROMOTE = "PROMOTE"
    KILL = "KILL"
    RETIRE = "RETIRE"
    KILLED = "KILLED"


TargetType = Literal["agent", "strategy_class"]
KillSource = Literal["auto", "operator", "breach", "budget", "expiry"]

# Names from outside (agents, symbols, strategy classes, operators) key tables, partitions
# and kill lists, and every state and report repeats them: a name of megabytes would be
# copied into each. Real names are short.
MAX_NAME_CHARS = 128
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]


class RunCompleted(Event):
    TYPE: ClassVar[str] = "run.completed"
    agent: Name
    run_id: uuid.UUID
    started_at: UtcDatetime
    latency_ms: float = Field(ge=0)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    errors: int = Field(default=0, ge=0)
    strategy_class: Name | None = None
    # Set when the kill-switch guard refused to run the agent: the run is recorded
    # as a fact, but it never executed.
    skipped_reason: str | None = None


class SignalEmitted(Event):
    TYPE: ClassVar[str] = "signal.emitted"
    agent: Name
    run_id: uuid.UUID
    symbol: Name
    direction: Direction
    confidence: float = Field(ge=0, le=1)
    prob_up: float | None = Field(default=None, ge=0, le=1)
    score_final: float | None = None
    regime: str | None = None
    strategy_class: Name | None = None


class PriceObserved(Event):
    """A price that stands for the instant `ts` (for a candle: its close time)."""

    TYPE: ClassVar[str] = "price.observed"
    symbol: Name
    price: float = Field(gt=0)
    source: str = "file"
    interval: str | None = None


class SignalReconciled(Event):
    TYPE: ClassVar[str] = "signal.reconciled"
    signal_id: uuid.UUID
    run_id: uuid.UUID
    agent: str
    symbol: str
    direction: Direction
    horizon_hours: int
    entry_ts: UtcDatetime
    entry_price: float
    exit_ts: UtcDatetime
    exit_price: float
    # The market was closed at the horizon end: the exit is the next price after it.
    exit_delayed: bool = False
    realized_pnl_bps: float
    regime: str | None = None
    confidence: float
    score_final: float | None = None
    strategy_class: str | None = None


class SignalUnreconcilable(Event):
    """A (signal, horizon) that gets no PnL: counted and reported, never guessed."""

    TYPE: ClassVar[str] = "signal.unreconcilable"
    signal_id: uuid.UUID
    agent: str
    symbol: str
    horizon_hours: int
    reason: str


class ConfidenceUpdated(Event):
    TYPE: ClassVar[str] = "confidence.updated"
    agent: str
    mult: float
    recent_sum_bps: float
    horizon_hours: int


class DecisionMade(Event):
    TYPE: ClassVar[str] = "decision.made"
    agent: str
    decision: Decision
    previous: Decision | None = None
    reasons: list[str] = Field(default_factory=list)
    retirement_score: int
    retirement_label: Literal["KEEP", "WATCH", "RETIRE"]
    stats: dict[str, Any] = Field(default_factory=dict)


class SignedCommand(Event):
    """A request from an operator on `commands`; only valid once the supervisor has verified
    its HMAC signature, its freshness and its nonce (`streams.fleet.commands`)."""

    actor: Name
    reason: str = ""
    nonce: str = Field(min_length=8)
    signature: str = ""


class OperatorCommand(SignedCommand):
    """A kill or revive request."""

    target_type: TargetType
    target: Name
    until: UtcDatetime | None = None


class KillRequested(OperatorCommand):
    TYPE: ClassVar[str] = "kill.requested"


class ReviveRequested(OperatorCommand):
    TYPE: ClassVar[str] = "revive.requested"


class PolicyChangeRequested(SignedCommand):
    """An operator's change of the policy: `changes` is a partial policy (only the changed
    keys, e.g. {"thresholds": {"window_days": 14}}); the supervisor applies it to the policy
    in force and appends the whole result as `policy.updated`."""

    TYPE: ClassVar[str] = "policy.change.requested"
    changes: dict[str, Any] = Field(min_length=1)


class GovernanceFact(Event):
    """A fact only the supervisor writes (`kills`, `policy`). `signature` is its Ed25519
    signature (hex) over the canonical bytes of every other field; readers verify it with
    the supervisor's public key and treat an unsigned or forged fact as bad input."""

    actor: str = "supervisor"
    reason: str = ""
    # The command that caused the fact, when an operator's.
    cause_id: uuid.UUID | None = None
    signature: str = ""


class KillFact(GovernanceFact):
    """A change of the kill list; written only by the supervisor."""

    target: str
    source: KillSource
    until: UtcDatetime | None = None


class AgentKilled(KillFact):
    TYPE: ClassVar[str] = "agent.killed"
    # What a rule judged the kill on (a breach: the deployed drawdown and its attribution to
    # agents). Left out of the record when empty, so a kill signed before the field existed
    # still has the bytes its signature covers.
    evidence: dict[str, Any] = Field(default_factory=dict, exclude_if=lambda value: not value)


class AgentRevived(KillFact):
    TYPE: ClassVar[str] = "agent.revived"


class StrategyKilled(KillFact):
    TYPE: ClassVar[str] = "strategy.killed"
    evidence: dict[str, Any] = Field(default_factory=dict)


class StrategyRevived(KillFact):
    TYPE: ClassVar[str] = "strategy.revived"


class RegimeChanged(Event):
    TYPE: ClassVar[str] = "regime.changed"
    regime: str
    source: str = "operator"


class AllocationUpdated(Event):
    TYPE: ClassVar[str] = "allocation.updated"
    weights: dict[str, float]
    regime: str | None = None
    regime_cap: float
    cash_weight: float
    capital: dict[str, Any] = Field(default_factory=dict)
    # Each agent's leave-one-out contribution over the window, in bps of the portfolio: its
    # PnL times its weight at entry (streams.fleet.deployed).
    contributions: dict[str, float] = Field(default_factory=dict)


class StrategyTrials(Event):
    """How many agents were ever tried in a strategy class (lineage and first appearance):
    the N of the deflated Sharpe ratio. Emitted by the fleet processor when it grows,
    broadcast to the agent processors like the allocation."""

    TYPE: ClassVar[str] = "strategy.trials"
    strategy_class: str = Field(min_length=1)
    trials: int = Field(ge=1)


class OrderIntent(Event):
    TYPE: ClassVar[str] = "order.intent"
    signal_id: uuid.UUID
    agent: str
    strategy_class: str | None = None
    symbol: str
    direction: Direction
    target_usd: float
    mode: Literal["shadow", "live"]
    routed: bool
    reason: str


class AgentSpawned(Event):
    TYPE: ClassVar[str] = "agent.spawned"
    child: str = Field(min_length=1)
    parent: str | None = None
    reason: str = ""
    proposal_id: str | None = None
    strategy_class: str | None = None
    # Who accepted the proposal it comes from, when one did. Left out of the record when
    # None, so spawns written before the field existed keep their bytes.
    actor: str | None = Field(default=None, exclude_if=lambda value: value is None)


class EvalPlan(WireModel):
    offline: list[str] = Field(min_length=1)
    live_shadow: list[str] = Field(min_length=1)


class AgentProposal(WireModel):
    """What the LLM must return for each proposed agent (SPEC section 8)."""

    name: str = Field(min_length=1)
    strategy_class: str = Field(min_length=1)
    regime_trigger: str
    thesis: str = Field(min_length=1)
    data_sources: list[str] = Field(min_length=1)
    signals: list[str] = Field(min_length=1)
    eval_plan: EvalPlan
    risk_controls: list[str] = Field(min_length=1)
    expected_edge: str
    parent_agent: str | None = None


class AgentProposed(AgentProposal, Event):
    TYPE: ClassVar[str] = "agent.proposed"
    proposal_id: str = Field(min_length=1)


class ProposalsInvalid(Event):
    """The LLM's proposals for a memo period, refused after one retry: why, and what it said
    (kept for the audit trail; nothing in it is ever executed)."""

    TYPE: ClassVar[str] = "proposals.invalid"
    period: str
    model: str
    reason: str
    attempts: int = Field(ge=1)
    output: str = Field(max_length=16_000)


class ProposalCommand(SignedCommand):
    """An operator's verdict on a proposal, signed like a kill: accepting one makes the
    supervisor append `agent.spawned` (lineage); rejecting one, `proposal.rejected`."""

    proposal_id: Name
    child: Name
    parent: Name | None = None
    strategy_class: Name | None = None


class ProposalAcceptRequested(ProposalCommand):
    TYPE: ClassVar[str] = "proposal.accept.requested"


class ProposalRejectRequested(ProposalCommand):
    TYPE: ClassVar[str] = "proposal.reject.requested"


class ProposalRejected(Event):
    TYPE: ClassVar[str] = "proposal.rejected"
    proposal_id: str
    name: str
    actor: str
    reason: str = ""
    cause_id: uuid.UUID | None = None


ReportJob = Literal["ic-memo", "lp-email", "forensics"]


class ReportClaimed(Event):
    """A scheduled report's period, claimed on `reports` before anything is sent. Its id
    derives from (job, period); when two workers claim the same period, the first claim in
    the log is the one that runs (`streams.schedule.claims`)."""

    TYPE: ClassVar[str] = "report.claimed"
    job: ReportJob
    period: str = Field(min_length=1)
    due_at: UtcDatetime
    # Unique per claiming process: tells the two copies of one claim apart.
    claimant: str = Field(min_length=1)
    trigger: Literal["schedule", "catch-up", "manual"]


class MemoWritten(Event):
    """An IC memo as written: the markdown, where it was saved, and what it cost."""

    TYPE: ClassVar[str] = "memo.written"
    job: ReportJob = "ic-memo"
    period: str
    claim_id: uuid.UUID | None = None
    path: str
    markdown: str
    prompt_sha256: str
    model: str
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    cost_usd: float | None = None
    latency_ms: int = Field(ge=0)
    # The figures the memo was written from: the next memo says what changed since.
    facts: dict[str, Any] = Field(default_factory=dict)
    # Sections of SPEC 8 the model left out (the memo is kept and sent all the same).
    missing_sections: list[str] = Field(default_factory=list)


class EmailDispatched(Event):
    """What became of one email: sent through SendGrid, written to the outbox, or failed
    after its retries."""

    TYPE: ClassVar[str] = "email.dispatched"
    job: ReportJob
    period: str
    claim_id: uuid.UUID | None = None
    message_id: str
    subject: str
    recipients: list[str] = Field(default_factory=list)
    status: Literal["sent", "outbox", "failed"]
    attempts: int = Field(ge=0)
    detail: str = ""
    outbox_path: str | None = None
    provider_id: str | None = None


class PolicyUpdated(Policy, GovernanceFact):
    """The whole policy in force from `ts` on; folding it means replacing it. `actor` and
    `reason` are those of the operator's change, `cause_id` its command."""

    TYPE: ClassVar[str] = "policy.updated"


class AgentAssessed(Event):
    """Internal (topic `fleet-input`): an agent's latest stats, multiplier and decision,
    sent to the single fleet-level processor that allocates and watches the portfolio."""

    TYPE: ClassVar[str] = "agent.assessed"
    agent: str
    strategy_class: str | None = None
    stats: AgentStats
    mult: float
    decision: Decision
    # The agent's assessment number: the fleet keeps the highest (event times can tie).
    seq: int = 0
    # The focus-horizon trade that caused this assessment, if one did: the fleet books it
    # (portfolio, class) from here, so a trade and its assessment are one fleet record.
    trade: SignalReconciled | None = None


class EventRejected(Event):
    TYPE: ClassVar[str] = "event.rejected"
    source_topic: str
    partition: int
    offset: int
    reason: str
    raw_value: str = Field(description="the rejected record's value, base64")


EVENT_TYPES: dict[str, type[Event]] = {
    model.TYPE: model
    for model in (
        RunCompleted,
        SignalEmitted,
        PriceObserved,
        SignalReconciled,
        SignalUnreconcilable,
        ConfidenceUpdated,
        DecisionMade,
        KillRequested,
        ReviveRequested,
        PolicyChangeRequested,
        AgentKilled,
        AgentRevived,
        StrategyKilled,
        StrategyRevived,
        RegimeChanged,
        AllocationUpdated,
        StrategyTrials,
        OrderIntent,
        AgentSpawned,
        AgentProposed,
        ProposalsInvalid,
        ProposalAcceptRequested,
        ProposalRejectRequested,
        ProposalRejected,
        ReportClaimed,
        MemoWritten,
        EmailDispatched,
        PolicyUpdated,
        AgentAssessed,
        EventRejected,
    )
}
