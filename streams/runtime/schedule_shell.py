"""The report schedule in Faust: crontab jobs on the leader, and a catch-up timer.

Each crontab line runs its job's period at its time; the timer (once a minute,
METASUP_SCHEDULE_CHECK_S) runs any newest period that is due and was never claimed: a
worker down at 07:10 sends that day's LP email when it is back, once. Both only ask
`ReportDesk.run_due`, which claims the period on the log before doing anything, so a
second leader during a rebalance, a restart, or the crontab and the timer firing together
still send once. A failed run is logged and recorded; it never stops the worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta

import faust

from projections.replay import BrokerSource
from schemas.events import ReportJob
from streams.broker.publisher import Publisher
from streams.core.signing import FactVerifier
from streams.runtime.settings import Settings
from streams.schedule.claims import Trigger
from streams.schedule.jobs import DeskConfig, ReportDesk
from streams.schedule.periods import CRONTABS, EARLY_FIRE_SLACK, JOBS

log = logging.getLogger(__name__)

def desk_config(settings: Settings, verifier: FactVerifier) -> DeskConfig:
    bootstrap = settings.bootstrap_servers()
    return DeskConfig.from_env(
        os.environ,
        bootstrap,
        settings.topic_prefix,
        settings.data_dir,
        verifier,
        open_log=lambda: BrokerSource(bootstrap),
    )


class ScheduledReports:
    def __init__(self, settings: Settings, verifier: FactVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.told: set[str] = set()

    async def run(self, job: ReportJob, trigger: Trigger, slack: timedelta) -> None:
        settings = self.settings
        publisher = Publisher(settings.bootstrap_servers(), settings.topic_prefix)
        try:
            # Read at each run: a bad META_EMAIL_TO is reported here, the worker goes on.
            config = desk_config(settings, self.verifier)
            await publisher.start()
            desk = ReportDesk(config, publisher, log.warning, told=self.told)
            await desk.run_due(job, trigger, slack)
        except Exception:  # a report must never stop the worker; the next tick retries
            log.exception("the %s report run failed", job)
        finally:
            await publisher.stop()

    def on_crontab(self, job: ReportJob) -> Callable[[], Awaitable[None]]:
        async def scheduled() -> None:
            await self.run(job, "schedule", EARLY_FIRE_SLACK)

        scheduled.__name__ = f"report_{job.replace('-', '_')}"
        return scheduled

    async def catch_up(self) -> None:
        for job in JOBS:
            await self.run(job, "catch-up", timedelta(0))


def register_schedules(app: faust.App, settings: Settings, verifier: FactVerifier) -> None:
    if not settings.schedules:
        return
    reports = ScheduledReports(settings, verifier)
    for job in JOBS:
        app.crontab(CRONTABS[job], timezone=UTC, on_leader=True)(reports.on_crontab(job))
    app.timer(settings.schedule_check_s, on_leader=True, name="report_catch_up")(
        reports.catch_up
    )
