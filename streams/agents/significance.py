"""Edge significance: how likely an agent's Sharpe ratio is skill rather than luck.

A per-trade Sharpe ratio of 0.3 over 5 trades and over 500 is not the same
evidence, and a fleet that keeps the best of many agents of a class selects luck
too. Two probabilities answer that (SPEC section 6), from figures the stats fold
keeps exactly in O(1) per trade (`streams.agents.stats`):

PSR(SR*), the probabilistic Sharpe ratio (Bailey & López de Prado 2012, "The
Sharpe ratio efficient frontier", Journal of Risk 15(2)): the probability that
the true Sharpe ratio exceeds SR*, given n observations whose skewness g3 and
(non-excess) kurtosis g4 widen or narrow the estimator's spread:

    PSR(SR*) = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))

The agents' trades overlap in time (a 24 h horizon, signals every hour), so
successive PnLs are correlated and n overstates the evidence. SR is therefore the
per-trade Sharpe (mean / std, std with n - 1) divided by the smart Sharpe's
autocorrelation penalty (`autocorrelation_penalty`); when the lag-1
autocorrelation is unknown the penalty is 1.

DSR, the deflated Sharpe ratio (Bailey & López de Prado 2014, "The deflated
Sharpe ratio: correcting for selection bias, backtest overfitting and
non-normality", Journal of Portfolio Management 40(5)): PSR against the Sharpe
ratio the best of N skill-less trials is expected to reach,

    SR0 = sqrt(V) * ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))),

gamma the Euler-Mascheroni constant, N the agents ever seen in the strategy class.
V is the variance of the N trials' Sharpe ratios under the null. The paper takes
it from the trials' Sharpe ratios; the agent processor that computes DSR sees one
agent only, so V here is the variance of the Sharpe estimator itself,
V = (1 - g3 SR + (g4 - 1) / 4 SR^2) / (n - 1): the dispersion a skill-less
agent's Sharpe ratio would show over the same sample. Then
DSR = Phi(z - E[max of N standard normals]), z being the PSR(0) statistic: the
best of N trials must clear the expected maximum of N draws of its own noise.

Unknown stays unknown: with fewer than 2 trades, zero variance (skewness and
kurtosis undefined), or a non-positive variance factor, PSR and DSR are None,
and a rule that reads "PSR <= threshold" must not treat None as a low PSR, so
an unknown significance never triggers a KILL.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from schemas.stats import AgentStats

EULER_MASCHERONI = 0.5772156649015329
_STANDARD_NORMAL = NormalDist()


def autocorrelation_penalty(n: int, rho_1: float | None) -> float:
    """The smart Sharpe's penalty, sqrt(1 + 2 S), S = sum_{k=1}^{n-1} (1 - k/n) r^k,
    r = |rho_1| (quantstats' AR(1) form, so the penalty is >= 1); 1 when rho_1 is
    unknown or there is no lag.

    Closed form, O(1) whatever n: with u = 1 - r, the geometric sums give
    S = r T / n, T = (n u - 1 + r^n) / u^2 = sum_{j=2}^{n} C(n, j) (-u)^(j-2).
    The fraction cancels catastrophically as n u -> 0 (at r = 1 it is 0 / 0), so
    there T is summed as that binomial series instead: each term is at most n u / 3
    of the previous one, so it ends after a few dozen terms at most, whatever n.
    """
    if rho_1 is None or n < 2:
        return 1.0
    r = min(abs(rho_1), 1.0)  # rounding can put a correlation a hair outside [-1, 1]
    u = 1.0 - r
    tail = (n * u - 1.0 + r**n) / (u * u) if n * u >= 0.5 else _binomial_tail(n, u)
    return math.sqrt(1.0 + 2.0 * r * tail / n)


def _binomial_tail(n: int, u: float) -> float:
    """sum_{j=2}^{n} C(n, j) (-u)^(j-2), for n u < 0.5 (terms shrink at least 6-fold)."""
    term = total = n * (n - 1) / 2
    j = 2
    while j < n:
        term *= -u * (n - j) / (j + 1)
        if abs(term) <= 1e-17 * abs(total):
            break
        total += term
        j += 1
    return total


def sharpe_variance(
    sr: float | None, n: int, skew: float | None, kurt: float | None
) -> float | None:
    """The variance of the Sharpe ratio estimator over n observations with skewness
    `skew` and kurtosis `kurt` (Mertens 2002, as used by Bailey & López de Prado 2012):
    (1 - skew SR + (kurt - 1) / 4 SR^2) / (n - 1). None when unknown or not positive.

    The factor is >= (1 - skew SR / 2)^2 >= 0 since kurt >= 1 + skew^2, so only
    rounding or a degenerate two-valued sample makes it <= 0.
    """
    if sr is None or skew is None or kurt is None or n < 2:
        return None
    factor = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not (factor > 0.0 and math.isfinite(factor)):
        return None
    return factor / (n - 1)


def probabilistic_sharpe(
    sr: float | None,
    n: int,
    skew: float | None,
    kurt: float | None,
    benchmark: float = 0.0,
) -> float | None:
    """PSR(benchmark) = Phi((SR - benchmark) / sqrt(V)), V = `sharpe_variance`: the
    probability that the true Sharpe ratio exceeds `benchmark` (Bailey & López de
    Prado 2012). None when V is unknown."""
    variance = sharpe_variance(sr, n, skew, kurt)
    if sr is None or variance is None:
        return None
    z = (sr - benchmark) / math.sqrt(variance)
    return _STANDARD_NORMAL.cdf(z) if math.isfinite(z) else None


def expected_max_sharpe(trials: int, variance: float) -> float:
    """E[max] of `trials` skill-less Sharpe ratios of variance `variance` (Bailey &
    López de Prado 2014, from the extreme value theory of Gaussian maxima):
    sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))); 0 for one
    trial, which is selected from nothing."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if trials == 1:
        return 0.0
    quantile = _STANDARD_NORMAL.inv_cdf
    expected_max_z = (1.0 - EULER_MASCHERONI) * quantile(
        1.0 - 1.0 / trials
    ) + EULER_MASCHERONI * quantile(1.0 - 1.0 / (trials * math.e))
    return math.sqrt(variance) * expected_max_z


def deflated_sharpe(
    sr: float | None, n: int, skew: float | None, kurt: float | None, trials: int
) -> float | None:
    """DSR = PSR(SR0), SR0 = `expected_max_sharpe(trials, V)`, V the estimator's own
    variance (see the module docstring). None when V is unknown."""
    variance = sharpe_variance(sr, n, skew, kurt)
    if variance is None:
        return None
    return probabilistic_sharpe(sr, n, skew, kurt, expected_max_sharpe(trials, variance))


def with_significance(stats: AgentStats, trials: int) -> AgentStats:
    """`stats` with `psr` (PSR(0)), `dsr` (against `trials` agents of the class) and
    `trials` filled from its own figures: the Sharpe ratio over the autocorrelation
    penalty of `autocorr_lag1` (1 when unknown), `trades`, `skewness`, `kurtosis`."""
    n = stats.trades
    sr = (
        None
        if stats.sharpe is None
        else stats.sharpe / autocorrelation_penalty(n, stats.autocorr_lag1)
    )
    return stats.model_copy(
        update={
            "psr": probabilistic_sharpe(sr, n, stats.skewness, stats.kurtosis),
            "dsr": deflated_sharpe(sr, n, stats.skewness, stats.kurtosis, trials),
            "trials": trials,
        }
    )
