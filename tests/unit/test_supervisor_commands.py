"""Operator command signing, verification, replay protection and the command gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import decode_event, encode_event
from schemas.envelope import derived_event_id
from schemas.events import (
    AgentKilled,
    AgentRevived,
    KillRequested,
    OperatorCommand,
    ReviveRequested,
    StrategyKilled,
    TargetType,
)
from streams.fleet.commands import (
    CommandGate,
    apply_command,
    canonical_bytes,
    load_keyring,
    new_key,
    new_nonce,
    sign,
    verify,
)

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
ALICE = bytes.fromhex("11" * 32)
KEYRING = {"alice": ALICE, "bob": bytes.fromhex("22" * 32)}


def request(
    kind: type[OperatorCommand] = KillRequested,
    target_type: TargetType = "agent",
    at: datetime = T0,
    nonce: str = "nonce-0001",
    until: datetime | None = None,
) -> OperatorCommand:
    unsigned = kind.create(
        ts=at,
        producer="cli",
        target_type=target_type,
        target="a",
        reason="bad fills",
        actor="alice",
        nonce=nonce,
        until=until,
    )
    return sign(unsigned, ALICE)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


# --- keys and keyrings --------------------------------------------------------------------


def test_new_key_is_32_random_bytes_in_hex() -> None:
    key = new_key()
    assert len(bytes.fromhex(key)) == 32 and key != new_key()
    assert new_nonce() != new_nonce()


def test_inline_keyring() -> None:
    assert load_keyring(f" alice:{'11' * 32} , bob:{'22' * 32}") == KEYRING
    assert load_keyring("") == {}


def test_keyring_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"alice": "11" * 32, "bob": "22" * 32}))
    assert load_keyring(str(path)) == KEYRING


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alice", "must look like actor:hexsecret"),
        ("alice:zz-secret-zz", "not hex"),
        ("alice:", "is empty"),
    ],
)
def test_bad_keyrings_say_what_is_wrong_without_leaking_the_secret(
    value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as error:
        load_keyring(value)
    assert "zz-secret-zz" not in str(error.value)


# --- signatures ---------------------------------------------------------------------------


def test_signing_round_trip_also_across_the_wire() -> None:
    command = request()
    assert len(command.signature) == 64
    assert verify(command, KEYRING, set(), T0) is None
    received = decode_event(encode_event(command))
    assert isinstance(received, KillRequested)
    assert verify(received, KEYRING, set(), T0) is None


def test_canonical_bytes_ignore_the_signature_and_sort_keys() -> None:
    command = request()
    unsigned = command.model_copy(update={"signature": ""})
    assert canonical_bytes(command) == canonical_bytes(unsigned)
    assert b'"signature"' not in canonical_bytes(command)
    assert canonical_bytes(command).startswith(b'{"actor":"alice"')


@pytest.mark.parametrize(
    "field", [{"target": "b"}, {"reason": "other"}, {"ts": T0 + seconds(1)}, {"until": T0}]
)
def test_tampered_command_is_rejected(field: dict[str, object]) -> None:
    tampered = request().model_copy(update=field)
    assert verify(tampered, KEYRING, set(), T0) == "bad signature for actor 'alice'"


def test_unknown_actor_is_rejected() -> None:
    command = request().model_copy(update={"actor": "mallory"})
    assert verify(command, KEYRING, set(), T0) == "unknown actor 'mallory': not in the keyring"


def test_signature_from_another_actors_key_is_rejected() -> None:
    forged = sign(request().model_copy(update={"actor": "bob"}), ALICE)
    assert verify(forged, KEYRING, set(), T0) == "bad signature for actor 'bob'"


def test_missing_and_garbage_signatures_are_rejected() -> None:
    assert verify(request().model_copy(update={"signature": ""}), KEYRING, set(), T0) == (
        "missing signature (actor 'alice')"
    )
    garbage = request().model_copy(update={"signature": "é" * 64})
    assert verify(garbage, KEYRING, set(), T0) == "bad signature for actor 'alice'"


def test_uppercase_hex_signature_is_accepted() -> None:
    command = request()
    upper = command.model_copy(update={"signature": command.signature.upper()})
    assert verify(upper, KEYRING, set(), T0) is None


def test_freshness_window_edges() -> None:
    command = request()
    assert verify(command, KEYRING, set(), T0 + seconds(300)) is None
    stale = verify(command, KEYRING, set(), T0 + seconds(301))
    assert stale is not None and stale.startswith("stale: command time 2024-03-01T12:00:00Z")
    assert verify(command, KEYRING, set(), T0 - seconds(30)) is None
    future = verify(command, KEYRING, set(), T0 - seconds(31))
    assert future is not None and future.startswith("from the future")


def test_replayed_nonce_is_rejected() -> None:
    assert verify(request(), KEYRING, {"nonce-0001"}, T0) == (
        "replayed: nonce 'nonce-0001' was already used"
    )


@given(st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=64))
def test_any_reason_and_key_round_trip(reason: str, secret: bytes) -> None:
    unsigned = KillRequested.create(
        ts=T0, target_type="agent", target="a", reason=reason, actor="x", nonce="n" * 8
    )
    command = sign(unsigned, secret)
    assert verify(command, {"x": secret}, set(), T0) is None
    assert verify(command, {"x": secret + b"!"}, set(), T0) == "bad signature for actor 'x'"


# --- the gate -----------------------------------------------------------------------------


def test_kill_request_becomes_an_operator_kill() -> None:
    until = T0 + timedelta(hours=2)
    command = request(until=until)
    gate, facts = apply_command(CommandGate(), command, KEYRING, T0)
    assert isinstance(facts, list)
    [fact] = facts
    assert isinstance(fact, AgentKilled)
    assert (fact.target, fact.source, fact.actor, fact.reason, fact.until) == (
        "a",
        "operator",
        "alice",
        "bad fills",
        until,
    )
    assert fact.cause_id == command.event_id and fact.ts == command.ts
    assert fact.event_id == derived_event_id("agent.killed", "a", command.event_id)
    assert "nonce-0001" in gate.nonces


def test_class_kill_and_revive_requests() -> None:
    _, kills = apply_command(CommandGate(), request(target_type="strategy_class"), KEYRING, T0)
    _, revives = apply_command(CommandGate(), request(ReviveRequested), KEYRING, T0)
    assert isinstance(kills, list) and isinstance(kills[0], StrategyKilled)
    assert isinstance(revives, list) and isinstance(revives[0], AgentRevived)


def test_replay_through_the_gate_is_rejected_and_leaves_it_unchanged() -> None:
    gate, _ = apply_command(CommandGate(), request(), KEYRING, T0)
    again, outcome = apply_command(gate, request(), KEYRING, T0 + seconds(1))
    assert outcome == "replayed: nonce 'nonce-0001' was already used"
    assert again is gate


def test_kill_until_in_the_past_is_rejected() -> None:
    _, outcome = apply_command(CommandGate(), request(until=T0), KEYRING, T0)
    assert outcome == "until 2024-03-01T12:00:00Z is not after the command time"


def test_a_command_of_no_known_kind_is_rejected() -> None:
    bare = sign(
        OperatorCommand.create(
            ts=T0, target_type="agent", target="a", actor="alice", nonce="n" * 8
        ),
        ALICE,
    )
    _, outcome = apply_command(CommandGate(), bare, KEYRING, T0)
    assert isinstance(outcome, str)
    assert outcome.startswith("'' is not a command the supervisor knows")


def test_old_nonces_are_forgotten_but_their_commands_stay_dead() -> None:
    gate, _ = apply_command(CommandGate(), request(), KEYRING, T0)
    later = T0 + seconds(400)
    gate, _ = apply_command(gate, request(at=later, nonce="nonce-0002"), KEYRING, later)
    assert list(gate.nonces) == ["nonce-0002"]
    _, outcome = apply_command(gate, request(), KEYRING, later)
    assert isinstance(outcome, str) and outcome.startswith("stale")
    # Even when `at` goes backwards, checks use the high-water mark.
    _, outcome = apply_command(gate, request(), KEYRING, T0)
    assert isinstance(outcome, str) and outcome.startswith("stale")


def test_gate_round_trips_through_json() -> None:
    gate, _ = apply_command(CommandGate(), request(), KEYRING, T0)
    assert CommandGate.model_validate_json(gate.model_dump_json()) == gate
