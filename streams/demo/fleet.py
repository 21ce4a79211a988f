"""The demo's simulated desk: ten agents of six strategy classes on real BTC prices.

Pure and deterministic (randomness is seeded by agent and simulated time), so the live
demo (`streams.cli.demo`, through the real SDK and broker) and its in-memory replay
(`streams.demo.replay`, which shows what the default policy makes of this fleet)
produce the same source events.

The agents are built to look like a real desk, not to flatter the supervisor: a trend
follower and a mean reverter with no edge that win and lose with the market, a coin
flip as the baseline every desk should keep, and LLM agents that cost money, with a
simulated edge of varying size (a simulator grants one by looking ahead; a desk runs
agents that passed an offline evaluation), one whose JSON parsing fails now and then,
one that breaks often, and a research agent whose deep-dive days burn through the
desk's daily LLM budget. Even an edge of 0.62 on BTC's daily direction loses its first
ten trades' sum below the -150 bps kill line now and then: BTC moves about 300 bps a
day, so ten trades' PnL has a spread near 950 bps. A regime feed derived from the same prices
(trend and realized volatility of the last week) is published as `regime.changed`, so
allocation caps and the classes' regime fit move with the market.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.envelope import derived_event_id
from schemas.events import PolicyUpdated, PriceObserved, RegimeChanged, SignalEmitted
from streams.core.fleet_state import default_policy
from streams.sdk.run_context import Run

History = Sequence[float]
Call = tuple[str, float] | None


@dataclass(frozen=True)
class Market:
    """What an agent's call may read: the closes so far and, for the simulated edge of a
    skilled agent only, the close 24 h ahead (None near the end of the data)."""

    history: History
    ahead: float | None = None


Style = Callable[[Market, random.Random], Call]

# A 24 h call made once a day: one position at a time per agent, as a desk would size a
# daily-horizon strategy (six overlapping 24 h positions would be one view at six times
# the size).
RUN_EVERY_HOURS = 24
# Hours of prices an agent needs before its first run (the longest lookback, 72 h, plus one).
WARM_UP_HOURS = 73
# Regime feed: trend and daily volatility over the last week, decided at each UTC midnight.
REGIME_LOOKBACK_HOURS = 7 * 24
HIGH_VOL_DAILY = 0.045
TREND = 0.05


def _change(history: History, hours: int) -> float:
    return history[-1] / history[-1 - hours] - 1


def momentum(hours: int) -> Style:
    def call(market: Market, rng: random.Random) -> Call:
        change = _change(market.history, hours)
        return ("LONG" if change > 0 else "SHORT"), min(0.95, 0.5 + abs(change) * 10)

    return call


def mean_reversion(hours: int) -> Style:
    def call(market: Market, rng: random.Random) -> Call:
        change = _change(market.history, hours)
        return ("SHORT" if change > 0 else "LONG"), min(0.9, 0.5 + abs(change) * 20)

    return call


def coin_flip(market: Market, rng: random.Random) -> Call:
    return rng.choice(["LONG", "SHORT"]), round(rng.uniform(0.5, 0.7), 2)


def failing(share: float, style: Style) -> Style:
    """`style`, except that a `share` of its runs fail the way LLM agents do."""

    def call(market: Market, rng: random.Random) -> Call:
        if rng.random() < share:
            raise RuntimeError("LLM returned unparseable JSON")
        return style(market, rng)

    return call


def skilled(hit_rate: float) -> Style:
    """An agent with a real but modest edge: right about the next 24 h direction with
    probability `hit_rate`. A simulator can only grant an edge by looking ahead; without
    one, a desk has nothing worth promoting and the demo would show only kills."""

    def call(market: Market, rng: random.Random) -> Call:
        if market.ahead is None:
            return None
        up = market.ahead > market.history[-1]
        right = rng.random() < hit_rate
        return ("LONG" if up == right else "SHORT"), round(rng.uniform(0.55, 0.85), 2)

    return call


@dataclass(frozen=True)
class LlmUsage:
    """Tokens an agent's prompt and answer take; on deep-dive runs the prompt grows."""

    model: str
    tokens_in: tuple[int, int] = (800, 2400)
    tokens_out: tuple[int, int] = (80, 400)
    deep_dive_share: float = 0.0
    deep_dive_tokens_in: tuple[int, int] = (0, 0)

    def response(self, rng: random.Random) -> dict[str, object]:
        """An OpenAI-shaped response body, for `Run.add_llm_usage`."""
        low, high = self.tokens_in
        if rng.random() < self.deep_dive_share:
            low, high = self.deep_dive_tokens_in
        return {
            "model": self.model,
            "usage": {
                "prompt_tokens": rng.randint(low, high),
                "completion_tokens": rng.randint(*self.tokens_out),
            },
        }


@dataclass(frozen=True)
class DemoAgent:
    name: str
    strategy_class: str
    style: Style
    llm: LlmUsage | None = None
    offset_hours: int = 0
    every_hours: int = RUN_EVERY_HOURS

    def due(self, at: datetime) -> bool:
        return (at.hour - self.offset_hours) % self.every_hours == 0


