"""When each scheduled report is due, and the period a due time belongs to (pure).

A period is what is sent once: the IC memo of an ISO week, the LP email or forensics of a
UTC day. Its claim id derives from (job, period), the same in every process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, get_args

from croniter import croniter

from schemas.envelope import derived_event_id, to_utc
from schemas.events import ReportClaimed, ReportJob

JOBS: Final[tuple[ReportJob, ...]] = get_args(ReportJob)

# Crontab lines (UTC): Sunday 12:00 the memo, 07:10 the LP email, 08:30 forensics.
CRONTABS: Final[dict[ReportJob, str]] = {
    "ic-memo": "0 12 * * 0",
    "lp-email": "10 7 * * *",
    "forensics": "30 8 * * *",
}

# A timer can wake a little before the time it was set for (clock resolution, wall clock
# against monotonic clock): a crontab run at 07:09:59.999 still means 07:10's period.
EARLY_FIRE_SLACK: Final = timedelta(seconds=2)


@dataclass(frozen=True)
class Period:
    job: ReportJob
    key: str  # "2026-W48" for the weekly memo, "2026-12-03" for a daily report
    due_at: datetime

    @property
    def claim_id(self) -> uuid.UUID:
        return derived_event_id(ReportClaimed.TYPE, self.job, self.key)

    @property
    def message_id(self) -> str:
        """The id of what this period sends: outbox file name, header, SendGrid custom arg."""
        return f"{self.job}-{self.key}"


def period_key(job: ReportJob, due_at: datetime) -> str:
    if job == "ic-memo":
        iso = due_at.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return due_at.date().isoformat()


def latest_period(job: ReportJob, now: datetime) -> Period:
    """The newest period of `job` due at or before `now`."""
    if job not in CRONTABS:
        raise ValueError(f"unknown report job {job!r}; known: {', '.join(JOBS)}")
    # croniter's previous fire is strictly before its start: step past `now` by a hair.
    start = to_utc(now) + timedelta(microseconds=1)
    due = croniter(CRONTABS[job], start).get_prev(datetime).astimezone(UTC)
    return Period(job, period_key(job, due), due)
