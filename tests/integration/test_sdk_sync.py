"""The synchronous SDK client on a real broker: failing runs, the decorator, the kill switch.

SyncClient calls block, as a sync agent's would: the tests make them from worker threads
(`asyncio.to_thread`) so the test's own event loop keeps running.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.events import (
    AgentKilled,
    AgentRevived,
    RunCompleted,
    SignalEmitted,
    StrategyKilled,
)
from streams.broker.embedded import EmbeddedBroker
from streams.sdk.client import SyncClient, supervised
from streams.sdk.run_context import AgentKilledError, NoActiveRunError
from tests.builders import doc_examples, fake_openai
from tests.conftest import eventually
from tests.integration.stack import create_topics, produce, read_events
from tests.keys import SUPERVISOR_KEY, signed

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)


async def connect(broker: EmbeddedBroker, prefix: str, **options: Any) -> SyncClient:
    """A client on the test broker; a kill-switch guard verifies with the session's key."""
    if options.get("follow_kills"):
        options.setdefault("supervisor_key", SUPERVISOR_KEY.verifier)
    return await asyncio.to_thread(SyncClient, broker.bootstrap, topic_prefix=prefix, **options)


async def close(client: SyncClient) -> None:
    await asyncio.to_thread(client.close)


async def completed_runs(broker: EmbeddedBroker, prefix: str) -> list[RunCompleted]:
    found = await read_events(broker, prefix, "runs")
    assert all(isinstance(event, RunCompleted) for event in found)
    return [event for event in found if isinstance(event, RunCompleted)]


def run_body(
    client: SyncClient,
    agent: str,
    strategy_class: str | None = None,
    run_id: uuid.UUID | None = None,
) -> Callable[[], list[str]]:
    """A sync agent run whose body records that it executed; call it in a thread."""

    def body() -> list[str]:
        executed: list[str] = []
        with client.run(agent, strategy_class, run_id=run_id):
            executed.append(agent)
        return executed

    return body


def may_run(client: SyncClient, agent: str, strategy_class: str | None = None) -> bool:
    assert client.guard is not None
    return client.guard.killed_reason(agent, strategy_class, datetime.now(UTC)) is None


async def test_a_failing_run_reraises_and_still_reports_one_error(
    broker: EmbeddedBroker, prefix: str
) -> None:
    await create_topics(broker, prefix)
    run_id = uuid.uuid4()

    def failing_agent(client: SyncClient) -> None:
        with client.run("alpha", "momentum", run_id=run_id) as run:
            run.add_llm_usage({"model": "gpt-4.1-mini", "usage": {"prompt_tokens": 1000}})
            raise ValueError("the model said no")

    client = await connect(broker, prefix, clock=lambda: AT)
    try:
        with pytest.raises(ValueError, match="the model said no"):
            await asyncio.to_thread(failing_agent, client)
    finally:
        await close(client)
    runs = await completed_runs(broker, prefix)
    assert [(r.run_id, r.agent, r.errors, r.skipped_reason) for r in runs] == [
        (run_id, "alpha", 1, None)
    ]
    assert runs[0].tokens_in == 1000
    assert runs[0].cost_usd == pytest.approx(0.0004)  # 1000 * 0.40 / 1e6


async def test_emit_signal_outside_a_run_is_refused(broker: EmbeddedBroker, prefix: str) -> None:
    await create_topics(broker, prefix)
    client = await connect(broker, prefix)
    try:
        with pytest.raises(NoActiveRunError):
            await asyncio.to_thread(client.emit_signal, "BTC", "LONG", 0.7)
        # A run in another thread does not make this thread's signal legal either.
        assert await asyncio.to_thread(run_body(client, "alpha")) == ["alpha"]
        with pytest.raises(NoActiveRunError):
            await asyncio.to_thread(client.emit_signal, "BTC", "LONG", 0.7)
    finally:
        await close(client)
    assert await read_events(broker, prefix, "signals") == []


async def test_the_supervised_decorator_runs_the_function_as_one_run(
    broker: EmbeddedBroker, prefix: str
) -> None:
    await create_topics(broker, prefix)
    client = await connect(broker, prefix, clock=lambda: AT)
    try:

        @supervised(client, "beta", strategy_class="meanrev")
        def trade(size: int) -> int:
            client.emit_signal("ETH", "SHORT", 0.6)
            return size * 2

        assert await asyncio.to_thread(trade, 21) == 42
    finally:
        await close(client)
    runs = await completed_runs(broker, prefix)
    signals = await read_events(broker, prefix, "signals")
    assert len(runs) == 1
    assert (runs[0].agent, runs[0].strategy_class, runs[0].errors) == ("beta", "meanrev", 0)
    assert runs[0].skipped_reason is None
    assert len(signals) == 1 and isinstance(signals[0], SignalEmitted)
    assert signals[0].run_id == runs[0].run_id
    assert (signals[0].agent, signals[0].symbol) == ("beta", "ETH")


