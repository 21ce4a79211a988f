"""The SDK run context: current run, timing, errors, LLM usage and cost, signals, ids; the
kill-switch guard's refusal of a paused agent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from schemas.codec import encode_event
from schemas.events import AgentKilled, Direction, PolicyUpdated, RunCompleted
from schemas.policy import Thresholds
from streams.agents.assess import AgentState, apply_agent_event
from streams.core.fleet_state import FleetState, apply_fleet_event, default_policy
from streams.runtime.fleet_view import FleetView, fold
from streams.sdk.client import AsyncClient
from streams.sdk.pricing import cost_usd, usage_of
from streams.sdk.run_context import AgentKilledError, NoActiveRunError, Run, current_run
from tests.keys import SUPERVISOR_KEY, signed

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def ticks(*values: float) -> Iterator[float]:
    return iter(values)


def new_run(
    agent: str = "alpha",
    run_id: uuid.UUID = RUN_ID,
    monotonic: tuple[float, ...] = (10.0, 10.25),
    strategy_class: str | None = "momentum",
) -> Run:
    clock = ticks(*monotonic)
    return Run(
        agent=agent,
        producer="test",
        strategy_class=strategy_class,
        clock=lambda: AT,
        monotonic=lambda: next(clock),
        run_id=run_id,
    )


@dataclass
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass
class Completion:
    """Shaped like openai's ChatCompletion: `.usage.prompt_tokens`, `.model`."""

    model: str
    usage: Usage | None


# --- the current run ------------------------------------------------------------------


def test_no_run_is_active_outside_a_run() -> None:
    with pytest.raises(NoActiveRunError):
        current_run()


def test_begin_sets_the_current_run_and_end_clears_it() -> None:
    run = new_run()
    run.begin()
    assert current_run() is run
    run.end(failed=False)
    with pytest.raises(NoActiveRunError):
        current_run()


def test_a_failed_run_clears_the_current_run_too() -> None:
    run = new_run()
    run.begin()
    completed = run.end(failed=True)
    assert completed.errors == 1
    with pytest.raises(NoActiveRunError):
        current_run()


def test_nested_runs_restore_the_outer_run() -> None:
    outer, inner = new_run("outer"), new_run("inner", run_id=uuid.uuid4())
    outer.begin()
    inner.begin()
    assert current_run() is inner
    inner.end(failed=False)
    assert current_run() is outer
    outer.end(failed=False)
    with pytest.raises(NoActiveRunError):
        current_run()


async def test_concurrent_runs_in_two_tasks_each_see_their_own_run() -> None:
    both_started = asyncio.Barrier(2)
    seen: dict[str, uuid.UUID] = {}

    async def agent(name: str) -> uuid.UUID:
        run = new_run(name, run_id=uuid.uuid4())
        run.begin()
        await both_started.wait()  # both runs are active at the same time here
        seen[name] = current_run().run_id
        await asyncio.sleep(0)
        assert current_run() is run
        run.end(failed=False)
        return run.run_id

    first, second = await asyncio.wait_for(asyncio.gather(agent("alpha"), agent("beta")), timeout=5)
    assert first != second
    assert seen == {"alpha": first, "beta": second}
    with pytest.raises(NoActiveRunError):
        current_run()


# --- run.completed ----------------------------------------------------------------------


def test_a_completed_run_reports_its_timing_and_identity() -> None:
    run = new_run(monotonic=(10.0, 10.25))
    run.begin()
    completed = run.end(failed=False)
    assert completed.type == "run.completed"
    assert completed.agent == "alpha"
    assert completed.producer == "test"
    assert completed.run_id == RUN_ID
    assert completed.strategy_class == "momentum"
    assert completed.started_at == AT
    assert completed.ts == AT
    assert completed.latency_ms == pytest.approx(250.0)
    assert completed.errors == 0
    assert completed.skipped_reason is None


def test_end_failed_counts_one_error() -> None:
    run = new_run()
    run.begin()
    assert run.end(failed=True).errors == 1


def test_handled_errors_add_to_the_escaping_one() -> None:
    run = new_run()
    run.begin()
    run.count_error()
    run.count_error()
    assert run.end(failed=True).errors == 3


def test_a_skipped_run_has_no_latency_and_says_why() -> None:
    run = new_run(monotonic=(10.0, 99.0))
    run.begin()
    completed = run.end(failed=False, skipped_reason="agent alpha killed by ops (operator)")
    assert completed.latency_ms == 0.0
    assert completed.skipped_reason == "agent alpha killed by ops (operator)"
    assert completed.errors == 0
    assert completed.tokens_in == completed.tokens_out == 0
    assert completed.cost_usd == 0.0


