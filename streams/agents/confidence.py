"""The confidence multiplier as a pure fold over an agent's reconciliations (SPEC section 6).

On each new focus-horizon reconciliation, in log order: keep the last `history`
(30) pnls, s5 = sum of the last `recent` (5), then
  s5 < -50        -> mult * 0.85
  -50 <= s5 < 0   -> mult * 0.93
  0 <= s5 <= 50   -> unchanged
  s5 > 50         -> mult * 1.03
clamped to [0.20, 1.20], starting at 1.0. The numbers come from `ConfidenceRule`.

Unlike the stats, the multiplier depends on the order of reconciliations, so
there is no time rule for duplicates. The caller deduplicates through the stats
window first, so this state is a second line of defence: it remembers the ids of
the last `SEEN_IDS_KEPT` (64) reconciliations it applied. That is enough for
at-least-once delivery, which re-delivers what came after the last committed
offset: seconds of traffic, not dozens of reconciliations of one agent. And it
keeps the state, which every update writes to the table's changelog, small.
"""

from __future__ import annotations

import math
import uuid

from schemas.envelope import WireModel, derived_event_id
from schemas.events import ConfidenceUpdated, SignalReconciled
from schemas.policy import ConfidenceRule

PRODUCER = "metasup.agents"
SEEN_IDS_KEPT = 64


class ConfidenceState(WireModel):
    """One agent's multiplier and what it needs to move it. Frozen; stored in a Faust table."""

    agent: str
    mult: float
    recent_pnls_bps: tuple[float, ...] = ()  # the last `rule.history`, oldest first
    seen_ids: tuple[uuid.UUID, ...] = ()  # the last SEEN_IDS_KEPT applied, oldest first

    @classmethod
    def start(cls, agent: str, rule: ConfidenceRule) -> ConfidenceState:
        return cls(agent=agent, mult=rule.start)


def next_multiplier(mult: float, recent_sum_bps: float, rule: ConfidenceRule) -> float:
    """Apply the threshold rule to `mult` for a recent sum s5, then clamp."""
    if recent_sum_bps < rule.severe_loss_bps:
        mult *= rule.severe_factor
    elif recent_sum_bps < 0:
        mult *= rule.mild_factor
    elif recent_sum_bps > rule.gain_bps:
        mult *= rule.gain_factor
    return min(max(mult, rule.floor), rule.ceiling)


def apply_reconciled(
    state: ConfidenceState, rec: SignalReconciled, rule: ConfidenceRule, focus_horizon_hours: int
) -> tuple[ConfidenceState, ConfidenceUpdated | None]:
    """Fold one reconciliation. A new focus-horizon one yields the `confidence.updated` to emit.

    Other horizons and duplicates return the state unchanged and no event. The
    event id derives from the reconciliation's, so a replay emits the same event.
    """
    if rec.agent != state.agent:
        raise ValueError(f"reconciliation of {rec.agent!r} given to the state of {state.agent!r}")
    if rec.horizon_hours != focus_horizon_hours or rec.event_id in state.seen_ids:
        return state, None
    pnls = (*state.recent_pnls_bps, rec.realized_pnl_bps)[-rule.history :]
    # fsum is exactly rounded, so which side of a threshold s5 falls on cannot
    # depend on summation order.
    recent_sum = math.fsum(pnls[-rule.recent :])
    mult = next_multiplier(state.mult, recent_sum, rule)
    new_state = state.model_copy(
        update={
            "mult": mult,
            "recent_pnls_bps": pnls,
            "seen_ids": (*state.seen_ids, rec.event_id)[-SEEN_IDS_KEPT:],
        }
    )
    update = ConfidenceUpdated.create(
        event_id=derived_event_id("confidence", rec.event_id),
        ts=rec.ts,
        producer=PRODUCER,
        agent=state.agent,
        mult=mult,
        recent_sum_bps=recent_sum,
        horizon_hours=rec.horizon_hours,
    )
    return new_state, update
