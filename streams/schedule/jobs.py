"""The scheduled reports' runs: build from the log, call out, record each step on the log.

Order within a run is what makes it safe to repeat: the claim first (`claims`), then each
side effect, each followed by the event that records it (`memo.written`,
`agent.proposed` / `proposals.invalid`, `email.dispatched`). Nothing here runs on
replay: a replay reads these events, it never makes them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from projections.deliveries import ReportsLedger
from projections.fleet import REPORT_TOPICS, FleetProjection
from projections.replay import AsOf, LogSource, Replay
from projections.reports.forensics import forensics_markdown, forensics_report
from projections.reports.lp_email import lp_email
from projections.reports.meta import MetaReport, replayed_report
from schemas.clock import utc_now
from schemas.envelope import Event, derived_event_id
from schemas.events import (
    AgentProposed,
    EmailDispatched,
    MemoWritten,
    ProposalsInvalid,
    ReportJob,
    RunCompleted,
)
from streams.broker.publisher import Publisher
from streams.core.signing import FactVerifier
from streams.email.config import EmailSettings
from streams.email.message import OutgoingEmail, forensics_email, ic_memo_email, lp_email_message
from streams.email.send import deliver
from streams.llm.chat import ChatResult, LlmFailed, Messages, complete, prompt_sha256
from streams.llm.config import LlmSettings
from streams.llm.memo import memo_facts, memo_markdown_ok, memo_messages, what_changed
from streams.llm.proposals import PROPOSAL_JSON_SCHEMA, proposal_messages, propose
from streams.schedule.claims import (
    PRODUCER,
    Claim,
    Trigger,
    claim,
    fold_ledger,
    read_ledger,
)
from streams.schedule.periods import Period, latest_period

# The memo's own LLM runs are reported like any agent's, under this name.
MEMO_AGENT = "meta.ic-memo"
# A report leaves out the last seconds of the log (see `metasup report --settle`).
SETTLE = timedelta(seconds=5)


@dataclass(frozen=True)
class DeskConfig:
    bootstrap: str
    prefix: str
    data_dir: Path
    verifier: FactVerifier
    llm: LlmSettings
    email: EmailSettings
    # Where a report reads the log from (the broker; a dry run may use the durable log).
    open_log: Callable[[], LogSource]

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        bootstrap: str,
        prefix: str,
        data_dir: Path,
        verifier: FactVerifier,
        open_log: Callable[[], LogSource],
    ) -> DeskConfig:
        """OpenAI and SendGrid from the environment (ValueError naming a bad variable)."""
        return cls(
            bootstrap,
            prefix,
            data_dir,
            verifier,
            LlmSettings.from_env(env),
            EmailSettings.from_env(env),
            open_log,
        )

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def outbox(self) -> Path:
        return self.reports_dir / "outbox"


def build_report(config: DeskConfig, now: datetime) -> tuple[FleetProjection, MetaReport]:
    """The fleet as the log had it `SETTLE` before `now` (blocking: run it in a thread)."""
    with closing(config.open_log()) as source:
        topics = [f"{config.prefix}{name}" for name in REPORT_TOPICS]
        replay = Replay(source, topics, AsOf(received_until=now - SETTLE), progress=False)
        return replayed_report(replay, config.verifier, config.prefix)


def logged_ledger(config: DeskConfig) -> ReportsLedger:
    """`reports` read through the config's log source (a dry run may have no broker)."""
    with closing(config.open_log()) as source:
        return fold_ledger(
            Replay(source, [f"{config.prefix}reports"], progress=False), config.verifier
        )


def manual_period(job: ReportJob, now: datetime) -> Period:
    """A run asked for by hand has a period of its own: it never takes a scheduled one."""
    return Period(job, f"manual-{now:%Y%m%dT%H%M%SZ}", now)


def render_messages(messages: Messages) -> str:
    return "\n\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages)


