"""`metasup status`: reconciliation progress per symbol and horizon, from the log."""

from __future__ import annotations

import argparse

from projections.log import events, merged_by_receipt
from projections.reconcile_status import STATUS_TOPICS, reconcile_status
from schemas.envelope import format_utc
from streams.cli.connection import read_log
from streams.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status", help="reconciliation progress: pending / reconciled / unreconcilable"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    records, where = read_log(settings, STATUS_TOPICS)
    status = reconcile_status(events(merged_by_receipt(records)))
    if not status.rows:
        print("no signals yet (`metasup tail signals` shows what arrives)")
        return 0
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
    print(f"(read from the {where})")
    return 0
