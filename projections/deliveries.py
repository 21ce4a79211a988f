"""The `reports` topic folded: which report periods are claimed, by whom first, and what
became of each (memos written, emails dispatched).

The first claim of a (job, period) in the log is the one that runs: the log is one total
order, so every reader, and every worker racing for the same period, agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.envelope import Event
from schemas.events import EmailDispatched, MemoWritten, ReportClaimed

PeriodKey = tuple[str, str]  # (job, period)


@dataclass
class ReportsLedger:
    claims: dict[PeriodKey, ReportClaimed] = field(default_factory=dict)
    memos: dict[PeriodKey, MemoWritten] = field(default_factory=dict)
    dispatches: dict[PeriodKey, list[EmailDispatched]] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        if isinstance(event, ReportClaimed):
            self.claims.setdefault((event.job, event.period), event)
        elif isinstance(event, MemoWritten):
            self.memos.setdefault((event.job, event.period), event)
        elif isinstance(event, EmailDispatched):
            sent = self.dispatches.setdefault((event.job, event.period), [])
            if all(known.event_id != event.event_id for known in sent):
                sent.append(event)

    def winner(self, job: str, period: str) -> ReportClaimed | None:
        return self.claims.get((job, period))

    def latest_memo(self) -> MemoWritten | None:
        """The newest memo written: what the next one says has changed since."""
        return max(self.memos.values(), key=lambda memo: memo.ts, default=None)

    def status(self, job: str, period: str) -> str:
        """One line a person reads: claimed or not, by whom, and the outcome."""
        claim = self.claims.get((job, period))
        if claim is None:
            return "not run"
        outcomes = self.dispatches.get((job, period), [])
        if not outcomes:
            what = "memo written, " if (job, period) in self.memos else ""
            return f"claimed ({claim.trigger}); {what}no email outcome recorded"
        last = outcomes[-1]
        return f"claimed ({claim.trigger}); email {last.status}: {last.detail}"
