"""New agents proposed by the LLM (SPEC section 8): asked for as strict JSON, validated by
pydantic and by the fleet's naming rules, and rejected, never executed, when invalid. A
rejected answer gets one retry that shows the model its errors; a second failure is final,
so a confused model costs at most two calls."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import Field, ValidationError

from schemas.envelope import WireModel
from schemas.events import AgentProposal
from streams.llm.chat import ChatResult, Messages
from streams.llm.memo import DATA_DISCIPLINE, data_block

MIN_PROPOSALS = 3
MAX_PROPOSALS = 8
# A name keys tables, topics' records and file names: no spaces, no markup, no path tricks.
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ProposalBatch(WireModel):
    proposals: list[AgentProposal] = Field(min_length=MIN_PROPOSALS, max_length=MAX_PROPOSALS)


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _texts(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """Strict structured output wants every property required and no others allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# Lengths and counts are in the descriptions, not in minLength/minItems, which strict mode
# has not accepted on every model; pydantic enforces them on the answer either way.
_PROPOSAL_SCHEMA = _strict_object(
    {
        "name": _text(
            "New agent name: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter "
            "or digit; not the name of an existing agent"
        ),
        "strategy_class": _text("Strategy family, e.g. an existing strategy_class"),
        "regime_trigger": _text(
            "Market regime or condition in which it trades (RISK_OFF, HIGH_VOL, MIXED, RISK_ON)"
        ),
        "thesis": _text("Why it should have an edge, in one or two sentences"),
        "data_sources": _texts("At least one data source it reads"),
        "signals": _texts("At least one signal it computes"),
        "eval_plan": _strict_object(
            {
                "offline": _texts("At least one offline evaluation (backtest) step"),
                "live_shadow": _texts("At least one live shadow-trading check"),
            }
        ),
        "risk_controls": _texts("At least one risk control"),
        "expected_edge": _text("Expected edge, e.g. '+12 bps per trade at 24h'"),
        "parent_agent": {
            "type": ["string", "null"],
            "description": "The existing agent it derives from, or null for a new line",
        },
    }
)
PROPOSAL_JSON_SCHEMA: dict[str, Any] = _strict_object(
    {
        "proposals": {
            "type": "array",
            "items": _PROPOSAL_SCHEMA,
            "description": f"{MIN_PROPOSALS} to {MAX_PROPOSALS} new agents",
        }
    }
)


def proposal_messages(facts: dict[str, Any]) -> Messages:
    """`facts` are the memo's (`memo.memo_facts`): the fleet as the committee sees it."""
    system = (
        "You design new trading agents for a supervised fleet of LLM trading agents. Propose "
        f"{MIN_PROPOSALS} to {MAX_PROPOSALS} new agents that would complement the fleet: "
        "cover regimes or strategy classes it lacks, or improve on its best agents. Answer "
        "with the JSON object the response schema describes and nothing else. Every list "
        "has at least one item. A name is 1 to 64 characters of A-Z a-z 0-9 . _ -, starts "
        "with a letter or digit, is unique in the batch and is none of the existing agent "
        "names (facts.agent_names). parent_agent is one of facts.agent_names, or null.\n"
        f"{DATA_DISCIPLINE}"
    )
    user = (
        f"The fleet ('facts'):\n{data_block({'facts': facts})}\n"
        f"Propose {MIN_PROPOSALS} to {MAX_PROPOSALS} new agents."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _quoted(name: str) -> str:
    """A name as a JSON string with no '<' or '>': errors are shown to the model too."""
    return orjson.dumps(name).decode().replace("<", "\\u003c").replace(">", "\\u003e")


def _field_path(location: tuple[int | str, ...]) -> str:
    """pydantic's location as the model wrote it: proposals[2].eval_plan.offline."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(the whole answer)"


def _naming_errors(batch: ProposalBatch, existing: Collection[str]) -> list[str]:
    errors = []
    first_at: dict[str, int] = {}
    for i, proposal in enumerate(batch.proposals):
        where, name = f"proposals[{i}]", _quoted(proposal.name)
        if not AGENT_NAME.fullmatch(proposal.name):
            errors.append(
                f"{where}.name {name}: use 1 to 64 of A-Z a-z 0-9 . _ -, "
                "starting with a letter or digit"
            )
        if proposal.name in first_at:
            errors.append(
                f"{where}.name {name}: already proposed at proposals[{first_at[proposal.name]}]"
            )
        first_at.setdefault(proposal.name, i)
        if proposal.name in existing:
            errors.append(f"{where}.name {name}: an existing agent has this name")
        parent = proposal.parent_agent
        if parent is not None and parent not in existing:
            errors.append(
                f"{where}.parent_agent {_quoted(parent)}: not an existing agent (use one of "
                "facts.agent_names, or null)"
            )
    return errors


def validate_batch(text: str, existing_agents: Collection[str]) -> ProposalBatch | list[str]:
    """The batch, or every reason it is refused (as many as can be found at once, so that
    one retry can fix them all)."""
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return [f"not JSON: {error}"]
    try:
        batch = ProposalBatch.model_validate(payload)
    except ValidationError as error:
        return [f"{_field_path(issue['loc'])}: {issue['msg']}" for issue in error.errors()]
    errors = _naming_errors(batch, set(existing_agents))
    return errors or batch


@dataclass(frozen=True)
class ProposalOutcome:
    batch: ProposalBatch | None
    reason: str | None  # why the batch was rejected, when it was
    attempts: int
    results: list[ChatResult]  # every call, for the cost and token accounting
    raw: str  # the last answer, as the model gave it


def _retry_request(errors: list[str]) -> str:
    listed = "\n".join(f"- {error}" for error in errors)
    return (
        f"Your answer was rejected:\n{listed}\n"
        "Answer again with the whole corrected JSON object and nothing else."
    )


def propose(
    chat: Callable[[Messages], ChatResult],
    facts: dict[str, Any],
    existing_agents: Collection[str],
) -> ProposalOutcome:
    """`chat` is `chat.complete` bound to the settings, model and PROPOSAL_JSON_SCHEMA; its
    LlmFailed propagates: a failed call is not a rejected answer."""
    messages = proposal_messages(facts)
    first = chat(messages)
    verdict = validate_batch(first.text, existing_agents)
    if isinstance(verdict, ProposalBatch):
        return ProposalOutcome(verdict, None, 1, [first], first.text)
    retry = [
        *messages,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": _retry_request(verdict)},
    ]
    second = chat(retry)
    retried = validate_batch(second.text, existing_agents)
    if isinstance(retried, ProposalBatch):
        return ProposalOutcome(retried, None, 2, [first, second], second.text)
    # Both answers' faults: the first is often the telling one (the retry may just break).
    reason = f"after the retry: {'; '.join(retried)} (first answer: {'; '.join(verdict)})"
    return ProposalOutcome(None, reason, 2, [first, second], second.text)
