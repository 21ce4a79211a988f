"""Async and sync clients: publish events, run agents under the kill-switch guard."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from schemas.clock import Clock, utc_now
from schemas.envelope import Event
from schemas.events import Direction, RunCompleted, SignalEmitted
from streams.broker.publisher import Publisher
from streams.core.signing import FactVerifier
from streams.runtime.fleet_view import FleetView
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier, read_public_key
from streams.sdk.run_context import AgentKilledError, Run, current_run

T = TypeVar("T")


class Guard(Protocol):
    def killed_reason(self, agent: str, strategy_class: str | None, at: datetime) -> str | None:
        """Why this agent may not run now, or None when it may."""
        ...


def _verifier(key: FactVerifier | Path | None) -> FactVerifier:
    if isinstance(key, FactVerifier):
        return key
    if key is None:
        return load_verifier(Settings())  # the environment as it is now
    return read_public_key(key)


class AsyncClient:
    """Publish events and run agents under the guard from asyncio code.

    ```python
    import asyncio

    from streams.sdk import AsyncClient


    async def main() -> None:
        async with AsyncClient("127.0.0.1:9092", producer="my-agent") as client:
            async with client.run("mean-rev-2", strategy_class="mean_reversion"):
                await client.emit_signal("ETH", "SHORT", confidence=0.6)


    asyncio.run(main())
    ```
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "",
        producer: str = "metasup.sdk",
        guard: Guard | None = None,
        follow_kills: bool = False,
        supervisor_key: FactVerifier | Path | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """`follow_kills=True` makes the client its own kill-switch guard: it follows the
        `kills` topic (and policy, regimes) and refuses runs of killed agents. It believes
        only facts signed by the supervisor, checked with its public key: `supervisor_key`
        (a verifier or a PEM file), by default $METASUP_SUPERVISOR_PUBLIC_KEY_FILE or
        <METASUP_DATA_DIR>/supervisor.pub; a missing key is an error, never a guard that
        believes anyone."""
        self.publisher = Publisher(bootstrap, topic_prefix)
        self.producer = producer
        self.guard = guard
        self.clock = clock
        self._fleet_view = (
            FleetView(bootstrap, topic_prefix, _verifier(supervisor_key)) if follow_kills else None
        )

    async def start(self) -> None:
        await self.publisher.start()
        if self._fleet_view is not None:
            await self._fleet_view.start()
            self.guard = self._fleet_view

    async def stop(self) -> None:
        if self._fleet_view is not None:
            await self._fleet_view.stop()
        await self.publisher.stop()

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def publish(self, event: Event) -> None:
        await self.publisher.publish(event)

    def new_run(
        self, agent: str, strategy_class: str | None, run_id: uuid.UUID | None = None
    ) -> Run:
        return Run(
            agent=agent,
            producer=self.producer,
            strategy_class=strategy_class,
            clock=self.clock,
            run_id=run_id or uuid.uuid4(),
        )

    def refusal(self, run: Run) -> str | None:
        if self.guard is None:
            return None
        return self.guard.killed_reason(run.agent, run.strategy_class, self.clock())

    @contextlib.contextmanager
    def lifecycle(
        self,
        agent: str,
        strategy_class: str | None,
        run_id: uuid.UUID | None,
        ended: list[RunCompleted],
    ) -> Iterator[Run]:
        """One run from start to end, without I/O: the one lifecycle of both clients.

        However the body ends (refused by the guard, raising, returning), the run's
        `run.completed` is appended to `ended` before the exception, if any, goes on;
        the caller publishes it, awaiting (AsyncClient) or blocking (SyncClient).
        """
        run = self.new_run(agent, strategy_class, run_id)
        run.begin()
        refused = self.refusal(run)
        if refused is not None:
            ended.append(run.end(failed=False, skipped_reason=refused))
            raise AgentKilledError(f"{agent} did not run: {refused}")
        try:
            yield run
        except BaseException:
            ended.append(run.end(failed=True))
            raise
        ended.append(run.end(failed=False))

    @contextlib.asynccontextmanager
    async def run(
        self, agent: str, strategy_class: str | None = None, run_id: uuid.UUID | None = None
    ) -> AsyncIterator[Run]:
        """Time the body as one run; `run.completed` is emitted however the body ends."""
        ended: list[RunCompleted] = []
        try:
            with self.lifecycle(agent, strategy_class, run_id, ended) as run:
                yield run
        finally:
            for completed in ended:
                await self.publish(completed)

    async def emit_signal(
        self, symbol: str, direction: Direction | str, confidence: float, **extra: Any
    ) -> SignalEmitted:
        signal = current_run().signal(symbol, direction, confidence, **extra)
        await self.publish(signal)
        return signal


class SyncClient:
    """The same API for synchronous agents: a private event loop runs in a daemon thread."""

    def __init__(self, bootstrap: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._closed = False

        async def connect() -> AsyncClient:
            # Kafka clients belong to the loop they are created on: build it there.
            client = AsyncClient(bootstrap, **options)
            await client.start()
            return client

        try:
            self._async = self._call(connect())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def guard(self) -> Guard | None:
        return self._async.guard

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._async.stop())
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def publish(self, event: Event) -> None:
        self._call(self._async.publish(event))

    @contextlib.contextmanager
    def run(
        self, agent: str, strategy_class: str | None = None, run_id: uuid.UUID | None = None
    ) -> Iterator[Run]:
        """Time the body as one run; `run.completed` is emitted however the body ends."""
        ended: list[RunCompleted] = []
        try:
            with self._async.lifecycle(agent, strategy_class, run_id, ended) as run:
                yield run
        finally:
            for completed in ended:
                self.publish(completed)

    def emit_signal(
        self, symbol: str, direction: Direction | str, confidence: float, **extra: Any
    ) -> SignalEmitted:
        signal = current_run().signal(symbol, direction, confidence, **extra)
        self.publish(signal)
        return signal


def supervised(
    client: SyncClient, agent: str, strategy_class: str | None = None
) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorator form: a killed agent's function is not called and returns None.

    ```python
    from streams.sdk import SyncClient
    from streams.sdk.client import supervised

    client = SyncClient("127.0.0.1:9092", producer="my-agent", follow_kills=True)


    @supervised(client, "momentum-1", strategy_class="momentum")
    def trade(symbol: str) -> str:
        client.emit_signal(symbol, "LONG", confidence=0.7)
        return f"{symbol} sent"


    print(trade("BTC"))  # "BTC sent", or None (and a skipped run) while momentum-1 is killed
    client.close()
    ```
    """

    def wrap(function: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> T | None:
            run = client.run(agent, strategy_class)
            try:
                run.__enter__()
            except AgentKilledError:
                return None  # refused by the guard (and recorded); the body never ran
            with contextlib.ExitStack() as exits:
                exits.push(run)  # ends the run however the function ends
                return function(*args, **kwargs)

        return guarded

    return wrap
