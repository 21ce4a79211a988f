"""The supervisor's Ed25519 signatures on governance facts, and the check every reader makes.

Facts on `kills` and `policy` decide who may trade and under which thresholds, and any
Kafka client can append to a topic. So the supervisor signs every fact it writes there
with its private key, and every reader (the processors' inputs, the relays, FleetView,
SDK guards, projections) admits a fact only when its signature verifies with the public
key alone; an unsigned or forged one is bad input, rejected with a reason that says what
to do. Ed25519 signatures are deterministic: a replay that signs the same fact with the
same key gets the same bytes.

The signature covers the canonical bytes of every field but `signature`: orjson with
sorted keys of the JSON-mode dump (times as ISO-8601 UTC with `Z`), the same bytes the
HMAC of an operator command covers, so any client that builds the same JSON can check.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.codec import RejectedRecord, decode_event
from schemas.envelope import Event
from schemas.events import GovernanceFact

F = TypeVar("F", bound=GovernanceFact)

# What a reader tells whoever wrote a bad fact.
_HOW_TO_CHANGE = (
    "only the supervisor writes `kills` and `policy`; operators send signed commands "
    "(`metasup kill|revive|policy set`)"
)


def canonical_bytes(event: Event) -> bytes:
    """Return the bytes a signature covers: every field but `signature`, sorted keys."""
    payload = event.model_dump(mode="json", exclude={"signature"})
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


class FactVerifier:
    """Checks governance facts with the supervisor's public key; other events pass."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self.public_key = public_key

    def problem(self, event: Event) -> str | None:
        """Why `event` must not be believed, or None when it may be (not a governance fact,
        or one whose signature verifies)."""
        if not isinstance(event, GovernanceFact):
            return None
        if not event.signature:
            return (
                f"unsigned {event.type}: governance facts carry the supervisor's Ed25519 "
                f"signature; {_HOW_TO_CHANGE}"
            )
        try:
            self.public_key.verify(bytes.fromhex(event.signature), canonical_bytes(event))
        except (ValueError, InvalidSignature):
            return (
                f"forged {event.type}: its signature does not verify with the supervisor's "
                "public key (written by someone else, changed after signing, or signed with "
                f"another supervisor's key); {_HOW_TO_CHANGE}"
            )
        return None

    def decode(self, raw: bytes | None, expected_types: frozenset[str] | None = None) -> Event:
        """Decode one record value and admit it, or raise RejectedRecord saying why not.

        Every reader decodes through here, so a pure fold only ever sees verified facts.
        """
        event = decode_event(raw, expected_types)
        problem = self.problem(event)
        if problem is not None:
            raise RejectedRecord(problem)
        return event


class FactSigner:
    """Signs the facts the supervisor writes; only where the supervisor runs."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.verifier = FactVerifier(private_key.public_key())

    def sign(self, fact: F) -> F:
        """Return a copy of `fact` carrying the supervisor's signature (hex)."""
        signature = self.private_key.sign(canonical_bytes(fact)).hex()
        return fact.model_copy(update={"signature": signature})
