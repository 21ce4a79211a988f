"""Operator commands: HMAC-SHA256 signatures, freshness and replay protection.

Only a command signed with its actor's secret, fresh, and never seen before
becomes a governance fact: a kill or revive on `kills`, a `policy.updated` on
`policy` (the policy in force with the command's partial policy applied, refused
with the bound named when a value is out of bounds), or a proposal's verdict
(`agent.spawned` on `lineage`, `proposal.rejected` on `proposals`). The signature covers the
canonical bytes of every field but `signature` itself (`streams.core.signing`:
orjson with sorted keys of the JSON-mode dump, times as ISO-8601 UTC with `Z`), so
any client that builds the same JSON can sign. The facts made here are signed by
the supervisor's shell with its Ed25519 key before they are written.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Container, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import Field

from schemas.envelope import Event, UtcDatetime, WireModel, derived_event_id, format_utc
from schemas.events import (
    AgentSpawned,
    KillRequested,
    PolicyChangeRequested,
    PolicyUpdated,
    ProposalAcceptRequested,
    ProposalCommand,
    ProposalRejected,
    ReviveRequested,
    SignedCommand,
)
from schemas.policy import Policy, PolicyChangeError, apply_policy_changes
from streams.core.fleet_state import default_policy
from streams.core.kill_facts import KILL_MODELS, PRODUCER, REVIVE_MODELS, kill_fact
from streams.core.signing import canonical_bytes

Keyring = Mapping[str, bytes]

DEFAULT_MAX_AGE_S = 300.0
# Clocks of operator machines drift; more than this ahead is not drift but forgery or a bug.
MAX_FUTURE_SKEW_S = 30.0

C = TypeVar("C", bound=SignedCommand)


def new_key() -> str:
    """Return a fresh 32-byte secret as hex, for `actor:hexsecret` keyrings."""
    return secrets.token_hex(32)


def new_nonce() -> str:
    """Return a random nonce; a command is accepted at most once per nonce."""
    return secrets.token_hex(16)


def _parse_hex(actor: str, value: object) -> bytes:
    if not actor or not isinstance(value, str):
        raise ValueError(f"keyring entry {actor!r} must map an actor name to a hex secret")
    try:
        secret = bytes.fromhex(value.strip())
    except ValueError:
        # Never echo the secret itself into logs or error events.
        raise ValueError(f"keyring secret of actor {actor!r} is not hex") from None
    if not secret:
        raise ValueError(f"keyring secret of actor {actor!r} is empty")
    return secret


def load_keyring(value: str) -> dict[str, bytes]:
    """Read a keyring from `actor:hexsecret,actor2:hexsecret` or a JSON file {actor: hexsecret}.

    A value naming an existing file is read as JSON; anything else is parsed
    as the inline form (what an environment variable holds). Empty means no
    operator can sign.
    """
    value = value.strip()
    if not value:
        return {}
    path = Path(value)
    if path.is_file():
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, dict):
            raise ValueError(f"keyring file {path} must hold a JSON object {{actor: hexsecret}}")
        return {str(actor): _parse_hex(str(actor), hexs) for actor, hexs in data.items()}
    keyring: dict[str, bytes] = {}
    for item in value.split(","):
        actor, sep, hexs = item.strip().partition(":")
        if not sep:
            raise ValueError(f"keyring entry {actor!r} must look like actor:hexsecret")
        keyring[actor.strip()] = _parse_hex(actor.strip(), hexs)
    return keyring


def _mac(command: SignedCommand, secret: bytes) -> str:
    return hmac.new(secret, canonical_bytes(command), hashlib.sha256).hexdigest()


def sign(command: C, secret: bytes) -> C:
    """Return a copy of `command` carrying its HMAC-SHA256 signature (hex)."""
    return command.model_copy(update={"signature": _mac(command, secret)})


def verify(
    command: SignedCommand,
    keyring: Keyring,
    seen_nonces: Container[str],
    at: datetime,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> str | None:
    """Return why the command is rejected, or None when it is valid at `at`.

    The signature is checked before freshness and replay so that an unsigned
    forgery is reported as such, not as stale.
    """
    secret = keyring.get(command.actor)
    if secret is None:
        return f"unknown actor {command.actor!r}: not in the keyring"
    if not command.signature:
        return f"missing signature (actor {command.actor!r})"
    expected = _mac(command, secret).encode()
    # Bytes, not str: compare_digest refuses non-ASCII text, and the signature is untrusted.
    if not hmac.compare_digest(command.signature.lower().encode(), expected):
        return f"bad signature for actor {command.actor!r}"
    age_s = (at - command.ts).total_seconds()
    if age_s > max_age_s:
        return (
            f"stale: command time {format_utc(command.ts)} is {age_s:.0f} s old "
            f"(max {max_age_s:.0f} s)"
        )
    if -age_s > MAX_FUTURE_SKEW_S:
        return (
            f"from the future: command time {format_utc(command.ts)} is {-age_s:.0f} s ahead "
            f"(max {MAX_FUTURE_SKEW_S:.0f} s)"
        )
    if command.nonce in seen_nonces:
        return f"replayed: nonce {command.nonce!r} was already used"
    return None


class CommandGate(WireModel):
    """Nonces of accepted commands, remembered only while their commands are fresh, and the
    last policy the gate appended.

    A nonce older than the freshness window can be forgotten: a replay of its
    command is rejected as stale anyway. `high_water` is the latest `at` seen;
    checks use it when `at` goes backwards, so a forgotten nonce stays dead.
    `policy` is the base of the next change until the caller's read of `policy`
    shows a newer one: two changes in a row never both start from the same base.
    """

    max_age_s: float = DEFAULT_MAX_AGE_S
    nonces: dict[str, datetime] = Field(default_factory=dict)
    high_water: UtcDatetime | None = None
    policy: PolicyUpdated | None = None


def _kill_facts(command: SignedCommand) -> list[Event] | str:
    if isinstance(command, KillRequested):
        if command.until is not None and command.until <= command.ts:
            return f"until {format_utc(command.until)} is not after the command time"
        model, until = KILL_MODELS[command.target_type], command.until
    elif isinstance(command, ReviveRequested):
        model, until = REVIVE_MODELS[command.target_type], None
    else:
        return (
            f"{command.type!r} is not a command the supervisor knows "
            "(kill.requested, revive.requested, policy.change.requested, "
            "proposal.accept.requested, proposal.reject.requested)"
        )
    return [
        kill_fact(
            model,
            target=command.target,
            source="operator",
            at=command.ts,
            causes=(command.event_id,),
            reason=command.reason,
            actor=command.actor,
            until=until,
            cause_id=command.event_id,
        )
    ]


def spawn_event_id(
    parent: str | None, child: str, reason: str, proposal_id: str | None
) -> uuid.UUID:
    """Same spawn, same id: a repeated command (or a proposal accepted twice) is one fact."""
    return derived_event_id("spawned", parent, child, proposal_id or reason)


def _proposal_facts(command: ProposalCommand) -> list[Event]:
    """An accepted proposal becomes the child's lineage fact; a rejected one, its rejection.
    Nothing else a proposal says has any effect: its name, parent and class are data."""
    if isinstance(command, ProposalAcceptRequested):
        why = f"proposal {command.proposal_id} accepted by {command.actor}"
        spawned = AgentSpawned.create(
            event_id=spawn_event_id(command.parent, command.child, why, command.proposal_id),
            ts=command.ts,
            producer=PRODUCER,
            child=command.child,
            parent=command.parent,
            reason=f"{why}: {command.reason}" if command.reason else why,
            proposal_id=command.proposal_id,
            strategy_class=command.strategy_class,
            actor=command.actor,
        )
        return [spawned]
    rejected = ProposalRejected.create(
        event_id=derived_event_id(ProposalRejected.TYPE, command.proposal_id),
        ts=command.ts,
        producer=PRODUCER,
        proposal_id=command.proposal_id,
        name=command.child,
        actor=command.actor,
        reason=command.reason,
        cause_id=command.event_id,
    )
    return [rejected]


def _newest(*changes: PolicyUpdated | None) -> PolicyUpdated | None:
    known = [change for change in changes if change is not None]
    return max(known, key=lambda change: change.ts) if known else None


def _policy_fact(
    command: PolicyChangeRequested, base: PolicyUpdated | None
) -> list[Event] | str:
    """The policy in force (`base`, else the default) with the command's changes applied,
    as the `policy.updated` in force from the command's time."""
    if base is not None and command.ts < base.ts:
        return (
            f"out of order: policy version {base.version} is in force since "
            f"{format_utc(base.ts)}, after this change was asked at {format_utc(command.ts)}; "
            "look at `metasup policy show` and send the change again"
        )
    current = (
        default_policy()
        if base is None
        else Policy.model_validate(base.model_dump(include=set(Policy.model_fields)))
    )
    try:
        updated = apply_policy_changes(current, list(command.changes.items()))
    except PolicyChangeError as error:
        return str(error)
    fact = PolicyUpdated.create(
        event_id=derived_event_id(PolicyUpdated.TYPE, command.event_id),
        ts=command.ts,
        producer=PRODUCER,
        actor=command.actor,
        reason=command.reason,
        cause_id=command.event_id,
        **updated.model_dump(),
    )
    return [fact]


