"""`metasup stats [AGENT]`: rolling-window stats, multiplier and decision per agent,
rebuilt from the log through the same folds the live tables use."""

from __future__ import annotations

import argparse
from datetime import datetime

import orjson

from projections.agents import AGENT_TOPICS, project_agents
from projections.log import events
from projections.replay import AsOf
from schemas.envelope import to_utc
from schemas.stats import AgentStats
from streams.cli.connection import replayed
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("stats", help="per-agent stats, multiplier and decision")
    parser.add_argument("agent", nargs="?", help="one agent in full detail (JSON)")
    parser.add_argument(
        "--as-of",
        type=datetime.fromisoformat,
        help="ISO-8601 time with timezone: stats as the log stood then",
    )
    parser.set_defaults(run=run)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def run(args: argparse.Namespace, settings: Settings) -> int:
    as_of = to_utc(args.as_of) if args.as_of else None
    verifier = load_verifier(settings)
    with replayed(settings, AGENT_TOPICS, AsOf(received_until=as_of)) as (records, where):
        projection = project_agents(events(records, verifier=verifier))
    if args.agent:
        if args.agent not in projection.agents:
            known = ", ".join(sorted(projection.agents)) or "none yet"
            print(f"no agent {args.agent!r} in the log (agents: {known})")
            return 1
        state = projection.agents[args.agent]
        body = {
            "agent": args.agent,
            "strategy_class": state.strategy_class,
            "decision": state.decision,
            "confidence_mult": state.confidence.mult,
            "contribution_bps": projection.contribution_bps(args.agent),
            "window": projection.window_stats(args.agent, as_of).model_dump(mode="json"),
        }
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return 0
    header = (
        f"{'trades':>6} {'pnl_bps':>9} {'hit':>5} {'err':>5} {'lat_ms':>7} "
        f"{'dd_bps':>8} {'cvar95':>8} {'sharpe':>6}"
    )
    print(
        f"{'agent':<18} {'class':<14} {'decision':<8} {header} {'mult':>5} "
        f"{'psr':>5} {'dsr':>5} {'$/bps':>7} {'contrib':>8}"
    )
    for name, state in sorted(projection.agents.items()):
        stats = projection.window_stats(name, as_of)
        print(
            f"{name:<18} {state.strategy_class or '-':<14} {state.decision or '-':<8} "
            f"{_row(stats)} {state.confidence.mult:>5.2f} {_fmt(stats.psr, '.2f'):>5} "
            f"{_fmt(stats.dsr, '.2f'):>5} {_fmt(stats.cost_per_bps_usd, '.4f'):>7} "
            f"{_fmt(projection.contribution_bps(name), '.1f'):>8}"
        )
    print()
    print(f"{'strategy class / portfolio':<42} {header}")
    for group, stats in projection.group_stats(as_of).items():
        print(f"{group:<42} {_row(stats)}")
    print(
        "(window stats as of each newest fact time; psr/dsr: probabilistic and deflated "
        "Sharpe, contrib: leave-one-out bps of the deployed portfolio in the latest "
        f"allocation; read from the {where})"
    )
    return 0


def _row(s: AgentStats) -> str:
    return (
        f"{s.trades:>6} {s.pnl_sum_bps:>9.1f} {_fmt(s.hit_rate, '.2f'):>5} "
        f"{_fmt(s.error_rate, '.2f'):>5} {_fmt(s.avg_latency_ms, '.0f'):>7} "
        f"{s.max_drawdown_bps:>8.1f} {_fmt(s.cvar95_bps, '.1f'):>8} {_fmt(s.sharpe, '.2f'):>6}"
    )
