"""Drawdown breach: every PROMOTE agent is killed with source `breach`."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import AgentKilled, Decision
from schemas.policy import Policy
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, apply_kill_fact
from streams.fleet.breach import breach_kills

AT = datetime(2024, 3, 1, tzinfo=UTC)
POLICY = Policy()
DECISIONS = {
    "b": Decision.PROMOTE,
    "a": Decision.PROMOTE,
    "held": Decision.HOLD,
    "gone": Decision.KILLED,
}


def test_below_the_limit_nothing_happens() -> None:
    assert breach_kills(249.9, DECISIONS, KillList(), POLICY, AT, "c") == []


def test_at_the_limit_every_promoted_agent_is_killed() -> None:
    kills = breach_kills(250.0, DECISIONS, KillList(), POLICY, AT, "c")
    assert [kill.target for kill in kills] == ["a", "b"]
    assert all(kill.source == "breach" and kill.ts == AT for kill in kills)
    assert kills[0].reason == "portfolio max drawdown 250.0 bps >= 250.0 bps"


def test_a_signed_drawdown_is_read_by_its_size() -> None:
    assert len(breach_kills(-300.0, DECISIONS, KillList(), POLICY, AT, "c")) == 2


def test_already_killed_agents_are_skipped() -> None:
    killed = apply_kill_fact(
        KillList(), kill_fact(AgentKilled, target="a", source="auto", at=AT, causes=("x",))
    )
    assert [kill.target for kill in breach_kills(400.0, DECISIONS, killed, POLICY, AT, "c")] == [
        "b"
    ]


def test_same_breach_twice_gives_the_same_ids() -> None:
    first = breach_kills(300.0, DECISIONS, KillList(), POLICY, AT, "c")
    assert breach_kills(300.0, DECISIONS, KillList(), POLICY, AT, "c") == first
    other = breach_kills(300.0, DECISIONS, KillList(), POLICY, AT, "d")
    assert {k.event_id for k in first}.isdisjoint(k.event_id for k in other)
