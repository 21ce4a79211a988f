"""The policy: every threshold of SPEC section 6, with its bound and its default, and the rule
that applies a change to it.

Defaults live here and in the versioned file `streams/config/policy-v1.json`;
changes travel as `policy.updated` events, so every decision is made, and
replayed, under the policy in force at its event time. Every value has bounds
(pydantic `Field` constraints and a few cross-field checks): a value outside
them is refused where it enters, by `metasup policy set`, by the supervisor
and by the codec, with the bound named, instead of raising inside every fold.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import orjson
from pydantic import BaseModel, Field, ValidationError, model_validator

from schemas.envelope import WireModel

# A share, a probability or a cap on deployed weight.
Fraction = Annotated[float, Field(ge=0, le=1)]
# Errors per run: a run may count several errors, so a rate can exceed 1.
PerRun = Annotated[float, Field(ge=0)]
Hours = Annotated[int, Field(ge=1, le=24 * 366)]


class Thresholds(WireModel):
    horizons_hours: tuple[Hours, ...] = Field(default=(1, 4, 24), min_length=1)
    focus_horizon_hours: Hours = 24
    # Rolling window for stats used by decisions, confidence and allocation; 0 = lifetime.
    window_days: int = Field(default=30, ge=0, le=3650)
    # Promotion gate (all must hold).
    promote_min_pnl_bps: float = Field(default=150.0, ge=0)
    promote_min_hit_rate: Fraction = 0.55
    promote_max_error_rate: PerRun = 0.0
    promote_max_avg_latency_ms: float = Field(default=900.0, gt=0)
    promote_min_confidence: float = Field(default=0.8, ge=0)
    # KILL rule: a kill line above zero would kill agents that make money.
    kill_pnl_bps: float = Field(default=-150.0, le=0)
    kill_error_rate: PerRun = 0.20
    # Evidence before verdicts: the PnL conditions of KILL need this many window trades,
    # its error-rate condition this many window runs, PROMOTE this many trades; below
    # that an agent stays HOLD ("not enough evidence").
    kill_min_trades: int = Field(default=10, ge=0)
    kill_min_runs: int = Field(default=10, ge=0)
    promote_min_trades: int = Field(default=20, ge=0)
    # Edge significance: with the gate on, PROMOTE also needs DSR >= promote_min_dsr and
    # PSR(0) <= kill_max_psr is a KILL condition (evidence minimums still apply).
    significance_gate: bool = False
    promote_min_dsr: Fraction = 0.95
    kill_max_psr: Fraction = 0.05
    # LLM budget per agent per UTC day; over it, the agent is paused until the next UTC
    # midnight (None: no budget).
    daily_budget_usd: float | None = Field(default=None, gt=0)
    # Retirement score (0-100).
    retire_min_trades: int = Field(default=10, ge=0)
    retire_pnl_bps: float = Field(default=-150.0, le=0)
    retire_error_rate: PerRun = 0.10
    retire_cost_usd: float = Field(default=5.0, ge=0)
    retire_label_at: int = Field(default=80, ge=0, le=100)
    watch_label_at: int = Field(default=55, ge=0, le=100)
    # Drawdown breach and the execution haircut.
    max_drawdown_bps: float = Field(default=250.0, gt=0)
    haircut_drawdown_bps: float = Field(default=150.0, gt=0)
    haircut: Fraction = 0.5
    # Strategy-class kill: any `strategy_conditions_to_kill` of the four conditions (more
    # than four: never).
    strategy_losing_periods: int = Field(default=3, ge=1)
    strategy_period_days: int = Field(default=7, ge=1)
    strategy_min_mean_confidence: float = Field(default=0.8, ge=0)
    strategy_mismatch_share: Fraction = 0.6
    strategy_conditions_to_kill: int = Field(default=2, ge=1)
    # Reconciliation: an entry or exit price older than this many hours is stale.
    max_exit_staleness_hours: float = Field(default=2.0, gt=0)
    # A signal this far behind the newest price is refused (TOO_OLD), not reconciled;
    # every price is kept, so this is a policy choice, not a storage limit.
    max_signal_age_days: int = Field(default=400, ge=1, le=36_500)
    # Closed market (stale exit): exit at the first price after the horizon, as a
    # trader would, or give no PnL.
    stale_exit: Literal["next_open", "skip"] = "next_open"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.focus_horizon_hours not in self.horizons_hours:
            raise ValueError(
                f"focus_horizon_hours ({self.focus_horizon_hours}) must be one of "
                f"horizons_hours {list(self.horizons_hours)}: no other horizon is reconciled"
            )
        if self.watch_label_at > self.retire_label_at:
            raise ValueError(
                f"watch_label_at ({self.watch_label_at}) must be at most retire_label_at "
                f"({self.retire_label_at})"
            )
        return self


class ConfidenceRule(WireModel):
    start: float = Field(default=1.0, gt=0)
    history: int = Field(default=30, ge=1)
    recent: int = Field(default=5, ge=1)
    severe_loss_bps: float = Field(default=-50.0, le=0)
    severe_factor: float = Field(default=0.85, gt=0, le=1)
    mild_factor: float = Field(default=0.93, gt=0, le=1)
    gain_bps: float = Field(default=50.0, ge=0)
    gain_factor: float = Field(default=1.03, ge=1, le=2)
    floor: float = Field(default=0.20, gt=0)
    ceiling: float = Field(default=1.20, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.floor <= self.start <= self.ceiling:
            raise ValueError(
                f"floor ({self.floor}) <= start ({self.start}) <= ceiling ({self.ceiling}) "
                "must hold"
            )
        if self.recent > self.history:
            raise ValueError(
                f"recent ({self.recent}) must be at most history ({self.history}): the recent "
                "PnLs are the last of the history"
            )
        return self


class Capital(WireModel):
    nav_usd: float = Field(default=1_000_000.0, gt=0)
    risk_budget_pct: float = Field(default=0.02, gt=0, le=1)
    per_agent_cap_multiplier: dict[str, Fraction] = Field(default_factory=dict)
    default_cap_multiplier: Fraction = 1.0
    unknown_cvar_nav_pct: float = Field(default=0.01, gt=0, le=1)
    order_risk_budget_usd: float = Field(default=1_000.0, ge=0)
    max_position_usd: float = Field(default=250.0, ge=0)


class Allocation(WireModel):
    method: Literal["quality", "softmax"] = "quality"
    softmax_alpha: float = Field(default=1.0, gt=0)
    max_error_rate: PerRun = 0.05
    # Weights are recomputed from new trades and assessments at most once per this many
    # minutes of event time (0: on every one). A regime, policy or kill change, or an
    # agent's decision changing, reallocates at once. Without a cadence every trade would
    # rewrite every agent's weight: work and events growing with the fleet, per trade.
    rebalance_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)


DEFAULT_REGIME_CAPS: dict[str, float] = {
    "RISK_OFF": 0.20,
    "HIGH_VOL": 0.35,
    "MIXED": 0.60,
    "RISK_ON": 1.00,
}


class Policy(WireModel):
    version: int = Field(default=1, ge=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    confidence: ConfidenceRule = Field(default_factory=ConfidenceRule)
    capital: Capital = Field(default_factory=Capital)
    allocation: Allocation = Field(default_factory=Allocation)
    regime_caps: dict[str, Fraction] = Field(default_factory=lambda: dict(DEFAULT_REGIME_CAPS))
    unknown_regime_cap: Fraction = 0.50
    # The regimes each strategy class is meant for: a class with none declared cannot meet
    # the regime-mismatch condition of the class kill.
    class_regimes: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def regime_cap(self, regime: str | None) -> float:
        """Cap on total deployed weight; an unknown or missing regime gets the cautious default."""
        if regime is None:
            return self.unknown_regime_cap
        return self.regime_caps.get(regime, self.unknown_regime_cap)


# --- changes by dotted key -------------------------------------------------------------
# One rule for `metasup policy set` (dotted keys from the command line) and the supervisor
# (the partial policy of a `policy.change.requested`), so both refuse the same changes.


class PolicyChangeError(ValueError):
    """A change that cannot apply to the policy; the message names the key and the bound."""


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _field_type(key: str) -> Any:
    """The declared type at dotted `key` of Policy; unknown keys raise PolicyChangeError.

    Model fields must exist; below a dict-typed field any key is accepted (a new entry).
    """
    parts = key.split(".")
    if any(not part for part in parts):
        raise PolicyChangeError(f"{key!r} is not a dotted key like thresholds.window_days")
    kind: Any = Policy
    for index, part in enumerate(parts):
        here = ".".join(parts[:index]) or "the policy"
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        if _is_model(kind):
            fields = kind.model_fields
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"it has {', '.join(fields)}"
                raise PolicyChangeError(f"unknown key {key!r}: {here} has no {part!r}; {hint}")
            kind = fields[part].annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]
        else:
            raise PolicyChangeError(f"unknown key {key!r}: {here} is a value with no sub-keys")
    return kind


def leaf_changes(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """A JSON object set on a sub-model or a mapping becomes one change per entry, each key
    checked: a partial policy changes only what it names."""
    kind = _field_type(key)
    if (_is_model(kind) or get_origin(kind) is dict) and isinstance(value, dict):
        if not value:
            raise PolicyChangeError(f"{key}: an empty object changes nothing")
        for name, item in value.items():
            yield from leaf_changes(f"{key}.{name}", item)
    else:
        yield key, value


def check_keys(changes: Sequence[tuple[str, Any]]) -> None:
    """Raise PolicyChangeError for the first unknown key, before anything is read or sent."""
    for key, value in changes:
        list(leaf_changes(key, value))


def partial_policy(changes: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The changes as one partial policy document ({"thresholds": {"window_days": 14}}), the
    form a `policy.change.requested` carries."""
    document: dict[str, Any] = {}
    for key, value in changes:
        for leaf, item in leaf_changes(key, value):
            *parents, last = leaf.split(".")
            node = document
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = item
    return document