FLEET: tuple[DemoAgent, ...] = (
    DemoAgent("momentum-24h", "momentum", momentum(24), offset_hours=0),
    DemoAgent("meanrev-12h", "mean_reversion", mean_reversion(12), offset_hours=3),
    DemoAgent("coinflip", "baseline", coin_flip, offset_hours=3),
    DemoAgent(
        "llm-trend",
        "llm_macro",
        failing(0.03, skilled(0.66)),
        LlmUsage("gpt-4.1-mini"),
        offset_hours=0,
    ),
    DemoAgent(
        "llm-macro",
        "llm_macro",
        skilled(0.64),
        LlmUsage("gpt-4.1-mini", tokens_in=(4_000, 12_000)),
        offset_hours=4,
    ),
    DemoAgent(
        "llm-news",
        "llm_news",
        skilled(0.62),
        LlmUsage("gpt-4.1-nano", tokens_in=(10_000, 30_000)),
        offset_hours=5,
    ),
    DemoAgent(
        "llm-breakout",
        "breakout",
        skilled(0.63),
        LlmUsage("gpt-4.1-mini"),
        offset_hours=2,
    ),
    DemoAgent(
        "llm-onchain",
        "llm_news",
        skilled(0.65),
        LlmUsage("gpt-4.1-nano", tokens_in=(10_000, 30_000)),
        offset_hours=6,
    ),
    DemoAgent(
        "llm-research",
        "llm_macro",
        skilled(0.62),
        LlmUsage(
            "gpt-4.1",
            tokens_in=(20_000, 60_000),
            tokens_out=(1_000, 3_000),
            deep_dive_share=0.08,
            deep_dive_tokens_in=(300_000, 500_000),
        ),
        offset_hours=1,
        every_hours=6,  # a research agent that polls: four runs a day, and their bills
    ),
    DemoAgent(
        "llm-flaky",
        "llm_macro",
        failing(0.35, mean_reversion(24)),
        LlmUsage("gpt-4.1-mini"),
        offset_hours=3,
    ),
)

# What the demo desk declares beside the default thresholds: the regimes each class is
# meant for (a class without a declaration cannot be judged on regime fit), and a daily
# LLM budget per agent.
CLASS_REGIMES: dict[str, tuple[str, ...]] = {
    "momentum": ("RISK_ON", "RISK_OFF"),
    "breakout": ("RISK_ON", "HIGH_VOL"),
    "mean_reversion": ("MIXED",),
}
DAILY_BUDGET_USD = 1.5
# Seeds every agent's randomness (with its name and the simulated time): one fixed desk.
DESK_SEED = 6


def regime_of(history: History) -> str | None:
    """The week's regime from hourly closes: HIGH_VOL when daily volatility is high,
    else RISK_ON / RISK_OFF on a strong weekly trend, else MIXED; None before a week."""
    if len(history) <= REGIME_LOOKBACK_HOURS:
        return None
    week = history[-1 - REGIME_LOOKBACK_HOURS :]
    returns = [math.log(b / a) for a, b in itertools.pairwise(week)]
    daily_vol = statistics.pstdev(returns) * math.sqrt(24)
    trend = week[-1] / week[0] - 1
    if daily_vol > HIGH_VOL_DAILY:
        return "HIGH_VOL"
    if trend > TREND:
        return "RISK_ON"
    if trend < -TREND:
        return "RISK_OFF"
    return "MIXED"


PRODUCER = "metasup.demo"


def desk_policy(at: datetime) -> PolicyUpdated:
    """The default policy, with what a desk declares about itself: its classes' intended
    regimes and its daily LLM budget. Every threshold of a verdict is the default one.
    In force from the first price of the replayed history, which a command (judged fresh
    at receipt) cannot be, so the live demo signs it with the supervisor's key."""
    policy = default_policy()
    thresholds = policy.thresholds.model_copy(update={"daily_budget_usd": DAILY_BUDGET_USD})
    return PolicyUpdated.create(
        event_id=derived_event_id("demo-policy", at.isoformat()),
        ts=at,
        producer=PRODUCER,
        actor=PRODUCER,
        reason=(
            "demo desk: default thresholds; declares its classes' intended regimes and a "
            f"daily LLM budget of {DAILY_BUDGET_USD:.2f} USD per agent"
        ),
        **{
            **policy.model_dump(),
            "version": policy.version + 1,
            "thresholds": thresholds.model_dump(),
            "class_regimes": CLASS_REGIMES,
        },
    )


def run_id_of(agent: DemoAgent, at: datetime) -> uuid.UUID:
    """Ids derive from agent and simulated time, so a resumed demo repeats none."""
    return derived_event_id("demo-run", agent.name, at.isoformat())


def act(agent: DemoAgent, run: Run, market: Market) -> SignalEmitted | None:
    """One run's work: the LLM call it pays for, then its call on BTC (which may raise,
    as a failed run does)."""
    rng = random.Random(f"{DESK_SEED}|{agent.name}|{run.started_at.isoformat()}")
    if agent.llm is not None:
        run.add_llm_usage(agent.llm.response(rng))
    made = agent.style(market, rng)
    return None if made is None else run.signal("BTC", made[0], made[1])


@dataclass
class Desk:
    """The desk's view of the market as prices pass: the history its agents read and the
    regime it has published."""

    closes: Sequence[float]  # every close of the replayed series, for the skilled agents
    history: list[float] = field(default_factory=list)
    regime: str | None = None

    def market(self) -> Market:
        now = len(self.history) - 1
        ahead = now + 24
        return Market(self.history, self.closes[ahead] if ahead < len(self.closes) else None)

    def observe(self, price: PriceObserved) -> RegimeChanged | None:
        """Take the hour's price; at UTC midnight, a change of regime to publish."""
        self.history.append(price.price)
        if price.ts.hour != 0:
            return None
        regime = regime_of(self.history)
        if regime is None or regime == self.regime:
            return None
        self.regime = regime
        return RegimeChanged.create(
            event_id=derived_event_id("demo-regime", price.ts.isoformat()),
            ts=price.ts,
            producer=PRODUCER,
            regime=regime,
            source="demo regime feed (7-day trend and volatility)",
        )

    def due(self, at: datetime) -> list[DemoAgent]:
        if len(self.history) < WARM_UP_HOURS:
            return []
        return [agent for agent in FLEET if agent.due(at)]
