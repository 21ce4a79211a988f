"""The report schedule's pure parts: which period is due, who won it, what became of it;
and an operator's verdict on a proposal at the supervisor's command gate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from projections.deliveries import ReportsLedger
from projections.proposals import ProposalBook
from schemas.envelope import derived_event_id
from schemas.events import (
    AgentProposed,
    AgentSpawned,
    EmailDispatched,
    EvalPlan,
    MemoWritten,
    ProposalAcceptRequested,
    ProposalCommand,
    ProposalRejected,
    ProposalRejectRequested,
)
from streams.fleet.commands import CommandGate, apply_command, sign
from streams.schedule.claims import claim_event
from streams.schedule.periods import EARLY_FIRE_SLACK, Period, latest_period

T0 = datetime(2026, 12, 3, 7, 10, tzinfo=UTC)  # a Thursday, the LP email's minute
ALICE = bytes.fromhex("11" * 32)


# --- periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "now", "key", "due"),
    [
        ("lp-email", T0, "2026-12-03", T0),
        ("lp-email", T0 - timedelta(seconds=1), "2026-12-02", T0 - timedelta(days=1)),
        ("forensics", T0, "2026-12-02", datetime(2026, 12, 2, 8, 30, tzinfo=UTC)),
        ("forensics", datetime(2026, 12, 3, 8, 30, tzinfo=UTC), "2026-12-03", None),
        # Sunday 29 November 12:00 ends ISO week 48; the Saturday before is week 47's.
        ("ic-memo", T0, "2026-W48", datetime(2026, 11, 29, 12, tzinfo=UTC)),
        ("ic-memo", datetime(2026, 11, 29, 11, 59, tzinfo=UTC), "2026-W47", None),
        # ISO years: Sunday 3 January 2027 is still in week 53 of 2026.
        ("ic-memo", datetime(2027, 1, 3, 12, tzinfo=UTC), "2026-W53", None),
    ],
)
def test_the_newest_due_period(job: str, now: datetime, key: str, due: datetime | None) -> None:
    period = latest_period(job, now)  # type: ignore[arg-type]
    assert period.key == key
    if due is not None:
        assert period.due_at == due
    assert period.due_at <= now


def test_a_crontab_that_wakes_early_still_runs_its_own_period() -> None:
    early = T0 - timedelta(milliseconds=3)
    assert latest_period("lp-email", early).key == "2026-12-02"
    assert latest_period("lp-email", early + EARLY_FIRE_SLACK).key == "2026-12-03"


def test_a_period_has_one_claim_id_in_every_process() -> None:
    a = latest_period("lp-email", T0)
    b = latest_period("lp-email", T0 + timedelta(hours=5))
    assert a == b and a.claim_id == b.claim_id
    assert a.claim_id != latest_period("forensics", T0 + timedelta(hours=5)).claim_id
    assert a.message_id == "lp-email-2026-12-03"


def test_an_unknown_job_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown report job 'weekly'"):
        latest_period("weekly", T0)  # type: ignore[arg-type]


# --- the ledger: first claim wins ---------------------------------------------------------


def test_the_first_claim_in_the_log_wins_and_copies_change_nothing() -> None:
    period = latest_period("lp-email", T0)
    first, second = claim_event(period, "schedule", T0), claim_event(period, "catch-up", T0)
    assert first.event_id == second.event_id and first.claimant != second.claimant
    ledger = ReportsLedger()
    for event in (first, second, first):
        ledger.apply(event)
    assert ledger.winner("lp-email", "2026-12-03") == first
    assert ledger.status("lp-email", "2026-12-03").startswith("claimed (schedule)")
    assert ledger.status("lp-email", "2026-12-04") == "not run"


def dispatched(period: Period, status: str, detail: str) -> EmailDispatched:
    return EmailDispatched.create(
        event_id=derived_event_id("dispatch", period.key, status),
        ts=T0,
        job=period.job,
        period=period.key,
        message_id=period.message_id,
        subject="s",
        status=status,
        attempts=1,
        detail=detail,
    )


def test_the_status_line_says_what_became_of_a_period() -> None:
    period = latest_period("lp-email", T0)
    ledger = ReportsLedger()
    ledger.apply(claim_event(period, "schedule", T0))
    assert "no email outcome recorded" in ledger.status(period.job, period.key)
    sent = dispatched(period, "sent", "sent to 2 recipients (HTTP 202)")
    ledger.apply(sent)
    ledger.apply(sent)  # redelivered
    assert ledger.dispatches[(period.job, period.key)] == [sent]
    assert ledger.status(period.job, period.key) == (
        "claimed (schedule); email sent: sent to 2 recipients (HTTP 202)"
    )


def memo(period: str, at: datetime, pnl: float) -> MemoWritten:
    return MemoWritten.create(
        ts=at,
        period=period,
        path=f"reports/ic-memo-{period}.md",
        markdown="# memo",
        prompt_sha256="0" * 64,
        model="gpt-4.1-mini",
        tokens_in=1,
        tokens_out=1,
        latency_ms=1,
        facts={"pnl_bps": pnl},
    )


def test_the_next_memo_compares_with_the_newest_written_not_the_largest_period_name() -> None:
    ledger = ReportsLedger()
    ledger.apply(memo("2026-W48", T0, 1.0))
    ledger.apply(memo("manual-20261203T090000Z", T0 + timedelta(hours=2), 2.0))
    newest = ledger.latest_memo()
    assert newest is not None and newest.facts == {"pnl_bps": 2.0}
    assert ReportsLedger().latest_memo() is None


# --- proposals and their verdicts ---------------------------------------------------------


def proposal(proposal_id: str, name: str, parent: str | None = "momentum-7") -> AgentProposed:
    return AgentProposed.create(
        ts=T0,
        proposal_id=proposal_id,
        name=name,
        strategy_class="momentum",
        regime_trigger="RISK_ON",
        thesis="trend persistence after breakouts",
        data_sources=["binance klines"],
        signals=["breakout"],
        eval_plan=EvalPlan(offline=["walk-forward 2y"], live_shadow=["4 weeks shadow"]),
        risk_controls=["stop at 2 ATR"],
        expected_edge="8 bps per trade",
        parent_agent=parent,
    )


def verdict(
    kind: type[ProposalCommand], proposal_id: str, name: str, at: datetime
) -> ProposalCommand:
    command = kind.create(
        ts=at,
        producer="cli",
        actor="alice",
        reason="fits the book",
        nonce=uuid.uuid4().hex,
        proposal_id=proposal_id,
        child=name,
        parent="momentum-7",
        strategy_class="momentum",
    )
    return sign(command, ALICE)


def test_accepting_a_proposal_makes_its_lineage_fact_and_nothing_else() -> None:
    command = verdict(ProposalAcceptRequested, "2026-W48-1", "breakout-2", T0)
    gate, facts = apply_command(CommandGate(), command, {"alice": ALICE}, T0)
    assert not isinstance(facts, str), facts
    [spawned] = facts
    assert isinstance(spawned, AgentSpawned)
    assert (spawned.child, spawned.parent, spawned.proposal_id) == (
        "breakout-2",
        "momentum-7",
        "2026-W48-1",
    )
    assert spawned.actor == "alice" and spawned.ts == T0
    # Accepted again (a second command, fresh nonce): the same fact, by id.
    again = verdict(ProposalAcceptRequested, "2026-W48-1", "breakout-2", T0 + timedelta(seconds=5))
    _, facts_again = apply_command(gate, again, {"alice": ALICE}, T0 + timedelta(seconds=5))
    assert not isinstance(facts_again, str)
    assert facts_again[0].event_id == spawned.event_id


def test_rejecting_a_proposal_is_recorded_with_who_and_why() -> None:
    command = verdict(ProposalRejectRequested, "2026-W48-2", "revert-9", T0)
    _, facts = apply_command(CommandGate(), command, {"alice": ALICE}, T0)
    assert not isinstance(facts, str)
    [rejected] = facts
    assert isinstance(rejected, ProposalRejected)
    assert (rejected.proposal_id, rejected.actor, rejected.reason) == (
        "2026-W48-2",
        "alice",
        "fits the book",
    )
    assert rejected.cause_id == command.event_id


def test_a_verdict_signed_with_the_wrong_key_changes_nothing() -> None:
    forged = sign(
        verdict(ProposalAcceptRequested, "2026-W48-1", "breakout-2", T0).model_copy(
            update={"signature": ""}
        ),
        bytes.fromhex("33" * 32),
    )
    gate = CommandGate()
    after, result = apply_command(gate, forged, {"alice": ALICE}, T0)
    assert result == "bad signature for actor 'alice'" and after == gate


def test_the_book_keeps_the_first_verdict_even_when_it_is_read_first() -> None:
    accepted = AgentSpawned.create(
        ts=T0, child="breakout-2", parent="momentum-7", proposal_id="p-1", actor="alice"
    )
    rejected = ProposalRejected.create(
        ts=T0 + timedelta(minutes=1), proposal_id="p-1", name="breakout-2", actor="bob"
    )
    book = ProposalBook()
    book.apply(accepted)  # read before its proposal (topics merged by receipt)
    book.apply(proposal("p-1", "breakout-2"))
    book.apply(rejected)
    book.apply(proposal("p-2", "revert-9", parent=None))
    state = book.proposals["p-1"]
    assert (state.status, state.decided_by) == ("accepted", "alice")
    assert book.proposals["p-2"].status == "proposed"
    assert [s.proposal.proposal_id for s in book.listed()] == ["p-1", "p-2"]

