"""The kill list fold: kills, revives, timed kills and their expiry, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import AgentKilled, AgentRevived, KillFact, StrategyKilled, StrategyRevived
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import (
    KillList,
    apply_kill_fact,
    expired,
    is_killed,
    kill_reason,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def fold(*facts: KillFact, start: KillList | None = None) -> KillList:
    state = start or KillList()
    for fact in facts:
        state = apply_kill_fact(state, fact)
    return state


def kill(
    target: str, at: datetime = T0, until: datetime | None = None, cause: str = "c"
) -> AgentKilled:
    return kill_fact(
        AgentKilled,
        target=target,
        source="operator",
        at=at,
        causes=(cause,),
        reason="bad fills",
        actor="alice",
        until=until,
    )


def revive(target: str, at: datetime = T0, cause: str = "r") -> AgentRevived:
    return kill_fact(AgentRevived, target=target, source="operator", at=at, causes=(cause,))


def kill_class(target: str, until: datetime | None = None) -> StrategyKilled:
    return kill_fact(
        StrategyKilled, target=target, source="auto", at=T0, causes=("s",), until=until
    )


def test_empty_list_kills_nobody() -> None:
    assert not is_killed(KillList(), "a", "momentum", T0)


def test_kill_then_revive() -> None:
    killed = fold(kill("a"))
    assert is_killed(killed, "a", None, T0)
    entry = killed.agents["a"]
    assert (entry.actor, entry.reason, entry.source, entry.since) == (
        "alice",
        "bad fills",
        "operator",
        T0,
    )
    revived = fold(revive("a", T0 + HOUR), start=killed)
    assert not is_killed(revived, "a", None, T0 + HOUR)
    assert [record.type for record in revived.history] == ["agent.killed", "agent.revived"]


def test_a_duplicate_fact_changes_nothing() -> None:
    once = fold(kill("a"))
    assert apply_kill_fact(once, kill("a")) is once


def test_revive_of_a_live_agent_is_only_recorded() -> None:
    state = fold(revive("a"))
    assert state.agents == {} and len(state.history) == 1


def test_a_class_kill_stops_its_agents_only() -> None:
    state = fold(kill_class("momentum"))
    assert is_killed(state, "a", "momentum", T0)
    assert not is_killed(state, "a", "carry", T0)
    assert not is_killed(state, "a", None, T0)
    reason = kill_reason(state, "a", "momentum", T0)
    assert reason is not None and reason.startswith("strategy class momentum killed")


def test_kill_reason_prefers_the_agent_kill_and_says_who() -> None:
    state = fold(kill("a"), kill_class("momentum"))
    assert kill_reason(state, "a", "momentum", T0) == (
        "agent a killed by alice (operator): bad fills"
    )
    assert kill_reason(state, "b", None, T0) is None


def test_a_timed_kill_expires_at_its_until() -> None:
    until = T0 + HOUR
    state = fold(kill("a", until=until))
    assert is_killed(state, "a", None, until - timedelta(microseconds=1))
    assert not is_killed(state, "a", None, until)
    assert expired(state, until - timedelta(seconds=1)) == []


def test_a_timed_kill_says_until_when_it_pauses_the_target() -> None:
    state = fold(kill("a", until=T0 + HOUR))
    assert kill_reason(state, "a", None, T0) == (
        "agent a paused by alice (operator) until 2024-03-01T01:00:00Z: bad fills"
    )


def test_a_budget_pause_holds_until_midnight_and_its_expiry_lifts_it() -> None:
    midnight = T0 + 24 * HOUR
    pause = kill_fact(
        AgentKilled,
        target="a",
        source="budget",
        at=T0 + 15 * HOUR,
        causes=("run",),
        reason="LLM cost 12.40 USD today (2024-03-01 UTC) > daily budget 10.00 USD",
        until=midnight,
    )
    state = fold(pause)

    assert is_killed(state, "a", None, midnight - timedelta(microseconds=1))
    assert not is_killed(state, "a", None, midnight)  # before any revive fact is folded
    [revive_fact] = expired(state, midnight)
    assert (revive_fact.source, revive_fact.ts) == ("expiry", midnight)
    assert fold(revive_fact, start=state).agents == {}


def test_expiry_produces_a_deterministic_revive_at_until() -> None:
    until = T0 + HOUR
    state = fold(kill("a", until=until), kill_class("momentum", until=until))
    facts = expired(state, T0 + 5 * HOUR)
    assert [type(fact) for fact in facts] == [AgentRevived, StrategyRevived]
    assert all(fact.source == "expiry" and fact.ts == until for fact in facts)
    assert facts[0].cause_id == state.agents["a"].event_id
    assert expired(state, T0 + 9 * HOUR) == facts  # same facts whenever the check runs
    after = fold(*facts, start=state)
    assert after.agents == {} and after.strategy_classes == {}


def test_expiry_of_an_old_kill_does_not_lift_a_newer_one() -> None:
    timed = fold(kill("a", until=T0 + HOUR))
    [stale_revive] = expired(timed, T0 + HOUR)
    rekilled = fold(kill("a", at=T0 + HOUR, cause="again"), stale_revive, start=timed)
    assert is_killed(rekilled, "a", None, T0 + 2 * HOUR)


def test_permanent_kill_never_expires() -> None:
    assert expired(fold(kill("a")), T0 + 1000 * HOUR) == []


def test_state_round_trips_through_json() -> None:
    state = fold(kill("a", until=T0 + HOUR), kill_class("momentum"), revive("b"))
    assert KillList.model_validate_json(state.model_dump_json()) == state


# A fact spec: (kill or revive, target, cause); the cause makes distinct facts distinct.
FactSpec = tuple[bool, str, int]
specs = st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b"]), st.integers(0, 3)))


def make(spec: FactSpec, target: str | None = None) -> KillFact:
    is_kill, name, cause = spec
    build = kill if is_kill else revive
    return build(target or name, cause=str(cause))


@given(specs)
def test_folding_every_fact_twice_equals_folding_it_once(sequence: list[FactSpec]) -> None:
    once = [make(spec) for spec in sequence]
    twice = [fact for fact in once for _ in range(2)]
    assert fold(*twice) == fold(*once)


@given(specs, specs)
def test_order_of_independent_targets_does_not_matter(
    left: list[FactSpec], right: list[FactSpec]
) -> None:
    xs = [make(spec, "x") for spec in left]
    ys = [make(spec, "y") for spec in right]
    assert fold(*xs, *ys).agents == fold(*ys, *xs).agents
