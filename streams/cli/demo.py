"""The `make run` demo: the simulated desk of `streams.demo.fleet` trading on real BTC prices.

Prices come from the shipped slice of Bitfinex hourly candles, replayed in event
time at `speed` simulated hours per wall-clock second. Ten agents of five classes run
every four simulated hours through the real SDK, so runs, LLM usage, signals, errors
and refusals by the kill-switch guard look exactly like a live fleet's; a regime feed
derived from the same prices publishes `regime.changed`. Ids derive from the simulated
time, and progress is kept in the data dir, so a second `make run` continues where the
first stopped instead of replaying. `streams.demo.replay` runs the same desk in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from schemas.events import PriceObserved
from streams.core.signing import FactSigner
from streams.demo.fleet import PRODUCER, DemoAgent, Desk, act, desk_policy, run_id_of
from streams.reconcile.csv_source import DEMO_CSV, price_events
from streams.sdk.client import AsyncClient
from streams.sdk.run_context import AgentKilledError

Say = Callable[[str], None]


class Demo:
    def __init__(
        self, client: AsyncClient, data_dir: Path, speed: float, say: Say, signer: FactSigner
    ) -> None:
        self.client = client
        self.signer = signer
        self.progress_path = data_dir / "demo-progress.json"
        self.speed = speed
        self.say = say
        self.desk = Desk([])
        self.now = datetime(1970, 1, 1, tzinfo=UTC)
        client.clock = lambda: self.now

    def resume_after(self) -> datetime | None:
        if not self.progress_path.exists():
            return None
        return datetime.fromisoformat(orjson.loads(self.progress_path.read_bytes())["last_ts"])

    def save_progress(self, at: datetime) -> None:
        self.progress_path.write_bytes(orjson.dumps({"last_ts": at.isoformat()}))

    async def run_agent(self, agent: DemoAgent) -> None:
        run_id = run_id_of(agent, self.now)
        try:
            async with self.client.run(agent.name, agent.strategy_class, run_id=run_id) as run:
                signal = act(agent, run, self.desk.market())
                if signal is not None:
                    await self.client.publish(signal)
        except AgentKilledError:
            pass  # the kill-switch guard refused the run and recorded it
        except RuntimeError:
            pass  # the run context counted the error and emitted run.completed

    async def run(self, stop: asyncio.Event) -> None:
        prices: list[PriceObserved] = list(
            price_events(DEMO_CSV, producer=PRODUCER, source="bitfinex")
        )
        self.desk = Desk([price.price for price in prices])
        resume = self.resume_after()
        if resume is None:
            await self.client.publish(self.signer.sign(desk_policy(prices[0].ts)))
            self.say(
                "demo: published the desk's policy (default thresholds, intended regimes "
                "per class, a daily LLM budget; `metasup policy show`)"
            )
        sent = 0
        for index, price in enumerate(prices):
            regime = self.desk.observe(price)
            if resume is not None and price.ts <= resume:
                continue
            if stop.is_set():
                return
            self.now = price.ts
            if regime is not None:
                await self.client.publish(regime)
            await self.client.publish(price)
            sent += 1
            for agent in self.desk.due(price.ts):
                await self.run_agent(agent)
            self.save_progress(price.ts)
            if index % 240 == 0:
                self.say(
                    f"demo: {price.ts:%Y-%m-%d %H:%M} BTC {price.price:,.2f} "
                    f"({index + 1}/{len(prices)} hours)"
                )
            await asyncio.sleep(1 / self.speed)
        self.say(
            "demo: price data exhausted"
            + ("" if sent else " (already replayed; delete the data dir to start over)")
        )


async def run_demo(
    bootstrap: str,
    stop: asyncio.Event,
    *,
    topic_prefix: str,
    data_dir: Path,
    speed: float,
    say: Say,
    signer: FactSigner,
) -> None:
    client = AsyncClient(
        bootstrap,
        topic_prefix=topic_prefix,
        producer="metasup.demo",
        follow_kills=True,
        supervisor_key=signer.verifier,
    )
    async with client:
        await Demo(client, data_dir, speed, say, signer).run(stop)