async def test_a_killed_agent_is_refused_and_its_skipped_run_recorded(
    broker: EmbeddedBroker, prefix: str
) -> None:
    await create_topics(broker, prefix)
    kill = signed(
        AgentKilled.create(
            ts=AT, producer="t", target="alpha", source="operator", reason="bad fills"
        )
    )
    await produce(broker, prefix, [kill])
    client = await connect(broker, prefix, follow_kills=True)
    calls: list[int] = []
    try:
        # The kill was on the log before the client started: the guard knows it at once.
        assert not may_run(client, "alpha")
        with pytest.raises(AgentKilledError, match="alpha"):
            await asyncio.to_thread(run_body(client, "alpha"))

        @supervised(client, "alpha")
        def trade() -> int:
            calls.append(1)
            return 1

        assert await asyncio.to_thread(trade) is None
        assert await asyncio.to_thread(run_body(client, "other")) == ["other"]
    finally:
        await close(client)
    assert calls == []
    runs = await completed_runs(broker, prefix)
    skipped = [r for r in runs if r.agent == "alpha"]
    assert len(skipped) == 2
    for run in skipped:
        assert run.skipped_reason is not None
        assert "alpha" in run.skipped_reason and "bad fills" in run.skipped_reason
        assert run.latency_ms == 0.0 and run.errors == 0
    assert [(r.skipped_reason, r.errors) for r in runs if r.agent == "other"] == [(None, 0)]


async def test_an_agent_of_a_killed_strategy_class_is_refused(
    broker: EmbeddedBroker, prefix: str
) -> None:
    await create_topics(broker, prefix)
    kill = signed(
        StrategyKilled.create(ts=AT, producer="t", target="momentum", source="operator")
    )
    await produce(broker, prefix, [kill])
    client = await connect(broker, prefix, follow_kills=True)
    try:
        with pytest.raises(AgentKilledError, match="beta"):
            await asyncio.to_thread(run_body(client, "beta", "momentum"))
        assert await asyncio.to_thread(run_body(client, "gamma", "meanrev")) == ["gamma"]
        # No strategy class given: only agent kills can stop it.
        assert await asyncio.to_thread(run_body(client, "beta")) == ["beta"]
    finally:
        await close(client)
    runs = await completed_runs(broker, prefix)
    refused = [r for r in runs if r.skipped_reason is not None]
    assert [(r.agent, r.strategy_class) for r in refused] == [("beta", "momentum")]
    assert "strategy class momentum" in (refused[0].skipped_reason or "")
    assert sorted(r.agent for r in runs if r.skipped_reason is None) == ["beta", "gamma"]


async def test_live_kills_and_revives_are_followed(broker: EmbeddedBroker, prefix: str) -> None:
    await create_topics(broker, prefix)
    client = await connect(broker, prefix, follow_kills=True)
    try:
        assert await asyncio.to_thread(run_body(client, "alpha")) == ["alpha"]

        kill = signed(AgentKilled.create(ts=AT, producer="t", target="alpha", source="operator"))
        await produce(broker, prefix, [kill])
        await eventually(lambda: not may_run(client, "alpha"))
        with pytest.raises(AgentKilledError):
            await asyncio.to_thread(run_body(client, "alpha"))

        revive = signed(
            AgentRevived.create(ts=AT, producer="t", target="alpha", source="operator")
        )
        await produce(broker, prefix, [revive])
        await eventually(lambda: may_run(client, "alpha"))
        assert await asyncio.to_thread(run_body(client, "alpha")) == ["alpha"]
    finally:
        await close(client)
    runs = await completed_runs(broker, prefix)
    assert [r.skipped_reason is not None for r in runs] == [False, True, False]
    assert len({r.run_id for r in runs}) == 3


async def test_the_readme_sdk_example_runs_against_a_broker(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example as printed, with this broker's address and a stand-in openai."""
    await create_topics(broker, "")  # the example sets no topic prefix (fresh broker per test)
    monkeypatch.setitem(sys.modules, "openai", fake_openai())
    # Its guard verifies kills with the supervisor's public key, found from the environment.
    monkeypatch.setenv("METASUP_SUPERVISOR_PUBLIC_KEY_FILE", str(SUPERVISOR_KEY.public))
    (readme,) = [example for example in doc_examples() if example.where.startswith("README.md")]

    await asyncio.to_thread(readme.run, {'"127.0.0.1:9092"': repr(broker.bootstrap)})

    runs = await completed_runs(broker, "")
    signals = await read_events(broker, "", "signals")
    assert [(r.agent, r.strategy_class, r.errors, r.tokens_in) for r in runs] == [
        ("momentum-1", "momentum", 0, 1000)
    ]
    assert [(s.run_id, s.symbol) for s in signals if isinstance(s, SignalEmitted)] == [
        (runs[0].run_id, "BTC")
    ]
