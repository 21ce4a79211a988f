"""The `make run` demo: a small simulated fleet trading on real BTC prices.

Prices come from the shipped slice of Bitfinex hourly candles, replayed in event
time at `speed` simulated hours per wall-clock second. Six agents with different
styles run every four simulated hours through the real SDK, so runs, LLM usage,
signals and errors look exactly like a live fleet's. Ids derive from the
simulated time, and progress is kept in the data dir, so a second `make run`
continues where the first stopped instead of replaying.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from schemas.envelope import derived_event_id
from schemas.events import PolicyUpdated, PriceObserved
from streams.core.fleet_state import default_policy
from streams.core.signing import FactSigner
from streams.reconcile.csv_source import DEMO_CSV, price_events
from streams.sdk.client import AsyncClient
from streams.sdk.run_context import AgentKilledError

Say = Callable[[str], None]
History = list[float]
Style = Callable[[History, random.Random], tuple[str, float] | None]

RUN_EVERY_HOURS = 4


def momentum(history: History, rng: random.Random) -> tuple[str, float] | None:
    change = history[-1] / history[-25] - 1
    return ("LONG" if change > 0 else "SHORT"), min(0.95, 0.5 + abs(change) * 10)


def mean_reversion(history: History, rng: random.Random) -> tuple[str, float] | None:
    change = history[-1] / history[-5] - 1
    return ("SHORT" if change > 0 else "LONG"), min(0.9, 0.5 + abs(change) * 20)


def breakout(history: History, rng: random.Random) -> tuple[str, float] | None:
    window = history[-25:-1]
    if history[-1] > max(window):
        return "LONG", 0.8
    if history[-1] < min(window):
        return "SHORT", 0.8
    return None


def coin_flip(history: History, rng: random.Random) -> tuple[str, float] | None:
    return rng.choice(["LONG", "SHORT"]), round(rng.uniform(0.5, 0.7), 2)


def noisy_trend(history: History, rng: random.Random) -> tuple[str, float] | None:
    if rng.random() < 0.15:
        raise RuntimeError("LLM returned unparseable JSON")
    change = history[-1] / history[-13] - 1
    return ("LONG" if change > 0 else "SHORT"), 0.65


@dataclass(frozen=True)
class DemoAgent:
    name: str
    strategy_class: str
    style: Style
    model: str | None = None
    offset_hours: int = 0


FLEET = (
    DemoAgent("momentum-24h", "momentum", momentum, offset_hours=0),
    DemoAgent("meanrev-4h", "mean_reversion", mean_reversion, offset_hours=1),
    DemoAgent("breakout-24h", "breakout", breakout, offset_hours=2),
    DemoAgent("coinflip", "baseline", coin_flip, offset_hours=3),
    DemoAgent("llm-trend", "llm_macro", noisy_trend, model="gpt-4.1-mini", offset_hours=0),
    DemoAgent(
        "llm-contrarian",
        "llm_macro",
        lambda h, r: _flip(momentum(h, r)),
        model="gpt-4.1",
        offset_hours=2,
    ),
)


def _flip(call: tuple[str, float] | None) -> tuple[str, float] | None:
    if call is None:
        return None
    return ("SHORT" if call[0] == "LONG" else "LONG"), call[1]


def fake_llm_response(model: str, rng: random.Random) -> dict[str, object]:
    return {
        "model": model,
        "usage": {
            "prompt_tokens": rng.randint(800, 2400),
            "completion_tokens": rng.randint(80, 400),
        },
    }


def demo_policy(at: datetime) -> PolicyUpdated:
    """A looser policy than the default, so the demo fleet lives long enough to watch:
    with 24 h BTC trades of a few hundred bps each, the default -150 bps kill line is
    crossed by any agent within days. Published as an event, like any policy change, but
    in force from the first price of the replayed history, which a command (judged fresh
    at receipt) cannot be: the demo runs inside `metasup up`, beside the supervisor, and
    signs it with the supervisor's key."""
    policy = default_policy()
    thresholds = policy.thresholds.model_copy(
        update={
            "kill_pnl_bps": -2500.0,
            "retire_pnl_bps": -2500.0,
            "kill_error_rate": 0.3,
            "max_drawdown_bps": 6000.0,
            "strategy_conditions_to_kill": 3,
        }
    )
    return PolicyUpdated.create(
        event_id=derived_event_id("demo-policy", at.isoformat()),
        ts=at,
        producer="metasup.demo",
        actor="metasup.demo",
        reason="demo: looser kill lines, so the simulated fleet lives long enough to watch",
        **{
            **policy.model_dump(),
            "version": policy.version + 1,
            "thresholds": thresholds.model_dump(),
        },
    )


class Demo:
    def __init__(
        self, client: AsyncClient, data_dir: Path, speed: float, say: Say, signer: FactSigner
    ) -> None:
        self.client = client
        self.signer = signer
        self.progress_path = data_dir / "demo-progress.json"
        self.speed = speed
        self.say = say
        self.now = datetime(1970, 1, 1, tzinfo=UTC)
        client.clock = lambda: self.now

    def resume_after(self) -> datetime | None:
        if not self.progress_path.exists():
            return None
        return datetime.fromisoformat(orjson.loads(self.progress_path.read_bytes())["last_ts"])

    def save_progress(self, at: datetime) -> None:
        self.progress_path.write_bytes(orjson.dumps({"last_ts": at.isoformat()}))

    async def run_agent(self, agent: DemoAgent, history: History) -> None:
        rng = random.Random(f"{agent.name}|{self.now.isoformat()}")
        run_id = uuid.UUID(str(derived_event_id("demo-run", agent.name, self.now.isoformat())))
        try:
            async with self.client.run(agent.name, agent.strategy_class, run_id=run_id) as run:
                if agent.model:
                    run.add_llm_usage(fake_llm_response(agent.model, rng))
                call = agent.style(history, rng)
                if call is not None:
                    await self.client.emit_signal("BTC", call[0], call[1], regime="MIXED")
        except AgentKilledError:
            pass  # the kill-switch guard refused the run and recorded it
        except RuntimeError:
            pass  # the run context counted the error and emitted run.completed

    async def run(self, stop: asyncio.Event) -> None:
        prices: list[PriceObserved] = list(
            price_events(DEMO_CSV, producer="metasup.demo", source="bitfinex")
        )
        resume = self.resume_after()
        if resume is None:
            await self.client.publish(self.signer.sign(demo_policy(prices[0].ts)))
            self.say("demo: published its policy (looser kill lines; `metasup policy show`)")
        history: History = []
        sent = 0
        for index, price in enumerate(prices):
            history.append(price.price)
            if resume is not None and price.ts <= resume:
                continue
            if stop.is_set():
                return
            self.now = price.ts
            await self.client.publish(price)
            sent += 1
            hour = price.ts.hour
            if len(history) > 25:
                for agent in FLEET:
                    if (hour - agent.offset_hours) % RUN_EVERY_HOURS == 0:
                        await self.run_agent(agent, history)
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
