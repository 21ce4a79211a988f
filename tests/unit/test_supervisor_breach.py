"""Drawdown breach: every PROMOTE agent is killed with source `breach`, with the evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import AgentKilled, Decision
from schemas.policy import Policy
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, apply_kill_fact
from streams.fleet.breach import BreachEvidence, breach_kills, breach_targets

AT = datetime(2024, 3, 1, tzinfo=UTC)
POLICY = Policy()
DECISIONS = {
    "b": Decision.PROMOTE,
    "a": Decision.PROMOTE,
    "held": Decision.HOLD,
    "gone": Decision.KILLED,
}
EVIDENCE = BreachEvidence(
    drawdown_bps=260.0,
    limit_bps=250.0,
    peak_at=datetime(2024, 2, 27, tzinfo=UTC),
    trough_at=AT,
    peak_to_trough_bps=260.0,
    attribution_bps={"a": -40.0, "b": -150.0, "c": 10.0, "d": -50.0, "e": -30.0},
    fleet_max_drawdown_bps=900.0,
)


def test_below_the_limit_nobody_is_a_target() -> None:
    assert breach_targets(249.9, DECISIONS, KillList(), POLICY, AT) == []


def test_at_the_limit_every_promoted_agent_is_a_target() -> None:
    assert breach_targets(250.0, DECISIONS, KillList(), POLICY, AT) == ["a", "b"]


def test_already_killed_agents_are_skipped() -> None:
    killed = apply_kill_fact(
        KillList(), kill_fact(AgentKilled, target="a", source="auto", at=AT, causes=("x",))
    )
    assert breach_targets(400.0, DECISIONS, killed, POLICY, AT) == ["b"]


def test_kills_name_the_main_sources_and_carry_the_evidence() -> None:
    kills = breach_kills(["a", "b"], EVIDENCE, AT, "c")

    assert [kill.target for kill in kills] == ["a", "b"]
    assert all(kill.source == "breach" and kill.ts == AT for kill in kills)
    assert kills[0].reason == (
        "deployed portfolio drawdown 260.0 bps >= 250.0 bps; peak to trough 260.0 bps, "
        "most from b -150.0 bps, d -50.0 bps, a -40.0 bps"
    )
    assert kills[0].evidence["attribution_bps"] == EVIDENCE.attribution_bps
    assert kills[0].evidence["fleet_max_drawdown_bps"] == 900.0


def test_same_breach_twice_gives_the_same_ids() -> None:
    first = breach_kills(["a", "b"], EVIDENCE, AT, "c")
    assert breach_kills(["a", "b"], EVIDENCE, AT, "c") == first
    other = breach_kills(["a", "b"], EVIDENCE, AT, "d")
    assert {k.event_id for k in first}.isdisjoint(k.event_id for k in other)
