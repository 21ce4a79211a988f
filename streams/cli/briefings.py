"""`metasup memo`, `metasup email lp|ic|forensics`, `metasup schedule run|status`: the
scheduled reports (SPEC 8) by hand, and what the schedule has done.

Each run is recorded on `reports` before anything is sent, like a scheduled one; a run by
hand has a period of its own, so it never stands in for (or blocks) a scheduled period.
`--dry-run` prints the prompt or the message and calls nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import get_args

from aiokafka.errors import KafkaError

from schemas.clock import utc_now
from schemas.events import ReportJob
from streams.broker.publisher import Publisher
from streams.cli.connection import open_log, resolve_bootstrap
from streams.cli.operator import OperatorError, parse_time
from streams.email.message import ic_memo_email
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import load_verifier
from streams.schedule.jobs import DeskConfig, ReportDesk, logged_ledger, manual_period, preview
from streams.schedule.periods import CRONTABS, JOBS, latest_period

EMAIL_KINDS: dict[str, ReportJob] = {"lp": "lp-email", "ic": "ic-memo", "forensics": "forensics"}


class BadEnvironment(ValueError):
    """An OpenAI or SendGrid variable that cannot be used; the message names it."""


def desk_config(settings: Settings, allow_durable: bool = False) -> DeskConfig:
    try:
        return DeskConfig.from_env(
            os.environ,
            resolve_bootstrap(settings),
            settings.topic_prefix,
            settings.data_dir,
            load_verifier(settings),
            open_log=lambda: open_log(settings, allow_durable),
        )
    except ValueError as error:
        raise BadEnvironment(str(error)) from None


Command = Callable[[argparse.Namespace, Settings], int]


def saying_bad_environment(command: Command) -> Command:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return command(args, settings)
        except BadEnvironment as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return run


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    memo = commands.add_parser(
        "memo",
        help="write the weekly IC memo and agent proposals now (OpenAI), and email it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    memo.add_argument("--dry-run", action="store_true", help="print the prompts; call nothing")
    memo.set_defaults(run=saying_bad_environment(run_memo))

    email = commands.add_parser(
        "email",
        help="send the LP daily email, the newest IC memo or forensics now (SendGrid/outbox)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    email.add_argument("kind", choices=list(EMAIL_KINDS), help="which email")
    email.add_argument("--dry-run", action="store_true", help="print the message; send nothing")
    email.set_defaults(run=saying_bad_environment(run_email))

    schedule = commands.add_parser(
        "schedule",
        help="the report schedule: run what is due (once per period), or show what ran",
        description=(
            "run: each job's newest due period, unless it was claimed already (what the\n"
            "workers' crontab does; running it twice sends once). status: per job, its\n"
            "schedule, newest period and what became of it.\n\n"
            + "\n".join(f"  {job:<10} {cron} (UTC)" for job, cron in CRONTABS.items())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schedule.add_argument("action", choices=["run", "status"])
    schedule.add_argument("--job", choices=list(get_args(ReportJob)), help="only this job")
    schedule.add_argument(
        "--at", metavar="TIME", help="as if it were TIME (ISO-8601 with timezone); default now"
    )
    schedule.set_defaults(run=saying_bad_environment(run_schedule))


def _run_desk(
    settings: Settings, work: Callable[[ReportDesk], Awaitable[bool]], now: datetime | None = None
) -> int:
    config = desk_config(settings)

    async def main() -> bool:
        publisher = Publisher(config.bootstrap, config.prefix)
        try:
            await publisher.start()
            desk = ReportDesk(config, publisher, print, (lambda: now) if now else utc_now)
            return await work(desk) and not desk.failures
        finally:
            await publisher.stop()

    try:
        return 0 if asyncio.run(main()) else 1
    except (KafkaError, OSError) as error:
        # Every run is recorded on the log first: without the broker, nothing is sent.
        print(
            f"error: cannot reach the broker at {config.bootstrap} ({error}); nothing was "
            "sent. Start the stack (`metasup up`), or use --dry-run to see the message",
            file=sys.stderr,
        )
        return 1


def run_memo(args: argparse.Namespace, settings: Settings) -> int:
    if args.dry_run:
        print(preview(desk_config(settings, allow_durable=True), "ic-memo", utc_now()), end="")
        return 0
    return _run_desk(settings, lambda desk: desk.run_manual("ic-memo"))


def run_email(args: argparse.Namespace, settings: Settings) -> int:
    job = EMAIL_KINDS[args.kind]
    if args.dry_run:
        config = desk_config(settings, allow_durable=True)
        print(_memo_email_preview(config) if job == "ic-memo" else preview(config, job, utc_now()))
        return 0
    if job == "ic-memo":
        return _run_desk(settings, lambda desk: desk.email_memo())
    return _run_desk(settings, lambda desk: desk.run_manual(job))


def _memo_email_preview(config: DeskConfig) -> str:
    memo = logged_ledger(config).latest_memo()
    if memo is None:
        return "no IC memo on the log yet: write one with `metasup memo`"
    email = ic_memo_email(
        manual_period("ic-memo", utc_now()).message_id, memo.markdown, config.email.ic_subject
    )
    to = ", ".join(config.email.recipients) or "(no META_EMAIL_TO: would go to the outbox)"
    return f"From: {config.email.sender}\nTo: {to}\nSubject: {email.subject}\n\n{email.text}"


def run_schedule(args: argparse.Namespace, settings: Settings) -> int:
    try:
        now = parse_time(args.at) if args.at else utc_now()
    except OperatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    jobs = [args.job] if args.job else list(JOBS)
    if args.action == "status":
        return _status(settings, jobs, now)

    async def run_all(desk: ReportDesk) -> bool:
        for job in jobs:
            if not await desk.run_due(job, "schedule"):
                period = latest_period(job, now)
                print(f"{period.message_id}: nothing to do (already run, or cannot run now)")
        return True

    return _run_desk(settings, run_all, now)


def _status(settings: Settings, jobs: list[ReportJob], now: datetime) -> int:
    ledger = logged_ledger(desk_config(settings, allow_durable=True))
    for job in jobs:
        period = latest_period(job, now)
        print(
            f"{job:<10} {CRONTABS[job]:<11} newest period {period.key} "
            f"(due {period.due_at:%Y-%m-%d %H:%M} UTC): {ledger.status(job, period.key)}"
        )
    runs = sorted(ledger.claims.values(), key=lambda claim: claim.ts)[-10:]
    if runs:
        print("\nlatest runs:")
        for claim in runs:
            print(
                f"  {claim.ts:%Y-%m-%d %H:%M:%S} {claim.job}-{claim.period}: "
                f"{ledger.status(claim.job, claim.period)}"
            )
    return 0
