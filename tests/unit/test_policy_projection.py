"""The policy read model: history folded from the log, the change in force, diffs, changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from projections.log import LogRecord
from projections.policy import MISSING, change_in_force, fold_policies, policy_diff
from schemas.codec import encode_event
from schemas.policy import Policy, PolicyChangeError, apply_policy_changes, check_keys
from streams.core.fleet_state import policy_at
from tests.builders import policy_update
from tests.keys import SUPERVISOR_KEY, signed

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def record(offset: int, value: bytes | None, received: datetime) -> LogRecord:
    return LogRecord("policy", 0, offset, int(received.timestamp() * 1000), value)


# --- history ---------------------------------------------------------------------------


def test_the_history_is_in_event_time_order_whatever_the_log_order() -> None:
    late, early = (
        signed(policy_update(T0 + 2 * HOUR, version=7, window_days=7)),
        signed(policy_update(T0, version=14, window_days=14)),
    )
    records = [
        record(0, encode_event(late), T0 + 3 * HOUR),
        record(1, encode_event(early), T0 + 4 * HOUR),  # published late, in force earlier
    ]

    state = fold_policies(records, SUPERVISOR_KEY.verifier)

    assert [change.event_id for change in state.policies] == [early.event_id, late.event_id]


def test_a_redelivered_change_counts_once_and_bad_records_are_skipped() -> None:
    change = signed(policy_update(T0, version=14, window_days=14))
    records = [
        record(0, encode_event(change), T0),
        record(1, b"not json", T0),
        record(2, None, T0),
        record(3, encode_event(change), T0 + HOUR),
    ]

    assert fold_policies(records, SUPERVISOR_KEY.verifier).policies == (change,)


def test_the_change_in_force_is_the_latest_at_or_before_the_time() -> None:
    first, second = (
        signed(policy_update(T0, version=14, window_days=14)),
        signed(policy_update(T0 + 2 * HOUR, version=7, window_days=7)),
    )
    records = [record(0, encode_event(first), T0), record(1, encode_event(second), T0)]
    state = fold_policies(records, SUPERVISOR_KEY.verifier)

    assert change_in_force(state, T0 - HOUR) is None  # the default file is in force
    assert change_in_force(state, T0) == first
    assert change_in_force(state, T0 + HOUR) == first
    assert change_in_force(state, T0 + 2 * HOUR) == second
    assert policy_at(state, T0 + HOUR).thresholds.window_days == 14


# --- diff ------------------------------------------------------------------------------


def test_an_added_mapping_entry_is_missing_on_the_old_side() -> None:
    old = Policy()
    new = apply_policy_changes(old, [("regime_caps.CRISIS", 0.05)])

    assert policy_diff(old, new) == [
        ("regime_caps.CRISIS", MISSING, 0.05),
        ("version", 1, 2),
    ]
    assert policy_diff(new, new) == []


# --- changes by dotted key -------------------------------------------------------------


def test_keys_are_checked_before_any_policy_is_read() -> None:
    check_keys([("thresholds.window_days", 14), ("thresholds", {"window_days": 7})])
    with pytest.raises(PolicyChangeError, match="did you mean 'window_days'"):
        check_keys([("thresholds.window_dayz", 14)])
    with pytest.raises(PolicyChangeError, match=r"thresholds\.nope"):
        check_keys([("thresholds", {"nope": 1})])


def test_nested_change_bumps_version() -> None:
    old = Policy()
    new = apply_policy_changes(
        old, [("thresholds.window_days", 14), ("allocation.method", "softmax")]
    )
    assert new.thresholds.window_days == 14
    assert new.allocation.method == "softmax"
    assert new.version == old.version + 1
    assert new.thresholds.kill_pnl_bps == old.thresholds.kill_pnl_bps
    assert policy_diff(old, new) == [
        ("allocation.method", "quality", "softmax"),
        ("thresholds.window_days", 30, 14),
        ("version", 1, 2),
    ]
    assert old.thresholds.window_days == 30  # the input is untouched


def test_dict_keys_can_be_added_and_changed() -> None:
    old = Policy()
    new = apply_policy_changes(
        old,
        [
            ("regime_caps.RISK_OFF", 0.1),
            ("regime_caps.CRISIS", 0.05),
            ("capital.per_agent_cap_multiplier.momo-7", 0.5),
        ],
    )
    assert new.regime_caps["RISK_OFF"] == 0.1
    assert new.regime_caps["CRISIS"] == 0.05
    assert new.regime_caps["RISK_ON"] == old.regime_caps["RISK_ON"]
    assert new.capital.per_agent_cap_multiplier == {"momo-7": 0.5}


def test_object_value_on_a_sub_model_merges_field_by_field() -> None:
    new = apply_policy_changes(Policy(), [("thresholds", {"window_days": 7})])
    assert new.thresholds.window_days == 7
    assert new.thresholds.kill_pnl_bps == Policy().thresholds.kill_pnl_bps
    with pytest.raises(PolicyChangeError, match=r"thresholds\.nope"):
        apply_policy_changes(Policy(), [("thresholds", {"nope": 1})])


@pytest.mark.parametrize(
    "key",
    [
        "thresholds.window_dayz",
        "nonsense",
        "allocation.method.deeper",
        "regime_caps.RISK_OFF.deeper",
        "thresholds..window_days",
        "version",
    ],
)
def test_unknown_key_is_rejected(key: str) -> None:
    with pytest.raises(PolicyChangeError) as caught:
        apply_policy_changes(Policy(), [(key, 1)])
    assert key in str(caught.value) or key == "version"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thresholds.window_days", "fourteen"),
        ("thresholds.window_days", 14.5),
        ("allocation.method", "random"),
        ("regime_caps.RISK_OFF", "high"),
        ("capital.per_agent_cap_multiplier.a1", None),
    ],
)
def test_invalid_value_names_the_key(key: str, value: object) -> None:
    with pytest.raises(PolicyChangeError, match="invalid policy value") as caught:
        apply_policy_changes(Policy(), [(key, value)])
    assert key in str(caught.value)


def test_no_changes_is_an_error() -> None:
    with pytest.raises(PolicyChangeError):
        apply_policy_changes(Policy(), [])