class ReportDesk:
    """Runs report periods against one broker; `say` tells a person what happened.

    `clock` says which period is due (`metasup schedule run --at`, tests crossing a period
    boundary); what is recorded is stamped with the wall clock, as any source event."""

    def __init__(
        self,
        config: DeskConfig,
        publisher: Publisher,
        say: Callable[[str], None],
        clock: Callable[[], datetime] = utc_now,
        told: set[str] | None = None,
    ) -> None:
        self.config = config
        self.publisher = publisher
        self.say = say
        self.clock = clock
        # Periods already said to be blocked: said once, not at every check (shared by the
        # desks a worker makes, one per run).
        self.told = told if told is not None else set()
        # What went wrong in this desk's runs (each also recorded on the log): a command
        # run by hand exits non-zero when there is any.
        self.failures: list[str] = []

    # --- which period, and whether this process runs it ----------------------------------

    async def run_due(
        self, job: ReportJob, trigger: Trigger, slack: timedelta = timedelta(0)
    ) -> bool:
        """Run the newest due period of `job` unless it was claimed; True if this ran it."""
        period = latest_period(job, self.clock() + slack)
        config = self.config
        ledger = await read_ledger(config.bootstrap, config.prefix, config.verifier)
        if ledger.winner(job, period.key) is not None:
            return False
        blocked = self.blocked(job)
        if blocked is not None:
            if period.message_id not in self.told:
                self.told.add(period.message_id)
                self.say(f"{period.message_id} not run: {blocked}")
            return False
        return await self._claim_and_run(period, trigger)

    async def run_manual(self, job: ReportJob) -> bool:
        blocked = self.blocked(job)
        if blocked is not None:
            self.say(f"{job} not run: {blocked}")
            return False
        return await self._claim_and_run(manual_period(job, self.clock()), "manual")

    async def email_memo(self) -> bool:
        """Send the newest memo by hand (`metasup email ic`), without writing a new one."""
        config = self.config
        memo = (await read_ledger(config.bootstrap, config.prefix, config.verifier)).latest_memo()
        if memo is None:
            self.say("no IC memo on the log yet: write one with `metasup memo`")
            return False
        period = manual_period("ic-memo", self.clock())
        result = await self._claim(period, "manual")
        email = ic_memo_email(period.message_id, memo.markdown, config.email.ic_subject)
        await self._send(period, result.winner.event_id, email)
        return True

    def blocked(self, job: ReportJob) -> str | None:
        """Why `job` cannot run at all now (it is then not claimed, so it runs once it can)."""
        if job == "ic-memo" and not self.config.llm.api_key:
            return "no OpenAI key (set OPENAI_API_KEY or AI_INTEGRATIONS_OPENAI_API_KEY)"
        return None

    async def _claim(self, period: Period, trigger: Trigger) -> Claim:
        config = self.config
        return await claim(
            self.publisher,
            config.bootstrap,
            config.prefix,
            config.verifier,
            period,
            trigger,
            utc_now(),
        )

    async def _claim_and_run(self, period: Period, trigger: Trigger) -> bool:
        result = await self._claim(period, trigger)
        if not result.won:
            self.say(f"{period.message_id}: claimed first by {result.winner.claimant[:8]}")
            return False
        await self.run(period, result.winner.event_id)
        return True

    # --- the runs -------------------------------------------------------------------------

    async def run(self, period: Period, claim_id: uuid.UUID) -> None:
        projection, report = await asyncio.to_thread(build_report, self.config, utc_now())
        if period.job == "ic-memo":
            await self._memo(period, claim_id, projection, report)
        elif period.job == "lp-email":
            await self._send(
                period, claim_id, lp_email_message(period.message_id, lp_email(report))
            )
        else:
            forensics = forensics_report(projection)
            self._save(period, "md", forensics_markdown(forensics))
            await self._send(period, claim_id, forensics_email(period.message_id, forensics))

    async def _memo(
        self, period: Period, claim_id: uuid.UUID, projection: FleetProjection, report: MetaReport
    ) -> None:
        config = self.config
        ledger = await read_ledger(config.bootstrap, config.prefix, config.verifier)
        previous = ledger.latest_memo()
        facts = memo_facts(report)
        messages = memo_messages(facts, what_changed(previous.facts if previous else None, facts))
        # The memo's LLM runs are stamped in the fleet's own time (the report's clock, near
        # now in production): a run stamped by the wall clock would move a replayed desk's
        # windows (the demo's event times are 2019) years ahead.
        at = report.meta.event_time or utc_now()
        try:
            result = await asyncio.to_thread(
                complete, config.llm, messages, model=config.llm.memo_model
            )
        except LlmFailed as error:
            await self._record_llm_run(period, at, None, errors=1)
            self.failures.append(f"{period.message_id}: the memo was not written: {error}")
            self.say(self.failures[-1])
            return
        path = self._save(period, "md", result.text)
        memo = MemoWritten.create(
            event_id=derived_event_id(MemoWritten.TYPE, claim_id),
            ts=utc_now(),
            producer=PRODUCER,
            period=period.key,
            claim_id=claim_id,
            path=str(path.relative_to(config.data_dir)),
            markdown=result.text,
            prompt_sha256=prompt_sha256(messages),
            model=result.model,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
            facts=orjson.loads(orjson.dumps(facts)),
            missing_sections=memo_markdown_ok(result.text),
        )
        await self.publisher.publish(memo)
        if memo.missing_sections:
            self.say(f"{period.message_id}: the memo lacks {', '.join(memo.missing_sections)}")
        await self._record_llm_run(period, at, result)
        self.say(f"{period.message_id}: memo written to {path} ({_usage(result)})")
        await self._proposals(period, claim_id, facts, projection.agents(), at)
        await self._send(
            period, claim_id, ic_memo_email(period.message_id, result.text, config.email.ic_subject)
        )

    async def _proposals(
        self,
        period: Period,
        claim_id: uuid.UUID,
        facts: dict[str, object],
        agents: list[str],
        at: datetime,
    ) -> None:
        config = self.config

        def chat(messages: Messages) -> ChatResult:
            return complete(
                config.llm,
                messages,
                model=config.llm.proposal_model,
                json_schema=PROPOSAL_JSON_SCHEMA,
                schema_name="agent_proposals",
            )

        try:
            outcome = await asyncio.to_thread(propose, chat, facts, agents)
        except LlmFailed as error:
            await self._publish_invalid(period, claim_id, f"the LLM call failed: {error}", 1, "")
            return
        for number, result in enumerate(outcome.results):
            await self._record_llm_run(period, at, result, attempt=number + 1)
        if outcome.batch is None:
            reason = outcome.reason or "invalid output"
            await self._publish_invalid(period, claim_id, reason, outcome.attempts, outcome.raw)
            return
        for number, proposal in enumerate(outcome.batch.proposals, start=1):
            proposal_id = f"{period.key}-{number}"
            await self.publisher.publish(
                AgentProposed.create(
                    event_id=derived_event_id(AgentProposed.TYPE, claim_id, number),
                    ts=utc_now(),
                    producer=PRODUCER,
                    proposal_id=proposal_id,
                    **proposal.model_dump(),
                )
            )
        self.say(
            f"{period.message_id}: {len(outcome.batch.proposals)} agent proposals "
            f"({period.key}-1 ...); see `metasup proposals list`"
        )

    async def _publish_invalid(
        self, period: Period, claim_id: uuid.UUID, reason: str, attempts: int, raw: str
    ) -> None:
        await self.publisher.publish(
            ProposalsInvalid.create(
                event_id=derived_event_id(ProposalsInvalid.TYPE, claim_id),
                ts=utc_now(),
                producer=PRODUCER,
                period=period.key,
                model=self.config.llm.proposal_model,
                reason=reason[:4000],
                attempts=attempts,
                output=raw[:16_000],
            )
        )
        self.say(f"{period.message_id}: proposals rejected: {reason[:300]}")

    async def _record_llm_run(
        self,
        period: Period,
        at: datetime,
        result: ChatResult | None,
        errors: int = 0,
        attempt: int = 0,
    ) -> None:
        """The memo's LLM spend as an agent run at `at`, so it is reported like any agent's."""
        run_id = derived_event_id("llm-run", period.job, period.key, attempt, errors)
        latency_ms = result.latency_ms if result else 0
        await self.publisher.publish(
            RunCompleted.create(
                event_id=derived_event_id(RunCompleted.TYPE, run_id),
                ts=at,
                producer=PRODUCER,
                agent=MEMO_AGENT,
                run_id=run_id,
                started_at=at - timedelta(milliseconds=latency_ms),
                latency_ms=latency_ms,
                tokens_in=result.tokens_in if result else 0,
                tokens_out=result.tokens_out if result else 0,
                cost_usd=(result.cost_usd or 0.0) if result else 0.0,
                errors=errors,
            )
        )

    def _save(self, period: Period, suffix: str, text: str) -> Path:
        directory = self.config.reports_dir
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{period.message_id}.{suffix}"
        partial = path.with_suffix(f".{suffix}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        return path

    async def _send(self, period: Period, claim_id: uuid.UUID, email: OutgoingEmail) -> None:
        settings = self.config.email
        delivery = await asyncio.to_thread(deliver, email, settings, self.config.outbox)
        event: Event = EmailDispatched.create(
            event_id=derived_event_id(EmailDispatched.TYPE, claim_id, email.message_id),
            ts=utc_now(),
            producer=PRODUCER,
            job=period.job,
            period=period.key,
            claim_id=claim_id,
            message_id=email.message_id,
            subject=email.subject,
            recipients=list(settings.recipients),
            status=delivery.status,
            attempts=delivery.attempts,
            detail=delivery.detail,
            outbox_path=str(delivery.outbox_path) if delivery.outbox_path else None,
            provider_id=delivery.provider_id,
        )
        await self.publisher.publish(event)
        self.say(f"{period.message_id}: email {delivery.status}: {delivery.detail}")
        if delivery.status == "failed":
            self.failures.append(f"{period.message_id}: the email was not sent")


def _usage(result: ChatResult) -> str:
    cost = f"${result.cost_usd:.4f}" if result.cost_usd is not None else "cost unknown"
    return f"{result.model}, {result.tokens_in}+{result.tokens_out} tokens, {cost}"


def preview(config: DeskConfig, job: ReportJob, now: datetime) -> str:
    """What a run would send or ask, without calling out or recording anything."""
    projection, report = build_report(config, now)
    if job == "ic-memo":
        previous = logged_ledger(config).latest_memo()
        facts = memo_facts(report)
        memo = memo_messages(facts, what_changed(previous.facts if previous else None, facts))
        return (
            f"# IC memo prompt (model {config.llm.memo_model})\n{render_messages(memo)}\n\n"
            f"# proposals prompt (model {config.llm.proposal_model})\n"
            f"{render_messages(proposal_messages(facts))}\n"
        )
    period = manual_period(job, now)
    email = (
        lp_email_message(period.message_id, lp_email(report))
        if job == "lp-email"
        else forensics_email(period.message_id, forensics_report(projection))
    )
    to = ", ".join(config.email.recipients) or "(no META_EMAIL_TO: would go to the outbox)"
    return (
        f"From: {config.email.sender}\nTo: {to}\nSubject: {email.subject}\n\n{email.text}\n"
        f"--- HTML part: {len(email.html):,} characters ---\n"
    )