def apply_command(
    gate: CommandGate,
    command: SignedCommand,
    keyring: Keyring,
    at: datetime,
    latest_policy: PolicyUpdated | None = None,
) -> tuple[CommandGate, list[Event] | str]:
    """Turn a valid command into its governance fact, or return the rejection reason.

    A rejected command leaves the gate unchanged. The fact's time is the
    command's time (when the operator asked) and its id derives from the
    command's id, so a redelivered command cannot act twice. `latest_policy` is
    the newest `policy.updated` the caller has read from `policy` (None: none yet);
    a policy change applies to it or to the gate's own last one, whichever is newer.
    """
    now = at if gate.high_water is None else max(at, gate.high_water)
    rejection = verify(command, keyring, gate.nonces, now, gate.max_age_s)
    if rejection is not None:
        return gate, rejection
    facts: list[Event] | str
    if isinstance(command, PolicyChangeRequested):
        facts = _policy_fact(command, _newest(gate.policy, latest_policy))
    elif isinstance(command, ProposalCommand):
        facts = _proposal_facts(command)
    else:
        facts = _kill_facts(command)
    if isinstance(facts, str):
        return gate, facts
    cutoff = now - timedelta(seconds=gate.max_age_s)
    nonces = {nonce: ts for nonce, ts in gate.nonces.items() if ts >= cutoff}
    nonces[command.nonce] = command.ts
    policy = next((f for f in facts if isinstance(f, PolicyUpdated)), gate.policy)
    return gate.model_copy(update={"nonces": nonces, "high_water": now, "policy": policy}), facts