def test_run_completed_id_derives_from_the_run_id() -> None:
    def completed_id(run_id: uuid.UUID) -> uuid.UUID:
        run = new_run(run_id=run_id)
        run.begin()
        return run.end(failed=False).event_id

    other = uuid.UUID("00000000-0000-4000-8000-000000000002")
    assert completed_id(RUN_ID) == completed_id(RUN_ID)
    assert completed_id(RUN_ID) != completed_id(other)
    assert completed_id(RUN_ID) != RUN_ID


def test_the_run_completed_id_does_not_depend_on_the_outcome() -> None:
    run = new_run()
    run.begin()
    first = run.end(failed=False)
    again = new_run()
    again.begin()
    second = again.end(failed=True)
    assert first.event_id == second.event_id


# --- LLM usage and cost ---------------------------------------------------------------


def test_llm_usage_of_an_openai_like_response() -> None:
    run = new_run()
    run.begin()
    call_cost = run.add_llm_usage(Completion("gpt-4.1-mini", Usage(1000, 200)))
    completed = run.end(failed=False)
    # 1000 * 0.40 / 1e6 + 200 * 1.60 / 1e6
    assert call_cost == pytest.approx(0.00072)
    assert completed.tokens_in == 1000
    assert completed.tokens_out == 200
    assert completed.cost_usd == pytest.approx(0.00072)


def test_llm_usage_of_a_dict_response() -> None:
    run = new_run()
    response = {"model": "gpt-4o", "usage": {"prompt_tokens": 2000, "completion_tokens": 500}}
    # 2000 * 2.50 / 1e6 + 500 * 10.00 / 1e6
    assert run.add_llm_usage(response) == pytest.approx(0.01)
    assert (run.tokens_in, run.tokens_out) == (2000, 500)


def test_llm_usage_accumulates_over_calls() -> None:
    run = new_run()
    run.begin()
    run.add_llm_usage(Completion("gpt-4.1-mini", Usage(1000, 200)))
    run.add_llm_usage({"model": "gpt-4.1-nano", "usage": {"prompt_tokens": 10_000}})
    completed = run.end(failed=False)
    # 0.00072 + 10_000 * 0.10 / 1e6
    assert completed.cost_usd == pytest.approx(0.00172)
    assert completed.tokens_in == 11_000
    assert completed.tokens_out == 200


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4.1-mini-2025-04-14", 0.00072),  # 1000 * 0.40 / 1e6 + 200 * 1.60 / 1e6
        ("gpt-4.1-2025-04-14", 0.0036),  # 1000 * 2.00 / 1e6 + 200 * 8.00 / 1e6
        ("gpt-4.1-nano-2025-04-14", 0.00018),  # 1000 * 0.10 / 1e6 + 200 * 0.40 / 1e6
        ("gpt-4o-mini-2024-07-18", 0.00027),  # 1000 * 0.15 / 1e6 + 200 * 0.60 / 1e6
        ("gpt-4o-2024-08-06", 0.0045),  # 1000 * 2.50 / 1e6 + 200 * 10.00 / 1e6
        ("o4-mini-2025-04-16", 0.00198),  # 1000 * 1.10 / 1e6 + 200 * 4.40 / 1e6
    ],
)
def test_dated_models_cost_what_their_family_costs(model: str, expected: float) -> None:
    run = new_run()
    assert run.add_llm_usage(Completion(model, Usage(1000, 200))) == pytest.approx(expected)
    assert run.cost_usd == pytest.approx(expected)


def test_an_unknown_model_costs_nothing_but_its_tokens_count() -> None:
    run = new_run()
    assert run.add_llm_usage(Completion("claude-3-opus", Usage(1000, 200))) == 0.0
    assert (run.tokens_in, run.tokens_out, run.cost_usd) == (1000, 200, 0.0)


def test_a_response_without_a_model_costs_nothing() -> None:
    run = new_run()
    assert run.add_llm_usage({"usage": {"prompt_tokens": 1000, "completion_tokens": 200}}) == 0
    assert (run.tokens_in, run.tokens_out) == (1000, 200)


def test_the_model_argument_overrides_the_response_model() -> None:
    run = new_run()
    cost = run.add_llm_usage(Completion("unknown-model", Usage(1000, 200)), model="gpt-4.1")
    assert cost == pytest.approx(0.0036)  # 1000 * 2.00 / 1e6 + 200 * 8.00 / 1e6


