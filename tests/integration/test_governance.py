"""Issue 11 on the embedded broker: governance facts are signed end to end.

A worker (the supervisor) runs with an operator key. Around the signed commands, a plain
Kafka client writes a forged `policy.updated` to `policy`, an unsigned `agent.revived` for
an agent an operator killed to `kills`, and a signed but out-of-bounds policy change to
`commands`: none of them changes anything, and each lands in `deadletter` with its
reason. Then `metasup policy set --reason ...`, run as an operator runs it, takes effect,
and `metasup policy show` names its actor and reason.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import orjson

from projections.log import events, read_broker
from schemas.codec import encode_event
from schemas.events import (
    AgentKilled,
    AgentRevived,
    EventRejected,
    KillRequested,
    PolicyChangeRequested,
    PolicyUpdated,
)
from streams.broker.embedded import EmbeddedBroker
from streams.fleet.commands import new_key, new_nonce, sign
from tests.builders import policy_update
from tests.conftest import eventually
from tests.integration.stack import (
    Worker,
    create_topics,
    guarded_client,
    metasup,
    produce,
    read_events,
    wait_for_events,
    worker_settings,
)
from tests.keys import SUPERVISOR_KEY, KeyPair

PROCESSOR_INPUTS = ("reconcile-input", "agent-input", "fleet-input")


async def verified_policies(broker: EmbeddedBroker, prefix: str) -> list[PolicyUpdated]:
    records = await read_broker(broker.bootstrap, [prefix + "policy"])
    return [
        e for e in events(records, verifier=SUPERVISOR_KEY.verifier) if isinstance(e, PolicyUpdated)
    ]


async def test_forged_facts_change_nothing_and_a_signed_policy_change_takes_effect(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await create_topics(broker, prefix)
    secret = bytes.fromhex(new_key())
    (tmp_path / "operator-keys.json").write_bytes(orjson.dumps({"alice": secret.hex()}))
    settings = worker_settings(prefix, tmp_path)
    worker = Worker(broker, settings)
    worker.start()
    try:
        now = datetime.now(UTC)
        kill = KillRequested.create(
            ts=now,
            producer="test",
            target_type="agent",
            target="alpha",
            reason="runaway losses",
            actor="alice",
            nonce=new_nonce(),
        )
        await produce(broker, prefix, [sign(kill, secret)])
        [killed] = await wait_for_events(broker, prefix, "kills", 1)
        assert isinstance(killed, AgentKilled) and killed.actor == "alice"
        assert SUPERVISOR_KEY.verifier.problem(killed) is None  # the supervisor signed it

        forger = KeyPair.fresh()
        forged_policy = forger.signer.sign(
            policy_update(now, version=9, kill_pnl_bps=-1e6, max_drawdown_bps=1e9)
        )
        unsigned_revive = AgentRevived.create(
            ts=now, producer="mallory", target="alpha", source="operator", actor="alice"
        )
        out_of_bounds = PolicyChangeRequested.create(
            ts=datetime.now(UTC),
            producer="test",
            actor="alice",
            reason="typo",
            nonce=new_nonce(),
            changes={"thresholds": {"window_days": -1}},
        )
        bad = [forged_policy, unsigned_revive, sign(out_of_bounds, secret)]
        await produce(broker, prefix, bad)
        rejected = await wait_for_events(broker, prefix, "deadletter", 3)

        code, said = await metasup(
            settings,
            broker,
            "policy",
            "set",
            "thresholds.window_days=14",
            "--reason",
            "faster reaction to decay",
        )
        assert code == 0, said

        async def changed() -> bool:
            return len(await verified_policies(broker, prefix)) == 1

        await eventually(changed, timeout_s=30)
        [change] = await verified_policies(broker, prefix)

        async def relayed() -> bool:
            records = await read_broker(broker.bootstrap, [prefix + n for n in PROCESSOR_INPUTS])
            return {
                r.topic for r in records if str(change.event_id).encode() in (r.value or b"")
            } == {prefix + n for n in PROCESSOR_INPUTS}

        await eventually(relayed, timeout_s=30)
        code, shown = await metasup(settings, broker, "policy", "show")
        assert code == 0, shown

        client = guarded_client(broker, prefix)
        async with client:
            assert client.guard is not None
            still_killed = client.guard.killed_reason("alpha", None, datetime.now(UTC))
    finally:
        await worker.stop()

    # Every bad record is in deadletter, once, with a reason a person can act on.
    by_topic = {
        r.source_topic.removeprefix(prefix): r for r in rejected if isinstance(r, EventRejected)
    }
    assert set(by_topic) == {"policy", "kills", "commands"}
    assert by_topic["policy"].reason.startswith("forged policy.updated: its signature does not")
    assert by_topic["kills"].reason.startswith("unsigned agent.revived")
    assert "metasup kill|revive|policy set" in by_topic["kills"].reason
    assert by_topic["commands"].reason == (
        "operator command refused: invalid policy value: thresholds.window_days: "
        "Input should be greater than or equal to 0 (got -1)"
    )
    assert base64.b64decode(by_topic["kills"].raw_value) == encode_event(unsigned_revive)
    assert len(await read_events(broker, prefix, "deadletter")) == 3

    # ... and none had an effect: no processor ever saw them, the kill stands.
    records = await read_broker(broker.bootstrap, [prefix + n for n in PROCESSOR_INPUTS])
    relayed_ids = {orjson.loads(r.value)["event_id"] for r in records if r.value}
    assert str(forged_policy.event_id) not in relayed_ids
    assert str(unsigned_revive.event_id) not in relayed_ids
    assert still_killed is not None and "runaway losses" in still_killed

    # The signed change took effect: the next version of the default policy, not of the
    # forged one, carrying who asked and why.
    assert (change.actor, change.reason) == ("alice", "faster reaction to decay")
    assert (change.version, change.thresholds.window_days) == (2, 14)
    assert change.thresholds.kill_pnl_bps == -150.0
    assert "version 2" in shown and "by alice: faster reaction to decay" in shown
