"""Issue 11: a policy change is a signed operator command; only the supervisor turns it into
`policy.updated`, carrying the actor and the reason, after checking the signature,
freshness, nonce, keys and bounds. `metasup policy set` sends that command (and refuses an
out-of-bounds value itself, sending nothing)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.codec import decode_event, encode_event
from schemas.envelope import Event, derived_event_id
from schemas.events import PolicyChangeRequested, PolicyUpdated
from schemas.policy import Policy, apply_policy_changes, partial_policy
from streams.cli import policy as policy_cli
from streams.cli.main import main
from streams.core.fleet_state import FleetState, policy_at
from streams.fleet.commands import CommandGate, apply_command, new_key, sign, verify
from streams.runtime.settings import Settings
from tests.builders import policy_update
from tests.keys import signed

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
ALICE = bytes.fromhex("11" * 32)
KEYRING = {"alice": ALICE}


def change_request(
    changes: dict[str, Any],
    at: datetime = T0,
    nonce: str = "nonce-0001",
    reason: str = "calmer sizing",
    secret: bytes = ALICE,
) -> PolicyChangeRequested:
    command = PolicyChangeRequested.create(
        ts=at, producer="cli", actor="alice", reason=reason, nonce=nonce, changes=changes
    )
    return sign(command, secret)


def accepted(
    command: PolicyChangeRequested,
    gate: CommandGate | None = None,
    latest: PolicyUpdated | None = None,
) -> tuple[CommandGate, PolicyUpdated]:
    new_gate, result = apply_command(gate or CommandGate(), command, KEYRING, command.ts, latest)
    assert isinstance(result, list), result
    [fact] = result
    assert isinstance(fact, PolicyUpdated)
    return new_gate, fact


def test_a_signed_change_becomes_the_whole_next_policy_with_actor_and_reason() -> None:
    command = change_request({"thresholds": {"window_days": 14}, "regime_caps": {"RISK_OFF": 0.1}})

    _, fact = accepted(command)

    assert (fact.actor, fact.reason, fact.cause_id, fact.ts) == (
        "alice",
        "calmer sizing",
        command.event_id,
        T0,
    )
    assert fact.event_id == derived_event_id("policy.updated", command.event_id)
    assert fact.version == Policy().version + 1
    assert fact.thresholds.window_days == 14
    assert fact.regime_caps == {**Policy().regime_caps, "RISK_OFF": 0.1}  # the others kept
    assert fact.thresholds.kill_pnl_bps == Policy().thresholds.kill_pnl_bps
    assert decode_event(encode_event(fact)) == fact


def test_the_change_applies_to_the_policy_in_force() -> None:
    in_force = signed(policy_update(T0 - timedelta(days=1), version=5, kill_pnl_bps=-2500.0))

    _, fact = accepted(change_request({"thresholds": {"window_days": 14}}), latest=in_force)

    assert fact.version == 6
    assert (fact.thresholds.kill_pnl_bps, fact.thresholds.window_days) == (-2500.0, 14)


def test_two_changes_in_a_row_build_on_each_other_before_the_view_shows_the_first() -> None:
    gate, first = accepted(change_request({"thresholds": {"window_days": 14}}))
    later = T0 + timedelta(seconds=5)
    _, second = accepted(
        change_request({"thresholds": {"haircut": 0.3}}, at=later, nonce="nonce-0002"), gate
    )

    assert second.version == first.version + 1
    assert (second.thresholds.window_days, second.thresholds.haircut) == (14, 0.3)


def test_a_change_older_than_the_policy_in_force_is_refused() -> None:
    in_force = signed(policy_update(T0 + timedelta(seconds=10), version=3))
    gate, outcome = apply_command(
        CommandGate(), change_request({"thresholds": {"window_days": 14}}), KEYRING, T0, in_force
    )
    assert isinstance(outcome, str) and outcome.startswith("out of order: policy version 3")
    assert gate == CommandGate()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {"thresholds": {"window_days": -1}},
            "thresholds.window_days: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"regime_caps": {"RISK_ON": 1.5}},
            "regime_caps.RISK_ON: Input should be less than or equal to 1 (got 1.5)",
        ),
        ({"thresholds": {"window_dayz": 3}}, "unknown key 'thresholds.window_dayz'"),
        ({"version": 9}, "version is not set by hand"),
    ],
)
def test_a_change_out_of_bounds_or_of_unknown_keys_is_refused_and_changes_nothing(
    changes: dict[str, Any], named: str
) -> None:
    gate, outcome = apply_command(CommandGate(), change_request(changes), KEYRING, T0)
    assert isinstance(outcome, str) and named in outcome, outcome
    assert gate == CommandGate()  # the nonce is not spent: a corrected change may follow


def test_unsigned_forged_and_replayed_changes_are_refused() -> None:
    unsigned = change_request({"thresholds": {"window_days": 14}}).model_copy(
        update={"signature": ""}
    )
    assert apply_command(CommandGate(), unsigned, KEYRING, T0)[1] == (
        "missing signature (actor 'alice')"
    )
    forged = change_request({"thresholds": {"window_days": 14}}, secret=bytes.fromhex(new_key()))
    assert apply_command(CommandGate(), forged, KEYRING, T0)[1] == "bad signature for actor 'alice'"
    tampered = change_request({"thresholds": {"window_days": 14}}).model_copy(
        update={"changes": {"thresholds": {"window_days": 1}}}
    )
    assert apply_command(CommandGate(), tampered, KEYRING, T0)[1] == (
        "bad signature for actor 'alice'"
    )
    gate, _ = accepted(change_request({"thresholds": {"window_days": 14}}))
    _, outcome = apply_command(
        gate, change_request({"thresholds": {"window_days": 14}}), KEYRING, T0
    )
    assert outcome == "replayed: nonce 'nonce-0001' was already used"


def test_the_gate_with_its_last_policy_round_trips_through_json() -> None:
    gate, _ = accepted(change_request({"thresholds": {"window_days": 14}}))
    assert CommandGate.model_validate_json(gate.model_dump_json()) == gate


def test_the_cli_changes_and_the_supervisor_changes_agree() -> None:
    """`policy set` sends dotted keys as one partial policy; the supervisor's result is the
    policy the CLI showed the operator."""
    changes = [
        ("thresholds.window_days", 14),
        ("regime_caps.RISK_OFF", 0.1),
        ("capital", {"max_position_usd": 100.0}),
    ]
    _, fact = accepted(change_request(partial_policy(changes)))
    expected = apply_policy_changes(Policy(), changes)
    assert policy_at(FleetState(policies=(fact,)), T0) == expected


# --- `metasup policy set` ------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Settings, list[Event]]:
    """`policy set` with an operator key, an empty policy log, and a broker that records."""
    secret = new_key()
    (tmp_path / "operator-keys.json").write_bytes(orjson.dumps({"alice": secret}))
    sent: list[Event] = []

    def send_event(settings: Settings, event: Event, detail: str) -> bool:
        sent.append(event)
        return True

    monkeypatch.setattr(policy_cli, "read_policy_log", lambda *_, **__: (FleetState(), "test log"))
    monkeypatch.setattr(policy_cli, "send_event", send_event)
    monkeypatch.delenv("METASUP_OPERATOR_ACTOR", raising=False)
    return Settings(METASUP_DATA_DIR=tmp_path), sent


def policy_set(settings: Settings, *words: str) -> int:
    args = policy_cli_parser().parse_args(["policy", "set", *words])
    return int(args.run(args, settings))


def policy_cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    policy_cli.register(parser.add_subparsers())
    return parser


def test_policy_set_sends_a_signed_change_with_its_reason(
    cli: tuple[Settings, list[Event]],
) -> None:
    settings, sent = cli
    assert policy_set(settings, "thresholds.window_days=14", "--reason", "faster reaction") == 0

    [command] = sent
    assert isinstance(command, PolicyChangeRequested)
    assert (command.actor, command.reason) == ("alice", "faster reaction")
    assert command.changes == {"thresholds": {"window_days": 14}}
    secret = bytes.fromhex(
        orjson.loads((settings.data_dir / "operator-keys.json").read_bytes())["alice"]
    )
    assert verify(command, {"alice": secret}, set(), command.ts) is None


def test_policy_set_refuses_an_out_of_bounds_value_and_sends_nothing(
    cli: tuple[Settings, list[Event]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, sent = cli
    assert policy_set(settings, "thresholds.window_days=-1", "--reason", "oops") == 2

    assert sent == []
    error = capsys.readouterr().err
    assert "thresholds.window_days: Input should be greater than or equal to 0 (got -1)" in error
    assert "nothing sent" in error


def test_policy_set_needs_a_reason(cli: tuple[Settings, list[Event]]) -> None:
    with pytest.raises(SystemExit):
        policy_set(cli[0], "thresholds.window_days=14")
    assert cli[1] == []


def test_emit_refuses_a_policy_fact_and_names_the_command_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(encode_event(policy_update(T0, window_days=7)))

    assert main(["emit", str(path)]) == 1

    error = capsys.readouterr().err
    assert "policy.updated goes to `policy`, which only the supervisor writes" in error
    assert "metasup kill|revive|policy set" in error and "nothing sent" in error
