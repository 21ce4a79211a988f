"""Edge significance: PSR(0) and DSR worked by hand from the published definitions.

Phi is written out as 0.5 * (1 + erf(z / sqrt 2)) here, independently of the
`statistics.NormalDist` the module uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from schemas.stats import AgentStats
from streams.agents.significance import (
    EULER_MASCHERONI,
    autocorrelation_penalty,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    with_significance,
)
from streams.agents.stats import StatsState, TradeTotals, lifetime_stats


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def stats_of(pnls: Sequence[float]) -> AgentStats:
    """The figures of a pnl series in trade order, as the stats fold reports them."""
    return lifetime_stats(StatsState(lifetime_trades=TradeTotals().plus(pnls)))


# --- The smart Sharpe's autocorrelation penalty, in closed form ---------------------------------


def penalty_by_the_loop(n: int, rho: float) -> float:
    return math.sqrt(1 + 2 * math.fsum((1 - k / n) * abs(rho) ** k for k in range(1, n)))


@pytest.mark.parametrize("n", [2, 3, 5, 24, 100, 1000, 20_000])
@pytest.mark.parametrize(
    "rho", [0.0, 0.1, -0.5, 0.78, -0.9, 0.99, 0.999, 1 - 1e-6, 1 - 1e-9, -(1 - 1e-12), 1.0]
)
def test_the_closed_form_penalty_equals_the_loop(n: int, rho: float) -> None:
    assert autocorrelation_penalty(n, rho) == pytest.approx(penalty_by_the_loop(n, rho), rel=1e-12)


def test_the_penalty_by_hand() -> None:
    # n = 5, r = 0.5: S = 0.8 * 0.5 + 0.6 * 0.25 + 0.4 * 0.125 + 0.2 * 0.0625 = 0.6125
    assert autocorrelation_penalty(5, -0.5) == pytest.approx(math.sqrt(1 + 2 * 0.6125))
    # r = 1: S = sum (1 - k/n) = (n - 1) / 2, so the penalty is sqrt(n): n perfectly
    # correlated trades are one observation.
    assert autocorrelation_penalty(24, 1.0) == pytest.approx(math.sqrt(24))
    # Unknown autocorrelation, or no lag at all: no penalty.
    assert autocorrelation_penalty(24, None) == 1.0
    assert autocorrelation_penalty(1, 0.9) == 1.0


# --- PSR(0) and DSR of trade samples -------------------------------------------------------------


def test_a_five_trade_sample_by_hand() -> None:
    stats = stats_of([10.0, -20.0, 30.0, -5.0, 15.0])
    # mean 6; deviations 4, -26, 24, -11, 9;
    # m2 = 16 + 676 + 576 + 121 + 81 = 1470, std = sqrt(1470 / 4) = 19.1703
    # m3 = 64 - 17576 + 13824 - 1331 + 729 = -4290
    # m4 = 256 + 456976 + 331776 + 14641 + 6561 = 810210
    skew = (-4290 / 5) / (1470 / 5) ** 1.5  # -858 / 294^1.5 = -0.170203
    kurt = (810210 / 5) / (1470 / 5) ** 2  # 162042 / 86436 = 1.874705
    assert stats.skewness == pytest.approx(skew)
    assert stats.kurtosis == pytest.approx(kurt)
    # lag-1 pairs (10, -20), (-20, 30), (30, -5), (-5, 15): means 3.75 and 5, sum of
    # cross deviations -1100, of squares 1368.75 and 1450
    rho = -1100 / math.sqrt(1368.75 * 1450)  # -0.780812
    assert stats.autocorr_lag1 == pytest.approx(rho)
    r = abs(rho)
    penalty = math.sqrt(1 + 2 * (0.8 * r + 0.6 * r**2 + 0.4 * r**3 + 0.2 * r**4))  # 1.873608
    sr = 6 / math.sqrt(367.5) / penalty  # 0.312984 / 1.873608 = 0.167049
    # 1 - skew sr + (kurt - 1) / 4 sr^2 = 1 + 0.028432 + 0.006101 = 1.034533
    dispersion = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    z = sr * math.sqrt(5 - 1) / math.sqrt(dispersion)  # 0.334098 / 1.017120 = 0.328475
    # E[max of 10 standard normals] = 0.422784 * Phi^-1(0.9) + 0.577216 * Phi^-1(1 - 1/(10e))
    #                               = 0.422784 * 1.281552 + 0.577216 * 1.789245 = 1.574598
    max_z_of_10 = 0.4227843350984671 * 1.2815515655446004 + EULER_MASCHERONI * 1.789245

    significance = with_significance(stats, trials=10)

    assert significance.psr == pytest.approx(phi(z))  # 0.628723
    assert significance.dsr == pytest.approx(phi(z - max_z_of_10), rel=1e-5)  # Phi(-1.246) = 0.106
    assert significance.trials == 10
    # Nothing else changes.
    assert significance.model_copy(update={"psr": None, "dsr": None, "trials": None}) == stats


def test_a_24_trade_sample_that_alternates_counts_as_one_trade() -> None:
    # +20, -10 twelve times: mean 5, every deviation +-15, m2 = 24 * 225 = 5400,
    # std = sqrt(5400 / 23) = 15.32262, Sharpe = 5 / 15.32262 = 0.326315.
    # Two values, equally often: skewness 0, kurtosis (15^4) / (15^2)^2 = 1.
    # Each trade undoes the last: rho_1 = -1, so the penalty is sqrt(24) (see above).
    stats = stats_of([20.0, -10.0] * 12)
    assert (stats.skewness, stats.kurtosis) == (pytest.approx(0.0, abs=1e-12), pytest.approx(1.0))
    assert stats.autocorr_lag1 == pytest.approx(-1.0)
    sr = 5 / math.sqrt(5400 / 23) / math.sqrt(24)  # 0.066609
    # dispersion 1 - 0 * sr + 0 / 4 * sr^2 = 1; z = sr * sqrt(23) = 0.319449
    assert with_significance(stats, 1).psr == pytest.approx(phi(sr * math.sqrt(23)))  # 0.6253


def test_psr_of_a_normal_sample_by_hand() -> None:
    # SR 0.5 over 24 trades, skew 0, kurtosis 3: dispersion 1 + 2/4 * 0.25 = 1.125,
    # z = 0.5 * sqrt(23) / sqrt(1.125) = 2.397916 / 1.060660 = 2.260777
    assert probabilistic_sharpe(0.5, 24, 0.0, 3.0) == pytest.approx(phi(2.260777), rel=1e-6)
    # Against the benchmark itself: an even chance.
    assert probabilistic_sharpe(0.5, 24, 0.0, 3.0, benchmark=0.5) == 0.5


def test_the_published_deflated_sharpe_example() -> None:
    # Bailey & López de Prado (2014), "A numerical example": annualized SR 2.5 over
    # T = 1250 daily returns (250 a year), skewness -3, kurtosis 10, N = 100 trials whose
    # annualized Sharpe ratios have variance 1/2. The paper: SR0 = 0.1132 (daily),
    # DSR = 0.9004; with N = 46 trials, DSR = 0.9505.
    sr, variance = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = expected_max_sharpe(100, variance)

    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert probabilistic_sharpe(sr, 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=5e-5)
    sr0_46 = expected_max_sharpe(46, variance)
    assert probabilistic_sharpe(sr, 1250, -3.0, 10.0, sr0_46) == pytest.approx(0.9505, abs=5e-5)


def test_more_trials_deflate_more() -> None:
    stats = stats_of([12.0, -3.0, 25.0, 4.0, -8.0, 30.0, 9.0, -2.0, 15.0, 6.0] * 3)
    one, ten, hundred = (with_significance(stats, n).dsr for n in (1, 10, 100))

    assert one == with_significance(stats, 1).psr  # one trial: nothing was selected
    assert one is not None and ten is not None and hundred is not None
    assert one > ten > hundred
    assert expected_max_sharpe(1, 4.0) == 0.0
    # E[max] scales with the null's standard deviation: sqrt(4) * 1.574598
    assert expected_max_sharpe(10, 4.0) == pytest.approx(2 * 1.574598, rel=1e-6)


def test_dsr_is_psr_against_the_expected_best_of_its_own_noise() -> None:
    # V = dispersion / (n - 1) is the estimator's own variance, so DSR = Phi(z - E[max z]).
    sr, n, skew, kurt = 0.3, 50, -0.5, 4.0
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected_max_z = expected_max_sharpe(20, 1.0)

    assert deflated_sharpe(sr, n, skew, kurt, 20) == pytest.approx(phi(z - expected_max_z))


def test_two_trades_are_enough_for_a_psr() -> None:
    # 10, -20: mean -5, std sqrt(450) = 21.2132, Sharpe -0.235702; skewness 0, kurtosis 1;
    # one lag-1 pair, so no autocorrelation and no penalty. z = -0.235702 * sqrt(1) / 1.
    stats = with_significance(stats_of([10.0, -20.0]), 3)

    assert stats.autocorr_lag1 is None
    z = -5 / math.sqrt(450)
    assert stats.psr == pytest.approx(phi(z))  # 0.406832
    # E[max of 3 standard normals] = 0.422784 * Phi^-1(2/3) + 0.577216 * Phi^-1(1 - 1/(3e))
    #                              = 0.422784 * 0.430727 + 0.577216 * 1.161957 = 0.852804
    max_z_of_3 = 0.4227843350984671 * 0.430727 + EULER_MASCHERONI * 1.161957
    assert stats.dsr == pytest.approx(phi(z - max_z_of_3), rel=1e-5)  # Phi(-1.0885) = 0.1382


@pytest.mark.parametrize(
    "pnls",
    [
        pytest.param([], id="no trades"),
        pytest.param([25.0], id="one trade"),
        pytest.param([7.0, 7.0, 7.0, 7.0], id="all equal"),
        pytest.param([0.0, 0.0, 0.0], id="all zero"),
    ],
)
def test_without_variance_significance_is_unknown_not_low(pnls: list[float]) -> None:
    stats = with_significance(stats_of(pnls), 5)

    assert (stats.skewness, stats.kurtosis, stats.psr, stats.dsr) == (None, None, None, None)
    assert stats.trials == 5


def test_an_unknown_autocorrelation_applies_no_penalty() -> None:
    # 1, 1, 4: the leads (1, 1) are constant, so rho_1 is undefined; PSR uses the plain
    # Sharpe. mean 2, deviations -1, -1, 2: m2 = 6, m3 = 6, m4 = 18, std = sqrt(3);
    # skewness (6/3) / 2^1.5 = 0.707107, kurtosis 6 / 4 = 1.5.
    stats = stats_of([1.0, 1.0, 4.0])
    assert stats.autocorr_lag1 is None
    sr, skew = 2 / math.sqrt(3), 2 / 2**1.5
    z = sr * math.sqrt(2) / math.sqrt(1 - skew * sr + 0.5 / 4 * sr**2)

    assert with_significance(stats, 1).psr == pytest.approx(phi(z))


def test_a_degenerate_dispersion_is_unknown() -> None:
    # Kurtosis at its floor 1 + skew^2 (a two-valued sample) and SR = 2 / skew:
    # 1 - 2 * 1 + (5 - 1) / 4 * 1 = 0, an estimator variance of 0.
    assert probabilistic_sharpe(1.0, 30, 2.0, 5.0) is None
    assert deflated_sharpe(1.0, 30, 2.0, 5.0, 10) is None
    assert probabilistic_sharpe(None, 30, 0.0, 3.0) is None
    assert probabilistic_sharpe(0.4, 1, 0.0, 3.0) is None


def test_trials_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="trials"):
        expected_max_sharpe(0, 1.0)
