"""`metasup status`: reconciliation progress per symbol and horizon, from the log, and
how far the workers are behind it."""

from __future__ import annotations

import argparse
import asyncio

from projections.log import events
from projections.reconcile_status import STATUS_TOPICS, ReconcileStatus, reconcile_status
from schemas.envelope import format_utc
from schemas.topics import CATALOGUE
from streams.broker.offsets import consumer_lag
from streams.cli.connection import replayed, resolve_bootstrap
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status", help="reconciliation progress: pending / reconciled / unreconcilable"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    verifier = load_verifier(settings)
    with replayed(settings, STATUS_TOPICS) as (records, where):
        status = reconcile_status(events(records, verifier=verifier))
    if not status.rows:
        print("no signals yet (`metasup tail signals` shows what arrives)")
    else:
        print_reconciliation(status)
    print(f"(read from the {where})")
    if where.startswith("broker"):
        print_worker_lag(settings)
    return 0


def print_worker_lag(settings: Settings) -> None:
    """Partitions the workers have not committed to the end: normal while they work,
    a problem when the same partition stays behind (docs/ARCHITECTURE.md, "Restarts")."""
    topics = [settings.topic(spec.name) for spec in CATALOGUE]
    lags = asyncio.run(consumer_lag(resolve_bootstrap(settings), settings.group_id, topics))
    if not lags:
        print("workers: no committed offsets yet")
        return
    behind = [lag for lag in lags if lag.lag > 0]
    if not behind:
        print(f"workers: committed to the end of all {len(lags)} partitions they read")
        return
    print(f"workers behind the log on {len(behind)} of {len(lags)} partitions:")
    for lag in behind:
        print(
            f"  {lag.topic}[{lag.partition}]  committed {lag.committed:,}  "
            f"end {lag.end:,}  behind {lag.lag:,}"
        )


def print_reconciliation(status: ReconcileStatus) -> None:
    print(
        f"{'symbol':<8} {'horizon':>7} {'signals':>8} {'pending':>8} {'reconciled':>10} "
        f"{'unreconcilable':>14}  reasons"
    )
    for (symbol, horizon), row in sorted(status.rows.items()):
        reasons = ", ".join(f"{reason}: {n}" for reason, n in row.reasons.most_common())
        print(
            f"{symbol:<8} {horizon:>6}h {row.signals:>8} {row.pending:>8} "
            f"{row.reconciled:>10} {row.unreconcilable:>14}  {reasons}"
        )
    for symbol, watermark in sorted(status.price_watermarks.items()):
        print(f"prices for {symbol} have reached {format_utc(watermark)}")
