"""Issue 11: facts on `kills` and `policy` are believed only with the supervisor's signature.

Signing and verification themselves (good, unsigned, forged, tampered), then every reader
that admits facts through the verifier: the workers' intakes and processor inputs (the
replay of a processor input runs the same admission), FleetView and the projections. And
the key files the supervisor keeps."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from projections.log import LogRecord, events
from projections.processors import replay_partition
from schemas.codec import RejectedRecord, encode_event
from schemas.events import AgentKilled, AgentRevived, OrderIntent, RunCompleted, SignalEmitted
from streams.agents.processor import AgentProcessor
from streams.core.fleet_state import FleetState
from streams.core.kill_list import is_killed
from streams.core.signing import canonical_bytes
from streams.runtime.fleet_view import fold
from streams.runtime.settings import Settings
from streams.runtime.supervisor_key import (
    SupervisorKeyError,
    ensure_key_pair,
    load_signer,
    load_verifier,
    write_key_pair,
)
from tests.builders import policy_update
from tests.keys import SUPERVISOR_KEY, KeyPair, signed

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
VERIFIER = SUPERVISOR_KEY.verifier
OTHER_KEY = KeyPair.fresh()  # another supervisor's, or a forger's


def kill(target: str = "alpha", **fields: object) -> AgentKilled:
    return AgentKilled.create(
        ts=T0, producer="supervisor", target=target, source="operator", actor="alice", **fields
    )


def revive(target: str = "alpha") -> AgentRevived:
    return AgentRevived.create(
        ts=T0 + timedelta(hours=1), producer="x", target=target, source="operator"
    )


# --- signing and verification ---------------------------------------------------------------


def test_a_signed_fact_verifies_after_the_wire() -> None:
    fact = signed(kill(until=T0 + timedelta(hours=2), reason="bad fills"))

    assert VERIFIER.problem(fact) is None
    assert VERIFIER.decode(encode_event(fact)) == fact


def test_signatures_are_deterministic_and_cover_everything_but_themselves() -> None:
    fact = kill()
    assert signed(fact) == signed(fact)  # a replay that signs again writes the same bytes
    assert canonical_bytes(signed(fact)) == canonical_bytes(fact)
    assert b'"signature"' not in canonical_bytes(signed(fact))


def test_an_unsigned_fact_is_refused_and_told_how_to_change_kills() -> None:
    reason = VERIFIER.problem(revive())
    assert reason is not None
    assert reason.startswith("unsigned agent.revived")
    assert "metasup kill|revive|policy set" in reason


def test_a_fact_signed_with_another_key_is_forged() -> None:
    reason = VERIFIER.problem(OTHER_KEY.signer.sign(revive()))
    assert reason is not None and reason.startswith("forged agent.revived")


@pytest.mark.parametrize(
    "change",
    [{"target": "beta"}, {"source": "auto"}, {"until": T0 + timedelta(days=1)}, {"actor": "eve"}],
)
def test_a_field_changed_after_signing_is_forged(change: dict[str, object]) -> None:
    tampered = signed(kill()).model_copy(update=change)
    reason = VERIFIER.problem(tampered)
    assert reason is not None and reason.startswith("forged agent.killed")


def test_a_policy_fact_is_checked_too() -> None:
    change = signed(policy_update(T0, window_days=7))
    assert VERIFIER.problem(change) is None
    loosened = change.model_copy(
        update={"thresholds": change.thresholds.model_copy(update={"kill_pnl_bps": -1e9})}
    )
    reason = VERIFIER.problem(loosened)
    assert reason is not None and reason.startswith("forged policy.updated")


@pytest.mark.parametrize("garbage", ["zz", "00" * 64, "ab"])
def test_a_signature_that_is_not_one_is_forged(garbage: str) -> None:
    reason = VERIFIER.problem(kill().model_copy(update={"signature": garbage}))
    assert reason is not None and reason.startswith("forged")


def test_other_events_need_no_signature() -> None:
    run = RunCompleted.create(
        ts=T0, producer="sdk", agent="a", run_id=uuid.uuid4(), started_at=T0, latency_ms=1.0
    )
    assert VERIFIER.problem(run) is None


def test_decoding_an_unverified_fact_raises_a_rejection() -> None:
    with pytest.raises(RejectedRecord, match=r"^unsigned agent\.killed"):
        VERIFIER.decode(encode_event(kill()))


# --- readers ---------------------------------------------------------------------------------


def record(offset: int, value: bytes, topic: str = "kills") -> LogRecord:
    return LogRecord(topic, 0, offset, int(T0.timestamp() * 1000), value)


def test_fleet_view_folds_only_signed_facts() -> None:
    state = FleetState()
    state = fold(state, encode_event(signed(kill())), VERIFIER)
    assert is_killed(state.kills, "alpha", None, T0)

    for forged in (revive(), OTHER_KEY.signer.sign(revive())):
        assert fold(state, encode_event(forged), VERIFIER) is state
    assert is_killed(state.kills, "alpha", None, T0 + timedelta(hours=2))


def test_projections_skip_unverified_facts() -> None:
    good = signed(kill())
    records = [
        record(0, encode_event(good)),
        record(1, encode_event(revive())),
        record(2, encode_event(OTHER_KEY.signer.sign(revive()))),
    ]
    assert list(events(records, verifier=VERIFIER)) == [good]


def order_reasons_after(revival: AgentRevived) -> list[str]:
    """The agent processor's input as the live shell admits it: a genuine kill of alpha,
    then `revival`, then a signal of alpha; the reasons of the order intents it emits."""
    signal = SignalEmitted.create(
        ts=T0 + timedelta(hours=2),
        producer="sdk",
        agent="alpha",
        run_id=uuid.uuid4(),
        symbol="BTC",
        direction="LONG",
        confidence=0.7,
    )
    values = [signed(kill()), revival, signal]
    records = [record(i, encode_event(v), "agent-input") for i, v in enumerate(values)]
    outputs = replay_partition(AgentProcessor("shadow"), records, VERIFIER)
    return [out.event.reason for out in outputs if isinstance(out.event, OrderIntent)]


def test_a_processor_ignores_an_unsigned_or_forged_revive() -> None:
    for forged in (revive(), OTHER_KEY.signer.sign(revive())):
        [reason] = order_reasons_after(forged)
        assert reason.startswith("blocked: agent alpha killed"), reason

    [reason] = order_reasons_after(signed(revive()))
    assert reason == "blocked: allocation weight is 0"  # revived; no weight yet


# --- key files -------------------------------------------------------------------------------


def settings_in(directory: Path) -> Settings:
    return Settings(METASUP_DATA_DIR=directory)


def test_the_key_pair_is_made_once_private_key_for_its_owner_only(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    assert ensure_key_pair(settings) is True
    private, public = settings.supervisor_key_path(), settings.supervisor_public_key_path()
    assert (private, public) == (tmp_path / "supervisor.key", tmp_path / "supervisor.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    before = private.read_bytes()
    assert ensure_key_pair(settings) is False
    assert private.read_bytes() == before

    fact = load_signer(settings).sign(kill())
    assert load_verifier(settings).problem(fact) is None


def test_a_lost_public_key_is_written_again_from_the_private_key(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    ensure_key_pair(settings)
    fact = load_signer(settings).sign(kill())
    settings.supervisor_public_key_path().unlink()

    assert ensure_key_pair(settings) is False
    assert load_verifier(settings).problem(fact) is None


def test_a_public_key_of_another_pair_is_refused_at_start(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    ensure_key_pair(settings)
    settings.supervisor_public_key_path().write_bytes(OTHER_KEY.public.read_bytes())

    with pytest.raises(SupervisorKeyError, match="does not belong to the private key"):
        load_signer(settings)


def test_a_reader_without_the_public_key_is_told_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(SupervisorKeyError, match="METASUP_SUPERVISOR_PUBLIC_KEY_FILE"):
        load_verifier(settings_in(tmp_path))


def test_replacing_the_key_pair_makes_old_facts_forged(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    write_key_pair(settings.supervisor_key_path(), settings.supervisor_public_key_path())
    old = load_signer(settings).sign(kill())
    write_key_pair(
        settings.supervisor_key_path(), settings.supervisor_public_key_path(), replace=True
    )
    reason = load_verifier(settings).problem(old)
    assert reason is not None and reason.startswith("forged")
