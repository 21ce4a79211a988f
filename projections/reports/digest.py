"""What the PR comment and the LP email both show, worded once so the two never disagree:
the portfolio's figures, deployed beside unweighted, and the largest weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from projections.reports.markup import MISSING, bps, share, signed_bps
from projections.reports.meta import AllocationView, FleetSummary


class Figure(NamedTuple):
    label: str
    deployed: str  # the portfolio as the allocator deployed it (the breach watches this)
    unweighted: str  # every agent's trades pooled at equal size


def portfolio_figures(fleet: FleetSummary) -> list[Figure]:
    """The window's figures; what only one of the two portfolios has shows as n/a."""
    deployed = fleet.deployed
    cvar = MISSING if fleet.cvar95_bps is None else f"{signed_bps(fleet.cvar95_bps)} bps"
    return [
        Figure("PnL", f"{signed_bps(deployed.pnl_bps)} bps", f"{signed_bps(fleet.pnl_bps)} bps"),
        Figure(
            "max drawdown",
            f"{bps(deployed.max_drawdown_bps)} bps",
            f"{bps(fleet.max_drawdown_bps)} bps",
        ),
        Figure("current drawdown", f"{bps(deployed.current_drawdown_bps)} bps", MISSING),
        Figure("hit rate", MISSING, share(fleet.hit_rate)),
        Figure("CVaR 95", MISSING, cvar),
    ]


def fleet_line(fleet: FleetSummary, escape: Callable[[str], str]) -> str:
    """Trades, regime and agents in a sentence; the regime (from outside) through `escape`."""
    regime = escape(fleet.regime) if fleet.regime else MISSING
    return (
        f"{fleet.trades} trades in the window · regime {regime} · {fleet.agents} agents, "
        f"{fleet.trading} trading"
    )


class TopWeights(NamedTuple):
    weights: list[tuple[str, float]]  # largest first
    others: int  # agents left out
    others_weight: float
    cash_weight: float


def top_weights(allocation: AllocationView | None, count: int) -> TopWeights:
    """The `count` largest weights (the view ranks them); before any allocation, all cash."""
    if allocation is None:
        return TopWeights([], 0, 0.0, 1.0)
    ranked = list(allocation.weights.items())
    rest = ranked[count:]
    return TopWeights(
        ranked[:count], len(rest), sum(weight for _, weight in rest), allocation.cash_weight
    )
