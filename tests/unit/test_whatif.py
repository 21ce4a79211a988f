"""What-if of governance (projections.whatif) on trades worked out by hand.

Two agents trade once a day, each signal settled 24 h later: `loser` loses 30 bps on every
trade, `winner` makes 40 bps, neither errs, runs take 100 ms. So after k trades `loser`
stands at -30k bps and `winner` at +40k with a hit rate of 1. On the default policy (window
30 days, kill line -150 bps on at least 10 trades, promotion on 150 bps over at least 20
trades) `loser` is killed by its 10th trade (-300 < -150) and `winner` promoted at its
20th; the regime is never declared, so the deployed weight is capped at 0.5, all of it the
winner's (the loser's PnL is not positive).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from projections.whatif import (
    RecordedLog,
    WhatIfError,
    WhatIfResult,
    change,
    policy_from_json,
    split_log,
    what_if,
)
from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentKilled,
    PolicyUpdated,
    RunCompleted,
    SignalEmitted,
    SignalReconciled,
)
from schemas.policy import Policy
from streams.core.kill_facts import kill_fact

START = datetime(2024, 1, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
TRADES = 26  # days of signals; trade k (1-based) settles at day k


def at(day: int) -> datetime:
    return START + day * DAY


def trading(agent: str, pnl_bps: float, days: int = TRADES) -> list[Event]:
    """A run and a signal each day from day 0, and each signal's trade a day later."""
    events: list[Event] = []
    for day in range(days):
        run_id = derived_event_id("run", agent, day)
        signal = SignalEmitted.create(
            ts=at(day), agent=agent, run_id=run_id, symbol="BTC", direction="LONG", confidence=0.7
        )
        events += [
            signal,
            RunCompleted.create(
                ts=at(day), agent=agent, run_id=run_id, started_at=at(day), latency_ms=100.0
            ),
            SignalReconciled.create(
                ts=at(day + 1),
                signal_id=signal.event_id,
                run_id=run_id,
                agent=agent,
                symbol="BTC",
                direction="LONG",
                horizon_hours=24,
                entry_ts=at(day),
                entry_price=100.0,
                exit_ts=at(day + 1),
                exit_price=100.0 * (1 + pnl_bps / 10_000),
                realized_pnl_bps=pnl_bps,
                confidence=0.7,
            ),
        ]
    return events


def recorded_policy(when: datetime = START, **thresholds: Any) -> PolicyUpdated:
    policy = Policy()
    return PolicyUpdated.create(
        ts=when,
        **{
            **policy.model_dump(),
            "thresholds": policy.thresholds.model_copy(update=thresholds).model_dump(),
        },
    )


def desk_log(*extra: Event) -> RecordedLog:
    """Both agents on the default policy, recorded from the start."""
    return split_log(
        [recorded_policy(), *trading("loser", -30.0), *trading("winner", 40.0), *extra]
    )


def with_thresholds(**thresholds: Any) -> Policy:
    policy = Policy()
    return policy.model_copy(update={"thresholds": policy.thresholds.model_copy(update=thresholds)})


def killed_at(result: WhatIfResult, agent: str) -> tuple[datetime | None, datetime | None]:
    baseline = result.baseline.agents[agent].killed
    alternative = result.what_if.agents[agent].killed
    return (baseline.at if baseline else None, alternative.at if alternative else None)


def test_the_policy_in_force_changes_nothing() -> None:
    result = what_if(desk_log(), Policy())
    assert not result.differs
    assert result.policy_changes == []
    assert {c.killed for c in result.changes.values()} == {"same", ""}
    assert result.changes["winner"].promoted == "same"
    assert all(c.avg_weight == 0 and c.deployed_pnl_bps == 0 for c in result.changes.values())


def test_the_baseline_kills_and_promotes_where_the_hand_worked_trades_say() -> None:
    result = what_if(desk_log(), Policy())
    loser = result.baseline.agents["loser"]
    assert loser.killed is not None
    assert (loser.killed.at, loser.killed.source, loser.killed.rule) == (at(10), "auto", "KILL")
    assert result.baseline.agents["winner"].promoted == at(20)
    assert result.baseline.agents["winner"].killed is None


def test_a_stricter_kill_line_kills_earlier() -> None:
    # 5 trades of evidence, line -100: the 5th trade (-150) crosses it.
    result = what_if(desk_log(), with_thresholds(kill_min_trades=5, kill_pnl_bps=-100.0))
    assert killed_at(result, "loser") == (at(10), at(5))
    assert result.changes["loser"].killed == "earlier by 5d"
    assert result.changes["winner"].killed == ""


def test_a_looser_kill_line_kills_later_or_never() -> None:
    later = what_if(desk_log(), with_thresholds(kill_pnl_bps=-400.0))  # -420 at the 14th trade
    assert killed_at(later, "loser") == (at(10), at(14))
    assert later.changes["loser"].killed == "later by 4d"
    never = what_if(desk_log(), with_thresholds(kill_pnl_bps=-1000.0))  # needs 34 trades
    assert killed_at(never, "loser") == (at(10), None)
    assert never.changes["loser"].killed == "never"


def test_more_trades_before_a_promotion_promote_later() -> None:
    result = what_if(desk_log(), with_thresholds(promote_min_trades=25))
    assert result.what_if.agents["winner"].promoted == at(25)
    assert result.changes["winner"].promoted == "later by 5d"


