"""The confidence multiplier: SPEC thresholds at their edges, the clamp, and the fold laws."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import derived_event_id
from schemas.events import ConfidenceUpdated, Direction, SignalReconciled
from schemas.policy import ConfidenceRule
from streams.agents.confidence import (
    PRODUCER,
    SEEN_IDS_KEPT,
    ConfidenceState,
    apply_reconciled,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RULE = ConfidenceRule()  # start 1.0, last 30 kept, s5 over the last 5
FOCUS = 24
AGENTS = ("alpha", "beta", "gamma")
FAST = settings(max_examples=60, deadline=None)


def reconciled(
    pnl: float,
    *,
    agent: str = "alpha",
    horizon: int = FOCUS,
    event_id: uuid.UUID | None = None,
    ts: datetime = T0,
) -> SignalReconciled:
    return SignalReconciled.create(
        event_id=event_id or uuid.uuid4(),
        ts=ts,
        signal_id=uuid.uuid4(),
        run_id=uuid.UUID(int=1),
        agent=agent,
        symbol="BTCUSDT",
        direction=Direction.LONG,
        horizon_hours=horizon,
        entry_ts=ts - timedelta(hours=horizon),
        entry_price=100.0,
        exit_ts=ts,
        exit_price=100.0,
        realized_pnl_bps=pnl,
        confidence=0.5,
    )


def fold(
    recs: Iterable[SignalReconciled], state: ConfidenceState | None = None
) -> tuple[ConfidenceState, list[ConfidenceUpdated]]:
    state = state or ConfidenceState.start("alpha", RULE)
    updates = []
    for rec in recs:
        state, update = apply_reconciled(state, rec, RULE, FOCUS)
        if update is not None:
            updates.append(update)
    return state, updates


def multipliers(pnls: Iterable[float]) -> list[float]:
    return [update.mult for update in fold(reconciled(pnl) for pnl in pnls)[1]]


# --- Thresholds and clamp, by hand ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pnl", "expected"),
    [
        (-50.5, 0.85),  # s5 < -50: severe
        (-50.0, 0.93),  # -50 <= s5 < 0: mild; -50 itself is mild
        (-0.5, 0.93),
        (0.0, 1.0),  # 0 <= s5 <= 50: unchanged
        (50.0, 1.0),  # 50 itself is unchanged
        (50.5, 1.03),  # s5 > 50: gain
    ],
)
def test_thresholds_at_their_edges(pnl: float, expected: float) -> None:
    # A first reconciliation: s5 is its pnl, and the multiplier starts at 1.0.
    assert multipliers([pnl]) == [pytest.approx(expected)]


def test_s5_sums_the_last_five_of_the_history() -> None:
    # s5 per step: -100, -90, -80, -70, -60 -> five severe steps (0.85^5 = 0.4437053125),
    # then 10 * 5 = 50 once -100 has left the last five -> unchanged.
    mults = multipliers([-100.0, 10.0, 10.0, 10.0, 10.0, 10.0])

    severe = [0.85, 0.7225, 0.614125, 0.52200625, 0.4437053125]
    assert mults == pytest.approx([*severe, 0.4437053125])


def test_two_mild_steps_compound() -> None:
    # s5 = -20 -> 0.93; then s5 = -20 - 30 = -50 -> mild again: 0.93 * 0.93 = 0.8649
    assert multipliers([-20.0, -30.0]) == pytest.approx([0.93, 0.8649])


def test_clamped_at_the_ceiling() -> None:
    # 1.03^6 = 1.19405; 1.03^7 = 1.22987 -> clamped to 1.20, and it stays there.
    mults = multipliers([60.0] * 8)

    assert mults[5] == pytest.approx(1.03**6)
    assert mults[6:] == [1.2, 1.2]


def test_clamped_at_the_floor_and_free_to_recover() -> None:
    # 0.85^9 = 0.23162; 0.85^10 = 0.19687 -> clamped to 0.20
    mults = multipliers([-60.0] * 11 + [400.0])

    assert mults[8] == pytest.approx(0.85**9)
    assert mults[9:11] == [0.2, 0.2]
    # s5 = -240 + 400 = 160 > 50: 0.20 * 1.03 = 0.206
    assert mults[11] == pytest.approx(0.206)


def test_starts_where_the_rule_says() -> None:
    rule = ConfidenceRule(start=0.5)
    state = ConfidenceState.start("alpha", rule)

    assert state.mult == 0.5
    assert apply_reconciled(state, reconciled(0.0), rule, FOCUS)[0].mult == 0.5


def test_keeps_the_last_thirty_pnls() -> None:
    state, _ = fold(reconciled(float(i)) for i in range(40))

    assert state.recent_pnls_bps == tuple(float(i) for i in range(10, 40))


def test_emits_a_derived_confidence_update() -> None:
    rec = reconciled(-60.0, ts=T0 + timedelta(hours=5))
    _, update = apply_reconciled(ConfidenceState.start("alpha", RULE), rec, RULE, FOCUS)

    assert update == ConfidenceUpdated.create(
        event_id=derived_event_id("confidence", rec.event_id),
        ts=T0 + timedelta(hours=5),
        producer=PRODUCER,
        agent="alpha",
        mult=0.85,
        recent_sum_bps=-60.0,
        horizon_hours=FOCUS,
    )


def test_duplicates_and_other_horizons_change_nothing() -> None:
    rec = reconciled(-60.0)
    state, _ = fold([rec])

    assert apply_reconciled(state, rec, RULE, FOCUS) == (state, None)
    assert apply_reconciled(state, reconciled(-60.0, horizon=4), RULE, FOCUS) == (state, None)


def test_remembers_a_bounded_number_of_ids() -> None:
    # A second line of defence behind the stats window's dedup: the last 64 ids.
    recs = [reconciled(0.0) for _ in range(SEEN_IDS_KEPT + 5)]
    state, _ = fold(recs)

    assert SEEN_IDS_KEPT == 64
    assert state.seen_ids == tuple(r.event_id for r in recs[-SEEN_IDS_KEPT:])
    assert apply_reconciled(state, recs[5], RULE, FOCUS) == (state, None)  # oldest kept
    assert apply_reconciled(state, recs[4], RULE, FOCUS)[1] is not None  # forgotten


def test_refuses_another_agents_reconciliation() -> None:
    with pytest.raises(ValueError, match="beta"):
        apply_reconciled(
            ConfidenceState.start("alpha", RULE), reconciled(1.0, agent="beta"), RULE, FOCUS
        )


# --- Fold laws ----------------------------------------------------------------------------------


@st.composite
def reconciliations(draw: st.DrawFn) -> list[SignalReconciled]:
    """Up to 40 reconciliations of a few agents, with deterministic ids.

    With up to 10 copies on top, fewer than SEEN_IDS_KEPT (64) apply per agent.
    """
    return [
        reconciled(
            float(draw(st.integers(-80, 80))),
            agent=draw(st.sampled_from(AGENTS)),
            horizon=draw(st.sampled_from([FOCUS, FOCUS, FOCUS, 4])),
            event_id=uuid.UUID(int=i + 1),
        )
        for i in range(draw(st.integers(0, 40)))
    ]


def fold_by_agent(
    recs: Iterable[SignalReconciled],
) -> tuple[dict[str, ConfidenceState], list[ConfidenceUpdated]]:
    states: dict[str, ConfidenceState] = {}
    updates = []
    for rec in recs:
        state = states.get(rec.agent) or ConfidenceState.start(rec.agent, RULE)
        states[rec.agent], update = apply_reconciled(state, rec, RULE, FOCUS)
        if update is not None:
            updates.append(update)
    return states, updates


def from_scratch(pnls: list[float]) -> float:
    """The SPEC rule written out plainly."""
    mult = 1.0
    for i in range(len(pnls)):
        s5 = sum(pnls[max(0, i - 4) : i + 1])
        if s5 < -50:
            mult *= 0.85
        elif s5 < 0:
            mult *= 0.93
        elif s5 > 50:
            mult *= 1.03
        mult = min(max(mult, 0.2), 1.2)
    return mult


@FAST
@given(reconciliations())
def test_multiplier_follows_the_rule_and_stays_in_bounds(recs: list[SignalReconciled]) -> None:
    states, _ = fold_by_agent(recs)

    for agent, state in states.items():
        pnls = [r.realized_pnl_bps for r in recs if r.agent == agent and r.horizon_hours == FOCUS]
        assert state.mult == pytest.approx(from_scratch(pnls))
        assert 0.2 <= state.mult <= 1.2


@FAST
@given(reconciliations(), st.data())
def test_redelivered_reconciliations_change_nothing(
    recs: list[SignalReconciled], data: st.DataObject
) -> None:
    # Each copy arrives somewhere after its original.
    with_copies = list(recs)
    for original in data.draw(st.lists(st.sampled_from(recs), max_size=10)) if recs else []:
        after = with_copies.index(original) + 1
        with_copies.insert(data.draw(st.integers(after, len(with_copies))), original)

    assert fold_by_agent(with_copies) == fold_by_agent(recs)


@FAST
@given(reconciliations(), st.data())
def test_agents_do_not_care_how_their_reconciliations_interleave(
    recs: list[SignalReconciled], data: st.DataObject
) -> None:
    queues = {agent: [r for r in recs if r.agent == agent] for agent in AGENTS}
    turns = data.draw(st.permutations([r.agent for r in recs]))
    interleaved = [queues[agent].pop(0) for agent in turns]

    assert fold_by_agent(interleaved)[0] == fold_by_agent(recs)[0]


@FAST
@given(reconciliations())
def test_state_survives_a_json_round_trip(recs: list[SignalReconciled]) -> None:
    for state in fold_by_agent(recs)[0].values():
        wire = orjson.loads(orjson.dumps(state.model_dump(mode="json")))
        assert ConfidenceState.model_validate(wire) == state
