"""Pure helpers of the CLI: times and durations, actor choice, signing, policy arguments."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.envelope import derived_event_id
from schemas.events import KillRequested, ReviveRequested
from schemas.policy import PolicyChangeError
from streams.cli.keys import check_actor, read_keyring_file, write_keyring_file
from streams.cli.operator import (
    OperatorError,
    build_command,
    parse_duration,
    parse_time,
    parse_until,
    resolve_actor,
)
from streams.cli.policy import parse_assignments
from streams.cli.spawn import build_spawn
from streams.fleet.commands import load_keyring, verify

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
SECRET = bytes.fromhex("11" * 32)


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
    ],
)
def test_relative_until(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta
    assert parse_until(text, NOW) == NOW + delta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-02T00:00:00Z", datetime(2024, 3, 2, tzinfo=UTC)),
        ("2024-03-02T02:00+02:00", datetime(2024, 3, 2, tzinfo=UTC)),
    ],
)
def test_iso_until_is_utc(text: str, expected: datetime) -> None:
    until = parse_until(text, NOW)
    assert until == expected
    assert until.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2024-03-02T00:00:00", "2024-03-02"])
def test_naive_iso_is_rejected(text: str) -> None:
    with pytest.raises(OperatorError, match="timezone"):
        parse_until(text, NOW)
    with pytest.raises(OperatorError, match="timezone"):
        parse_time(text)


@pytest.mark.parametrize("text", ["soon", "30", "m30", "0m", "-2h", "2 hours", "2024-13-01Z"])
def test_bad_until_is_rejected(text: str) -> None:
    with pytest.raises(OperatorError):
        parse_until(text, NOW)


def test_until_in_the_past_is_rejected() -> None:
    with pytest.raises(OperatorError, match="not in the future"):
        parse_until("2024-03-01T11:00:00Z", NOW)


def test_actor_choice() -> None:
    one = {"alice": SECRET}
    two = {"alice": SECRET, "bob": SECRET}
    assert resolve_actor(None, None, one, "k") == "alice"
    assert resolve_actor("bob", "alice", two, "k") == "bob"
    assert resolve_actor(None, "bob", two, "k") == "bob"
    with pytest.raises(OperatorError, match="several actors"):
        resolve_actor(None, None, two, "k")
    with pytest.raises(OperatorError, match="metasup keys new"):
        resolve_actor(None, None, {}, "k")
    with pytest.raises(OperatorError, match="carol"):
        resolve_actor("carol", None, two, "k")


def test_built_command_verifies() -> None:
    until = NOW + timedelta(hours=2)
    kill = build_command(KillRequested, "agent", "a1", "why", "alice", SECRET, NOW, until)
    assert isinstance(kill, KillRequested)
    assert (kill.target_type, kill.target, kill.until, kill.ts) == ("agent", "a1", until, NOW)
    assert verify(kill, {"alice": SECRET}, set(), NOW) is None
    revive = build_command(ReviveRequested, "strategy_class", "momo", "", "alice", SECRET, NOW)
    assert isinstance(revive, ReviveRequested)
    assert revive.nonce != kill.nonce
    assert verify(revive, {"alice": SECRET}, set(), NOW) is None
    assert verify(revive, {"alice": bytes.fromhex("22" * 32)}, set(), NOW) is not None


def test_keyring_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "operator-keys.json"
    assert read_keyring_file(path) == {}
    write_keyring_file(path, {"alice": "11" * 32})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_keyring_file(path) == {"alice": "11" * 32}
    assert load_keyring(str(path)) == {"alice": SECRET}
    assert check_actor("alice") is None
    assert check_actor("a:b") is not None
    assert check_actor("") is not None


def test_assignments_parse_json_else_text() -> None:
    assert parse_assignments(
        ["thresholds.window_days=14", "allocation.method=softmax", "a.b=[1, 4]", "x=a=b"]
    ) == [
        ("thresholds.window_days", 14),
        ("allocation.method", "softmax"),
        ("a.b", [1, 4]),
        ("x", "a=b"),
    ]
    with pytest.raises(PolicyChangeError):
        parse_assignments(["no-equals-sign"])


def test_spawn_id_is_deterministic() -> None:
    first = build_spawn("p", "c", "why", NOW, "momo", "prop-1")
    again = build_spawn("p", "c", "other words", NOW + timedelta(hours=1), None, "prop-1")
    assert first.event_id == again.event_id == derived_event_id("spawned", "p", "c", "prop-1")
    no_proposal = build_spawn("p", "c", "why", NOW)
    assert no_proposal.event_id == derived_event_id("spawned", "p", "c", "why")
    assert (first.parent, first.child, first.strategy_class) == ("p", "c", "momo")