def test_a_lower_cap_halves_the_weight_and_the_deployed_pnl() -> None:
    policy = Policy().model_copy(update={"unknown_regime_cap": 0.25})
    result = what_if(desk_log(), policy)
    baseline, alternative = result.baseline, result.what_if
    assert baseline.agents["winner"].final_weight == 0.5
    assert alternative.agents["winner"].final_weight == 0.25
    assert (baseline.final_cash, alternative.final_cash) == (0.5, 0.75)
    assert baseline.agents["loser"].final_weight == alternative.agents["loser"].final_weight == 0
    # Weights are recomputed at most hourly: on day 1 the loser's trade (first in the log)
    # rebalances before the winner's first trade is booked, so the winner's weight comes
    # with day 2's rebalance. Its first two trades were signalled in cash, the others 24
    # at the capped weight.
    assert baseline.deployed_pnl_bps == pytest.approx((TRADES - 2) * 40.0 * 0.5)
    assert alternative.deployed_pnl_bps == pytest.approx((TRADES - 2) * 40.0 * 0.25)
    # Over the 26 days from the first event to the last trade: all cash until day 2.
    assert baseline.agents["winner"].avg_weight == pytest.approx(0.5 * 24 / 26)
    assert alternative.agents["winner"].avg_weight == pytest.approx(0.25 * 24 / 26)
    assert alternative.avg_cash == pytest.approx((2 + 0.75 * 24) / 26)
    assert result.changes["winner"].deployed_pnl_bps == pytest.approx(-(TRADES - 2) * 10.0)
    assert result.changes["winner"].promoted == "same"  # verdicts do not hang on the cap


def test_the_policy_applies_from_from_and_nothing_after_to_is_fed() -> None:
    stricter = with_thresholds(kill_min_trades=5, kill_pnl_bps=-100.0)
    from_day_7 = what_if(desk_log(), stricter, start=at(7))
    # Under the recorded policy up to day 7 (6 trades, no kill); the 7th trade, the first
    # under the file's, crosses the stricter line.
    assert killed_at(from_day_7, "loser") == (at(10), at(7))
    until_day_8 = what_if(desk_log(), stricter, end=at(8))
    assert killed_at(until_day_8, "loser") == (None, at(5))
    assert until_day_8.changes["loser"].killed == "new"
    assert until_day_8.end == at(8)
    assert until_day_8.fed["signal.reconciled"] == 2 * 8  # trades 1..8 of each agent
    assert until_day_8.baseline.agents["winner"].promoted is None  # its 20th trade is later


def test_the_recorded_policy_changes_apply_before_from_and_are_replaced_after() -> None:
    # Recorded: the kill line moves to -100 on 5 trades at day 3. A what-if from day 4 with
    # the default policy undoes that change from then on.
    log = desk_log(recorded_policy(at(3), kill_min_trades=5, kill_pnl_bps=-100.0))
    result = what_if(log, Policy(), start=at(4))
    assert killed_at(result, "loser") == (at(5), at(10))
    assert [(c.key, c.in_force, c.what_if) for c in result.policy_changes] == [
        ("thresholds.kill_min_trades", 5, 10),
        ("thresholds.kill_pnl_bps", -100.0, -150.0),
    ]


def test_an_operator_kill_is_kept_as_recorded_in_both_runs() -> None:
    kill = kill_fact(
        AgentKilled,
        target="winner",
        source="operator",
        at=at(3),
        causes=("test",),
        actor="alice",
        reason="manual",
    )
    result = what_if(desk_log(kill), with_thresholds(promote_min_trades=5))
    for column in (result.recorded, result.baseline, result.what_if):
        killed = column.agents["winner"].killed
        assert killed is not None and (killed.at, killed.source) == (at(3), "operator")
    assert result.what_if.agents["winner"].promoted is None  # killed before any evidence


def test_changes_read_as_time_moved() -> None:
    assert change(at(3), at(1) + timedelta(hours=5)) == "earlier by 1d 19h"
    assert change(at(3), at(3) + timedelta(minutes=30)) == "later by 30m"
    assert change(at(3), at(3)) == "same"
    assert (change(None, at(1)), change(at(1), None), change(None, None)) == ("new", "never", "")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'{"thresholds": {"kill_pnl_bps": 50}}', "thresholds.kill_pnl_bps: Input should be"),
        (b'{"thresholds": {"kil_pnl_bps": -50}}', "did you mean 'kill_pnl_bps'?"),
        (b'{"thresholds": {"focus_horizon_hours": 12}}', "must be one of horizons_hours"),
        (b"[1, 2]", "a policy is a JSON object"),
        (b"{thresholds", "not JSON"),
    ],
)
def test_an_invalid_policy_file_says_what_is_wrong(document: bytes, message: str) -> None:
    with pytest.raises(WhatIfError, match=message.replace("?", r"\?").replace("(", r"\(")):
        policy_from_json(document)


def test_the_shipped_policy_file_is_a_valid_what_if_policy() -> None:
    from streams.core.fleet_state import DEFAULT_POLICY_FILE, default_policy

    assert policy_from_json(DEFAULT_POLICY_FILE.read_bytes()) == default_policy()


def test_a_focus_horizon_the_log_did_not_reconcile_is_refused() -> None:
    policy = Policy().model_copy(
        update={
            "thresholds": Policy().thresholds.model_copy(
                update={"horizons_hours": (4, 24), "focus_horizon_hours": 4}
            )
        }
    )
    with pytest.raises(WhatIfError, match="reconciled only"):
        what_if(desk_log(), policy)


def test_a_window_outside_the_log_is_refused() -> None:
    with pytest.raises(WhatIfError, match="no events at or after --from"):
        what_if(desk_log(), Policy(), start=at(100))
    with pytest.raises(WhatIfError, match="must be after --from"):
        what_if(desk_log(), Policy(), start=at(5), end=at(4))