def test_a_response_without_usage_adds_nothing() -> None:
    run = new_run()
    assert run.add_llm_usage(Completion("gpt-4.1", None)) == 0.0
    assert run.add_llm_usage({"model": "gpt-4.1"}) == 0.0
    assert run.add_llm_usage(Completion("gpt-4.1", Usage(None, None))) == 0.0
    assert (run.tokens_in, run.tokens_out, run.cost_usd) == (0, 0, 0.0)


def test_usage_of_reads_objects_and_dicts_alike() -> None:
    as_object = Completion("gpt-4o", Usage(7, 3))
    as_dict = {"model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    assert usage_of(as_object) == usage_of(as_dict) == (7, 3, "gpt-4o")


def test_a_client_price_table_overrides_the_defaults() -> None:
    prices = {"my-model": (1.00, 2.00)}
    assert cost_usd("my-model-v2", 1000, 200, prices) == pytest.approx(0.0014)
    assert cost_usd("gpt-4.1", 1000, 200, prices) == 0.0
    assert cost_usd(None, 1000, 200) == 0.0


# --- signals ----------------------------------------------------------------------------


def test_a_signal_carries_the_run_id_agent_and_strategy_class() -> None:
    run = new_run()
    signal = run.signal("BTC", "LONG", 0.7, prob_up=0.6, regime="MIXED")
    assert signal.type == "signal.emitted"
    assert signal.run_id == RUN_ID
    assert signal.agent == "alpha"
    assert signal.strategy_class == "momentum"
    assert signal.direction is Direction.LONG
    assert (signal.symbol, signal.confidence, signal.prob_up) == ("BTC", 0.7, 0.6)
    assert signal.ts == AT
    assert run.signals_emitted == 1


def test_signal_ids_derive_from_the_run_id_and_their_rank() -> None:
    def signal_ids(run_id: uuid.UUID) -> list[uuid.UUID]:
        run = new_run(run_id=run_id)
        return [
            run.signal("BTC", "LONG", 0.7).event_id,
            run.signal("ETH", Direction.SHORT, 0.4).event_id,
        ]

    first = signal_ids(RUN_ID)
    assert signal_ids(RUN_ID) == first
    assert len(set(first)) == 2
    assert RUN_ID not in first
    assert set(signal_ids(uuid.uuid4())).isdisjoint(first)


def test_signal_and_run_ids_never_collide() -> None:
    run = new_run()
    run.begin()
    signal = run.signal("BTC", "LONG", 0.7)
    assert run.end(failed=False).event_id != signal.event_id


# --- the guard and the daily LLM budget -------------------------------------------------


def budget_pause(at: datetime, cost: float) -> AgentKilled:
    """The pause the agent processor emits for a run costing `cost` under a 10 USD budget."""
    budget = PolicyUpdated.create(
        ts=at - timedelta(days=1), producer="test", thresholds=Thresholds(daily_budget_usd=10.0)
    )
    costly = RunCompleted.create(
        ts=at,
        producer="test",
        agent="alpha",
        run_id=RUN_ID,
        started_at=at,
        latency_ms=900.0,
        cost_usd=cost,
    )
    fleet = apply_fleet_event(FleetState(), budget)
    _, emitted = apply_agent_event(
        AgentState.start("alpha", default_policy()), costly, fleet, "shadow"
    )
    [pause] = [event for event in emitted if isinstance(event, AgentKilled)]
    return pause


async def test_the_guard_refuses_a_paused_agents_runs_until_midnight_and_says_why() -> None:
    midnight = datetime(2024, 3, 2, tzinfo=UTC)
    # The guard believes the pause as it reads it from `kills`: signed by the supervisor.
    view = FleetView("127.0.0.1:9", "", SUPERVISOR_KEY.verifier)
    view.state = fold(
        view.state, encode_event(signed(budget_pause(AT, 12.4))), SUPERVISOR_KEY.verifier
    )
    now = [midnight - timedelta(seconds=1)]
    client = AsyncClient("127.0.0.1:9", guard=view, clock=lambda: now[0])
    ended: list[RunCompleted] = []

    with (
        pytest.raises(AgentKilledError) as refused,
        client.lifecycle("alpha", "momentum", None, ended),
    ):
        pytest.fail("a paused agent's run must not start")
    now[0] = midnight  # no revive fact yet: the pause ends at its `until` all the same
    with client.lifecycle("alpha", "momentum", None, ended):
        pass

    why = (
        "agent alpha paused by supervisor (budget) until 2024-03-02T00:00:00Z: "
        "LLM cost 12.40 USD today (2024-03-01 UTC) > daily budget 10.00 USD"
    )
    assert str(refused.value) == f"alpha did not run: {why}"
    assert [run.skipped_reason for run in ended] == [why, None]
