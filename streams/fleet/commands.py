"""Operator commands: HMAC-SHA256 signatures, freshness and replay protection.

Only a command signed with its actor's secret, fresh, and never seen before
becomes a kill fact. The signature covers the canonical bytes of every field
but `signature` itself: orjson with sorted keys of the JSON-mode dump (times
as ISO-8601 UTC with `Z`), so any client that builds the same JSON can sign.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Container, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import Field

from schemas.envelope import UtcDatetime, WireModel, format_utc
from schemas.events import KillFact, KillRequested, OperatorCommand, ReviveRequested
from streams.core.kill_facts import KILL_MODELS, REVIVE_MODELS, kill_fact

Keyring = Mapping[str, bytes]

DEFAULT_MAX_AGE_S = 300.0
# Clocks of operator machines drift; more than this ahead is not drift but forgery or a bug.
MAX_FUTURE_SKEW_S = 30.0

C = TypeVar("C", bound=OperatorCommand)


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


def canonical_bytes(command: OperatorCommand) -> bytes:
    """Return the bytes the signature covers: every field but `signature`, sorted keys."""
    payload = command.model_dump(mode="json", exclude={"signature"})
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def _mac(command: OperatorCommand, secret: bytes) -> str:
    return hmac.new(secret, canonical_bytes(command), hashlib.sha256).hexdigest()


def sign(command: C, secret: bytes) -> C:
    """Return a copy of `command` carrying its HMAC-SHA256 signature (hex)."""
    return command.model_copy(update={"signature": _mac(command, secret)})


def verify(
    command: OperatorCommand,
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
    """Nonces of accepted commands, remembered only while their commands are fresh.

    A nonce older than the freshness window can be forgotten: a replay of its
    command is rejected as stale anyway. `high_water` is the latest `at` seen;
    checks use it when `at` goes backwards, so a forgotten nonce stays dead.
    """

    max_age_s: float = DEFAULT_MAX_AGE_S
    nonces: dict[str, datetime] = Field(default_factory=dict)
    high_water: UtcDatetime | None = None


def _facts_for(command: OperatorCommand) -> list[KillFact] | str:
    if isinstance(command, KillRequested):
        if command.until is not None and command.until <= command.ts:
            return f"until {format_utc(command.until)} is not after the command time"
        model, until = KILL_MODELS[command.target_type], command.until
    elif isinstance(command, ReviveRequested):
        model, until = REVIVE_MODELS[command.target_type], None
    else:
        return f"{command.type!r} is neither kill.requested nor revive.requested"
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


def apply_command(
    gate: CommandGate, command: OperatorCommand, keyring: Keyring, at: datetime
) -> tuple[CommandGate, list[KillFact] | str]:
    """Turn a valid command into its kill or revive fact, or return the rejection reason.

    A rejected command leaves the gate unchanged. The fact's time is the
    command's time (when the operator asked) and its id derives from the
    command's id, so a redelivered command cannot act twice.
    """
    now = at if gate.high_water is None else max(at, gate.high_water)
    rejection = verify(command, keyring, gate.nonces, now, gate.max_age_s)
    facts = _facts_for(command) if rejection is None else rejection
    if isinstance(facts, str):
        return gate, facts
    cutoff = now - timedelta(seconds=gate.max_age_s)
    nonces = {nonce: ts for nonce, ts in gate.nonces.items() if ts >= cutoff}
    nonces[command.nonce] = command.ts
    return gate.model_copy(update={"nonces": nonces, "high_water": now}), facts
