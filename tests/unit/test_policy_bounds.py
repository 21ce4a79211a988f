"""Issue 11: every policy value has bounds, and a value outside them is refused with the
bound named: by the change rule `metasup policy set` and the supervisor share, and by the
codec, so an out-of-bounds `policy.updated` never reaches a fold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.codec import RejectedRecord, decode_event, encode_event
from schemas.policy import Policy, PolicyChangeError, apply_policy_changes
from streams.core.fleet_state import default_policy
from tests.builders import policy_update

T0 = datetime(2024, 3, 1, tzinfo=UTC)

# (dotted key, a value outside its bounds, the bound the refusal must name)
OUT_OF_BOUNDS: list[tuple[str, Any, str]] = [
    ("thresholds.window_days", -1, "greater than or equal to 0"),
    ("thresholds.window_days", 5000, "less than or equal to 3650"),
    ("thresholds.focus_horizon_hours", 0, "greater than or equal to 1"),
    ("thresholds.horizons_hours", [], "at least 1 item"),
    ("thresholds.horizons_hours", [1, -4, 24], "greater than or equal to 1"),
    ("thresholds.promote_min_hit_rate", 1.5, "less than or equal to 1"),
    ("thresholds.promote_max_error_rate", -0.1, "greater than or equal to 0"),
    ("thresholds.kill_pnl_bps", 10.0, "less than or equal to 0"),
    ("thresholds.kill_error_rate", -1, "greater than or equal to 0"),
    ("thresholds.retire_label_at", 101, "less than or equal to 100"),
    ("thresholds.max_drawdown_bps", 0, "greater than 0"),
    ("thresholds.haircut", 2, "less than or equal to 1"),
    ("thresholds.strategy_mismatch_share", -0.5, "greater than or equal to 0"),
    ("thresholds.strategy_conditions_to_kill", 0, "greater than or equal to 1"),
    ("thresholds.max_exit_staleness_hours", 0, "greater than 0"),
    ("thresholds.max_signal_age_days", 0, "greater than or equal to 1"),
    ("confidence.floor", 0, "greater than 0"),
    ("confidence.severe_factor", 1.5, "less than or equal to 1"),
    ("confidence.gain_factor", 0.9, "greater than or equal to 1"),
    ("confidence.history", 0, "greater than or equal to 1"),
    ("capital.nav_usd", -1, "greater than 0"),
    ("capital.risk_budget_pct", 1.5, "less than or equal to 1"),
    ("capital.per_agent_cap_multiplier.a1", 1.5, "less than or equal to 1"),
    ("capital.default_cap_multiplier", -0.1, "greater than or equal to 0"),
    ("capital.max_position_usd", -5, "greater than or equal to 0"),
    ("allocation.softmax_alpha", 0, "greater than 0"),
    ("allocation.rebalance_minutes", -1, "greater than or equal to 0"),
    ("regime_caps.RISK_OFF", 1.2, "less than or equal to 1"),
    ("regime_caps.CRISIS", -0.1, "greater than or equal to 0"),
    ("unknown_regime_cap", 1.01, "less than or equal to 1"),
]


@pytest.mark.parametrize(("key", "value", "bound"), OUT_OF_BOUNDS, ids=lambda x: str(x))
def test_a_change_out_of_bounds_is_refused_with_the_bound_named(
    key: str, value: Any, bound: str
) -> None:
    with pytest.raises(PolicyChangeError) as caught:
        apply_policy_changes(Policy(), [(key, value)])
    message = str(caught.value)
    assert key in message and bound in message, message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ([("thresholds.focus_horizon_hours", 48)], "must be one of horizons_hours [1, 4, 24]"),
        ([("thresholds.watch_label_at", 90)], "watch_label_at (90) must be at most"),
        ([("confidence.start", 2.0)], "start (2.0) <= ceiling (1.2)"),
        ([("confidence.recent", 40)], "recent (40) must be at most history (30)"),
    ],
)
def test_values_that_contradict_each_other_are_refused(
    changes: list[tuple[str, Any]], named: str
) -> None:
    with pytest.raises(PolicyChangeError, match="invalid policy value") as caught:
        apply_policy_changes(Policy(), changes)
    assert named in str(caught.value)


def test_a_consistent_change_of_related_values_passes() -> None:
    policy = apply_policy_changes(
        Policy(),
        [("thresholds.horizons_hours", [4, 48]), ("thresholds.focus_horizon_hours", 48)],
    )
    assert (policy.thresholds.horizons_hours, policy.thresholds.focus_horizon_hours) == (
        (4, 48),
        48,
    )


def test_the_shipped_defaults_are_within_their_bounds() -> None:
    assert default_policy() == Policy()


def test_lifetime_stats_remain_expressible() -> None:
    """`window_days = 0` means lifetime stats (SPEC section 6): the lower bound is 0."""
    assert (
        apply_policy_changes(Policy(), [("thresholds.window_days", 0)]).thresholds.window_days == 0
    )


def test_an_out_of_bounds_policy_updated_is_rejected_at_decode() -> None:
    """It used to pass the codec and raise inside every fold; now it is bad input."""
    document = orjson.loads(encode_event(policy_update(T0, window_days=7)))
    document["thresholds"]["window_days"] = -1

    with pytest.raises(RejectedRecord) as caught:
        decode_event(orjson.dumps(document))
    assert str(caught.value) == (
        "invalid policy.updated: thresholds.window_days: Input should be greater than or equal to 0"
    )
