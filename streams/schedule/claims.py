"""A period runs once: its claim is on the log before anything is sent, and the first claim
in the log wins.

Two workers that both think they lead (a rebalance), a restart, the crontab and the
catch-up timer firing together: each writes its claim (same id, its own claimant), waits
until the broker has it, then reads `reports` back. The log is one total order, so all of
them see the same first claim, and only its claimant goes on. A period whose claim exists
is never run again; one whose run crashed after its claim stays unsent (at most once:
`metasup schedule status` shows it, and `metasup email` sends it by hand).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from projections.deliveries import ReportsLedger
from projections.log import LogRecord, merged_by_receipt, read_broker
from schemas.codec import RejectedRecord
from schemas.events import ReportClaimed
from schemas.topics import topic
from streams.broker.publisher import Publisher
from streams.core.admission import admitted
from streams.core.signing import FactVerifier
from streams.schedule.periods import Period

PRODUCER = "metasup.schedule"
Trigger = str  # "schedule" | "catch-up" | "manual" (ReportClaimed.trigger)


def fold_ledger(records: Iterable[LogRecord], verifier: FactVerifier) -> ReportsLedger:
    """`reports` records, in log order, as every worker admits them."""
    spec = topic("reports")
    ledger = ReportsLedger()
    for record in records:
        try:
            ledger.apply(admitted(verifier, record.value, spec.types, record.received_at))
        except RejectedRecord:
            continue  # in deadletter already, through the intake
    return ledger


async def read_ledger(bootstrap: str, prefix: str, verifier: FactVerifier) -> ReportsLedger:
    """The whole of `reports` from the broker (small: a few records a day)."""
    records = await read_broker(bootstrap, [f"{prefix}reports"])
    return fold_ledger(merged_by_receipt(records), verifier)


@dataclass(frozen=True)
class Claim:
    won: bool
    winner: ReportClaimed


def claim_event(period: Period, trigger: Trigger, now: datetime) -> ReportClaimed:
    return ReportClaimed.create(
        event_id=period.claim_id,
        ts=now,
        producer=PRODUCER,
        job=period.job,
        period=period.key,
        due_at=period.due_at,
        claimant=uuid.uuid4().hex,
        trigger=trigger,
    )


async def claim(
    publisher: Publisher,
    bootstrap: str,
    prefix: str,
    verifier: FactVerifier,
    period: Period,
    trigger: Trigger,
    now: datetime,
) -> Claim:
    """Write our claim, then read who was first."""
    mine = claim_event(period, trigger, now)
    await publisher.publish(mine)  # acknowledged: the broker has it, readers will see it
    ledger = await read_ledger(bootstrap, prefix, verifier)
    winner = ledger.winner(period.job, period.key)
    if winner is None:  # cannot happen on a broker that keeps what it acknowledged
        raise RuntimeError(f"the claim of {period.message_id} is not on `reports` after its ack")
    return Claim(winner.claimant == mine.claimant, winner)
