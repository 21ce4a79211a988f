"""Agent proposals and their fate, folded from `proposals` and `lineage`: proposed by the
IC memo run, then accepted (the child's `agent.spawned` names the proposal) or rejected by
an operator; LLM output refused after its retry is kept with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from schemas.envelope import Event
from schemas.events import AgentProposed, AgentSpawned, ProposalRejected, ProposalsInvalid

ProposalStatus = Literal["proposed", "accepted", "rejected"]


@dataclass(frozen=True)
class ProposalState:
    proposal: AgentProposed
    status: ProposalStatus
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str = ""


@dataclass
class ProposalBook:
    proposals: dict[str, ProposalState] = field(default_factory=dict)
    invalid: list[ProposalsInvalid] = field(default_factory=list)
    # Verdicts can be read before their proposal (topics are merged by receipt time).
    _verdicts: dict[str, AgentSpawned | ProposalRejected] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        if isinstance(event, AgentProposed):
            if event.proposal_id not in self.proposals:
                self.proposals[event.proposal_id] = ProposalState(event, "proposed")
                verdict = self._verdicts.pop(event.proposal_id, None)
                if verdict is not None:
                    self._decide(verdict)
        elif isinstance(event, ProposalsInvalid):
            if all(known.event_id != event.event_id for known in self.invalid):
                self.invalid.append(event)
        elif isinstance(event, AgentSpawned | ProposalRejected) and event.proposal_id:
            self._decide(event)

    def _decide(self, verdict: AgentSpawned | ProposalRejected) -> None:
        assert verdict.proposal_id is not None
        state = self.proposals.get(verdict.proposal_id)
        if state is None:
            self._verdicts.setdefault(verdict.proposal_id, verdict)
            return
        if state.status != "proposed":
            return  # the first verdict stands
        if isinstance(verdict, AgentSpawned):
            self.proposals[verdict.proposal_id] = ProposalState(
                state.proposal, "accepted", verdict.ts, verdict.actor, verdict.reason
            )
        else:
            self.proposals[verdict.proposal_id] = ProposalState(
                state.proposal, "rejected", verdict.ts, verdict.actor, verdict.reason
            )

    def listed(self) -> list[ProposalState]:
        """Newest first, then by id."""
        return sorted(
            self.proposals.values(),
            key=lambda state: (-state.proposal.ts.timestamp(), state.proposal.proposal_id),
        )
