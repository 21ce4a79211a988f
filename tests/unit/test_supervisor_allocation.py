"""Allocation: eligibility, quality and softmax weights, the regime cap, capital at risk."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.envelope import derived_event_id
from schemas.events import AgentKilled, Decision, StrategyKilled
from schemas.policy import Allocation, Capital, Policy
from schemas.stats import AgentStats
from streams.core.kill_facts import kill_fact
from streams.core.kill_list import KillList, apply_kill_fact
from streams.fleet.allocation import (
    AllocationResult,
    allocate,
    allocation_changed,
    allocation_event,
)

AT = datetime(2024, 3, 1, tzinfo=UTC)
POLICY = Policy()
SOFTMAX = Policy(allocation=Allocation(method="softmax", softmax_alpha=10.0))


def stats(
    pnl: float = 100.0, hit: float = 0.5, errors: float = 0.0, std: float = 10.0
) -> AgentStats:
    return AgentStats(
        trades=10, runs=10, pnl_sum_bps=pnl, hit_rate=hit, error_rate=errors, std_pnl_bps=std
    )


def run(
    by_agent: dict[str, AgentStats],
    regime: str | None = "RISK_ON",
    policy: Policy = POLICY,
    mults: dict[str, float] | None = None,
    decisions: dict[str, Decision] | None = None,
    kill_list: KillList | None = None,
    classes: dict[str, str | None] | None = None,
    cvar_bps: float | None = None,
) -> AllocationResult:
    return allocate(
        by_agent,
        mults or {},
        decisions or {},
        kill_list or KillList(),
        classes or {},
        regime,
        policy,
        AT,
        portfolio_cvar_bps=cvar_bps,
    )


def test_quality_weights_are_proportional_to_quality() -> None:
    # quality: a = 100 x 1.0 x 1.0 = 100; b = 300 x 1.0 x 1.0 = 300.
    result = run({"a": stats(100.0), "b": stats(300.0)})
    assert result.weights == pytest.approx({"a": 0.25, "b": 0.75})
    assert result.cash_weight == 0.0


def test_hit_rate_and_multiplier_enter_quality() -> None:
    # a = 100 x (0.5 + 0.5) x 0.5 = 50; b = 100 x (0.5 + 1.0) x 1.0 = 150.
    result = run({"a": stats(hit=0.5), "b": stats(hit=1.0)}, mults={"a": 0.5})
    assert result.weights == pytest.approx({"a": 0.25, "b": 0.75})


@pytest.mark.parametrize(
    ("regime", "cap"),
    [("RISK_OFF", 0.20), ("HIGH_VOL", 0.35), ("MIXED", 0.60), ("RISK_ON", 1.0)],
)
def test_regime_cap_scales_weights_to_sum_to_the_cap(regime: str, cap: float) -> None:
    result = run({"a": stats(100.0), "b": stats(300.0)}, regime=regime)
    assert math.fsum(result.weights.values()) == pytest.approx(cap)
    # The trap: re-normalising after the cap would make these 0.25 and 0.75 again.
    assert result.weights == pytest.approx({"a": 0.25 * cap, "b": 0.75 * cap})
    assert result.cash_weight == pytest.approx(1.0 - cap)
    assert result.regime_cap == cap


@pytest.mark.parametrize("regime", [None, "SIDEWAYS"])
def test_unknown_regime_caps_at_one_half(regime: str | None) -> None:
    result = run({"a": stats()}, regime=regime)
    assert result.regime_cap == 0.5 and result.weights == {"a": 0.5}
    assert result.cash_weight == 0.5


def test_exclusions_are_explained() -> None:
    kills = apply_kill_fact(
        apply_kill_fact(
            KillList(),
            kill_fact(AgentKilled, target="killed", source="operator", at=AT, causes=("k",)),
        ),
        kill_fact(StrategyKilled, target="carry", source="auto", at=AT, causes=("s",)),
    )
    result = run(
        {
            "good": stats(),
            "edge_errors": stats(errors=0.05),  # exactly 0.05 is allowed
            "killed": stats(),
            "in_killed_class": stats(),
            "retiring": stats(),
            "errors": stats(errors=0.06),
            "flat": stats(pnl=0.0),
            "no_runs": AgentStats(trades=10, pnl_sum_bps=100.0, hit_rate=0.5),
        },
        decisions={"retiring": Decision.RETIRE, "good": Decision.PROMOTE},
        kill_list=kills,
        classes={"in_killed_class": "carry"},
    )
    assert set(result.weights) == {"good", "edge_errors"}
    assert result.excluded == {
        "killed": "agent killed killed by supervisor (operator)",
        "in_killed_class": "strategy class carry killed by supervisor (auto)",
        "retiring": "decision RETIRE",
        "errors": "error_rate 0.060 > 0.050",
        "flat": "pnl_sum 0.0 bps <= 0",
        "no_runs": "error_rate unknown (no runs)",
    }


@pytest.mark.parametrize("decision", [Decision.KILL, Decision.RETIRE, Decision.KILLED])
def test_kill_decisions_exclude(decision: Decision) -> None:
    assert run({"a": stats()}, decisions={"a": decision}).weights == {}


def test_all_agents_excluded_leaves_everything_in_cash() -> None:
    result = run({"a": stats()}, decisions={"a": Decision.KILLED}, regime="MIXED")
    assert result.weights == {} and result.cash_weight == 1.0
    assert result.capital.at_risk_usd == 0.0


def test_no_agents_at_all() -> None:
    result = run({})
    assert result.weights == {} and result.cash_weight == 1.0


def test_a_zero_multiplier_gets_no_weight() -> None:
    result = run({"a": stats(), "b": stats()}, mults={"a": 0.0})
    assert result.weights == {"b": 1.0}
    assert result.excluded["a"].startswith("quality 0.000 <= 0")


def test_softmax_weights() -> None:
    # logits: a = 10 x 1.0 / 10 = 1; b = 10 x 1.0 / 5 = 2.
    result = run({"a": stats(std=10.0), "b": stats(std=5.0)}, policy=SOFTMAX)
    total = math.exp(1) + math.exp(2)
    assert result.weights == pytest.approx({"a": math.exp(1) / total, "b": math.exp(2) / total})
    assert result.method == "softmax"


def test_softmax_excludes_agents_without_volatility() -> None:
    no_std = stats().model_copy(update={"std_pnl_bps": None})
    result = run({"a": stats(std=0.0), "b": no_std, "c": stats()}, policy=SOFTMAX)
    assert result.weights == {"c": 1.0}
    assert set(result.excluded) == {"a", "b"}


@pytest.mark.parametrize("tiny", [1e-9, 5e-324])
def test_softmax_does_not_overflow(tiny: float) -> None:
    result = run({"a": stats(std=tiny), "b": stats(std=tiny), "c": stats(std=1.0)}, policy=SOFTMAX)
    assert result.weights == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


def test_capital_at_risk_per_agent() -> None:
    policy = Policy(capital=Capital(per_agent_cap_multiplier={"b": 0.5}))
    result = run({"a": stats(100.0), "b": stats(300.0)}, regime="MIXED", policy=policy)
    capital = result.capital
    # NAV 1 000 000 x 2 % = 20 000; a: 20 000 x 0.15; b: 20 000 x 0.45 x 0.5.
    assert capital.risk_budget_usd == pytest.approx(20_000.0)
    assert capital.per_agent_usd == pytest.approx({"a": 3_000.0, "b": 4_500.0})
    assert capital.at_risk_usd == pytest.approx(7_500.0)


def test_portfolio_cvar_known_and_unknown() -> None:
    known = run({"a": stats()}, regime="MIXED", cvar_bps=-80.0).capital
    # 80 bps of the 60 % of NAV that is deployed.
    assert known.portfolio_cvar_usd == pytest.approx(0.008 * 1_000_000 * 0.6)
    assert known.cvar_basis == "portfolio_cvar95"
    unknown = run({"a": stats()}, regime="MIXED").capital
    assert unknown.portfolio_cvar_usd == pytest.approx(10_000.0)
    assert unknown.cvar_basis == "nav_fraction"


def test_change_detection() -> None:
    first = run({"a": stats(100.0), "b": stats(300.0)})
    assert allocation_changed(None, first)
    assert not allocation_changed(first, run({"a": stats(100.0), "b": stats(300.0)}))
    assert allocation_changed(first, run({"a": stats(100.0), "b": stats(301.0)}))
    assert allocation_changed(first, run({"a": stats(100.0)}))
    assert allocation_changed(run({}), run({}, regime="RISK_OFF"))  # the cap moved


def test_allocation_event() -> None:
    result = run({"a": stats()}, regime="HIGH_VOL")
    event = allocation_event(result, AT, "cause-1", {"a": 12.5})
    assert event.event_id == derived_event_id("allocation", "cause-1")
    assert event.contributions == {"a": 12.5}
    assert (event.weights, event.regime, event.regime_cap) == ({"a": 0.35}, "HIGH_VOL", 0.35)
    assert event.cash_weight == pytest.approx(0.65)
    assert event.capital["cvar_basis"] == "nav_fraction"
    assert not allocation_changed(event, result)


agent_stats = st.builds(
    AgentStats,
    trades=st.integers(1, 50),
    runs=st.integers(1, 50),
    pnl_sum_bps=st.floats(-500, 500),
    hit_rate=st.floats(0, 1),
    error_rate=st.floats(0, 0.2),
    std_pnl_bps=st.none() | st.floats(0, 100),
)


@given(
    st.dictionaries(st.text(min_size=1, max_size=4), agent_stats, max_size=8),
    st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0.2, 1.2)),
    st.sampled_from([None, "RISK_OFF", "HIGH_VOL", "MIXED", "RISK_ON", "?"]),
    st.sampled_from([POLICY, SOFTMAX]),
)
def test_weights_are_nonnegative_and_sum_to_the_cap_or_nothing(
    by_agent: dict[str, AgentStats], mults: dict[str, float], regime: str | None, policy: Policy
) -> None:
    result = run(by_agent, regime=regime, policy=policy, mults=mults)
    assert all(weight >= 0 for weight in result.weights.values())
    total = math.fsum(result.weights.values())
    if result.weights:
        assert total == pytest.approx(result.regime_cap)
        assert result.cash_weight == pytest.approx(1.0 - total)
    else:
        assert result.cash_weight == 1.0
    assert set(result.weights) | set(result.excluded) == set(by_agent)
