"""What `bench.chaos` sends: a fleet on real prices, operators' signed commands, and bad input
of every kind the intakes must refuse, each with the words its rejection must contain.

Good records are events (they are sent twice, and checked against a recomputation);
bad records are raw bytes (sent once each, and looked up in `deadletter` by position).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.pipeline import fleet
from schemas.codec import MAX_RECORD_BYTES, encode_event
from schemas.envelope import Event, format_utc
from schemas.events import (
    AgentKilled,
    AgentRevived,
    KillRequested,
    PolicyChangeRequested,
    PolicyUpdated,
    PriceObserved,
    RegimeChanged,
    ReviveRequested,
    SignedCommand,
)
from schemas.topics import key_for, topic_for
from streams.core.fleet_state import default_policy
from streams.core.signing import FactSigner
from streams.fleet.commands import new_nonce, sign

ACTOR = "chaos-operator"
KILLED_BY_OPERATOR = "agent-01"


@dataclass(frozen=True)
class Outgoing:
    """One record to send; `kind` names the bad input it is (empty for a good record)."""

    topic: str
    key: bytes
    value: bytes | None
    kind: str = ""
    expected_reason: str = ""


def good(event: Event) -> Outgoing:
    spec = topic_for(event)
    return Outgoing(spec.name, key_for(event, spec), encode_event(event))


def fleet_stream(agents: int, days: int, seed: int) -> list[Event]:
    """Hourly real BTC prices, and each agent's hourly run and signal, in event-time order,
    between an opening regime and a regime change halfway."""
    stream, _ = fleet(days, agents, 0, seed)
    start, middle = stream[0].ts, stream[len(stream) // 2].ts
    opening = RegimeChanged.create(ts=start - timedelta(days=1), producer="chaos", regime="RISK_ON")
    change = RegimeChanged.create(ts=middle, producer="chaos", regime="HIGH_VOL")
    half = len(stream) // 2
    return [opening, *stream[:half], change, *stream[half:]]


def _command(model: type[SignedCommand], at: datetime, **fields: Any) -> SignedCommand:
    return model.create(ts=at, producer="chaos", actor=ACTOR, nonce=new_nonce(), **fields)


def valid_commands(at: datetime, secret: bytes) -> list[SignedCommand]:
    """An operator kill, a revive and a policy change, signed and fresh at `at`."""
    return [
        sign(
            _command(
                KillRequested,
                at,
                target_type="agent",
                target=KILLED_BY_OPERATOR,
                reason="chaos: operator kill",
            ),
            secret,
        ),
        sign(
            _command(
                ReviveRequested,
                at,
                target_type="agent",
                target=KILLED_BY_OPERATOR,
                reason="chaos: reviewed",
            ),
            secret,
        ),
        sign(
            _command(
                PolicyChangeRequested,
                at,
                reason="chaos: slower window",
                changes={"thresholds": {"window_days": 14}},
            ),
            secret,
        ),
    ]


def _json(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def _bad(topic: str, kind: str, value: bytes | None, expected: str) -> Outgoing:
    return Outgoing(topic, b"chaos-bad", value, kind, expected)


def bad_data(sample_price: PriceObserved) -> list[Outgoing]:
    """Malformed source records: syntax, encoding, types, values, time, size, names."""
    at = format_utc(sample_price.ts)
    run_id = str(uuid.uuid4())
    price = {"type": "price.observed", "ts": at, "symbol": "BTC", "source": "chaos"}
    signal = {
        "type": "signal.emitted",
        "ts": at,
        "agent": "agent-00",
        "run_id": run_id,
        "symbol": "BTC",
        "direction": "LONG",
        "confidence": 0.6,
    }
    run = {
        "type": "run.completed",
        "ts": at,
        "run_id": run_id,
        "started_at": at,
        "latency_ms": 10.0,
    }
    no_run_id = {k: v for k, v in signal.items() if k != "run_id"}
    return [
        _bad("signals", "invalid JSON", b'{"type": "signal.emitted", "agent": ', "not valid"),
        _bad("runs", "bad UTF-8", b'{"type": "run.completed", "agent": "\xff\xfe"}', "UTF-8"),
        _bad("prices", "JSON that is not an object", b"[1, 2, 3]", "must be a JSON object"),
        _bad("signals", "tombstone (null value)", None, "tombstone"),
        _bad("runs", "unknown type", _json(**{**run, "type": "run.teleported"}), "unknown event"),
        _bad("signals", "type on the wrong topic", encode_event(sample_price), "does not belong"),
        _bad(
            "signals",
            "wrong field types",
            _json(**{**signal, "confidence": "very", "direction": 42}),
            "Input should be",
        ),
        _bad("signals", "missing run_id", _json(**no_run_id), "run_id: Field required"),
        _bad("prices", "negative price", _json(**price, price=-42.0), "greater than 0"),
        _bad("prices", "zero price", _json(**price, price=0), "greater than 0"),
        _bad("prices", "NaN price", _json(**price, price="NaN"), "finite number"),
        _bad(
            "prices",
            "timestamp far in the future",
            _json(**{**price, "ts": "2099-01-01T00:00:00Z"}, price=5000.0),
            "after the broker received",
        ),
        _bad(
            "signals",
            "oversized record",
            _json(**signal, padding="x" * (MAX_RECORD_BYTES + 1)),
            "over the limit",
        ),
        _bad("runs", "huge agent name", _json(**run, agent="a" * 100_000), "at most 128"),
    ]


def bad_commands(at: datetime, secret: bytes, valid: list[SignedCommand]) -> list[Outgoing]:
    """Commands the gate must refuse: forged, unsigned, replayed, stale, from the future,
    from an unknown actor, and a signed but out-of-bounds policy change."""
    kill = {"target_type": "agent", "target": "agent-00", "reason": "chaos"}
    forged = _command(KillRequested, at, **kill).model_copy(update={"signature": "ab" * 32})
    stale = sign(_command(KillRequested, at - timedelta(hours=1), **kill), secret)
    ahead = sign(_command(KillRequested, at + timedelta(minutes=10), **kill), secret)
    stranger = sign(_command(KillRequested, at, **kill), secret).model_copy(
        update={"actor": "mallory"}
    )
    bounds = sign(
        _command(PolicyChangeRequested, at, changes={"thresholds": {"window_days": -1}}), secret
    )
    return [
        _bad("commands", "forged command", encode_event(forged), "bad signature"),
        _bad(
            "commands",
            "unsigned command",
            encode_event(_command(KillRequested, at, **kill)),
            "missing signature",
        ),
        *(_bad("commands", "replayed command", encode_event(c), "replayed: nonce") for c in valid),
        _bad("commands", "stale command", encode_event(stale), "stale"),
        _bad("commands", "command from the future", encode_event(ahead), "from the future"),
        _bad("commands", "command of an unknown actor", encode_event(stranger), "unknown actor"),
        _bad("commands", "out-of-bounds policy change", encode_event(bounds), "invalid policy"),
    ]


def bad_facts(at: datetime) -> list[Outgoing]:
    """Governance facts written by someone other than the supervisor."""
    forger = FactSigner(Ed25519PrivateKey.generate())
    forged_kill = forger.sign(
        AgentKilled.create(ts=at, producer="mallory", target="agent-02", source="operator")
    )
    unsigned_revive = AgentRevived.create(
        ts=at, producer="mallory", target=KILLED_BY_OPERATOR, source="operator"
    )
    loose = {**default_policy().model_dump(), "version": 9}
    forged_policy = forger.sign(PolicyUpdated.create(ts=at, producer="mallory", **loose))
    return [
        _bad("kills", "forged kill fact", encode_event(forged_kill), "forged agent.killed"),
        _bad(
            "kills", "unsigned kill fact", encode_event(unsigned_revive), "unsigned agent.revived"
        ),
        _bad("policy", "forged policy fact", encode_event(forged_policy), "forged policy.updated"),
    ]