def _set_path(document: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = document
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise PolicyChangeError(f"{key}: {part!r} cannot hold sub-keys")
        node = child
    node[last] = value


def _describe(errors: ValidationError, changed: Mapping[str, Any]) -> str:
    lines = []
    for error in errors.errors():
        where = ".".join(str(part) for part in error["loc"]) or "policy"
        got = f" (got {orjson.dumps(changed[where]).decode()})" if where in changed else ""
        lines.append(f"{where}: {error['msg']}{got}")
    return "invalid policy value: " + "; ".join(lines)


def apply_policy_changes(policy: Policy, changes: Sequence[tuple[str, Any]]) -> Policy:
    """`policy` with each dotted-key change applied and `version` bumped by one.

    Unknown keys are rejected (the models ignore unknown fields, so they would
    otherwise vanish silently); the result is validated as a whole, so a value out of
    its bounds is refused with the bound named.
    """
    if not changes:
        raise PolicyChangeError("no changes given: pass KEY=VALUE, e.g. thresholds.window_days=14")
    document = policy.model_dump(mode="json")
    changed: dict[str, Any] = {}
    for key, value in changes:
        if key == "version":
            raise PolicyChangeError("version is not set by hand: each change adds one to it")
        for leaf, item in leaf_changes(key, value):
            _set_path(document, leaf, item)
            changed[leaf] = item
    document["version"] = policy.version + 1
    try:
        return Policy.model_validate(document)
    except ValidationError as errors:
        raise PolicyChangeError(_describe(errors, changed)) from None
