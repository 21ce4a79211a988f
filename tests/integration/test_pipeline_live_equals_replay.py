"""Issue 9: every processor decides only from its own ordered input, so replaying the
recorded inputs through the pure steps reproduces every derived event, byte for byte.

One and two workers; an operator kill, a policy change (significance gate on, a daily LLM
budget that pauses agents) and regime changes arrive mid-stream; every source record is
sent twice. Issue 12's rules are covered: evidence minimums, PSR/DSR with the trials the
fleet broadcasts, budget pauses, the breach on deployed weights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from projections.log import LogRecord, read_broker
from projections.processors import processors, replay_processor
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import KillRequested, RegimeChanged
from schemas.topics import CATALOGUE, topic
from streams.broker.embedded import EmbeddedBroker
from streams.fleet.commands import new_key, new_nonce, sign
from streams.runtime.outputs import signed as signed_outputs
from tests.builders import policy_update
from tests.conftest import eventually
from tests.fleet_data import START, fleet_events, interleave
from tests.integration.stack import Worker, create_topics, produce, worker_settings
from tests.keys import SUPERVISOR_KEY, signed

DAY = timedelta(days=1)
# Kill facts made outside the processors: by the command gate and the wall-clock expiry.
NOT_FROM_PROCESSORS = ("operator", "expiry")


def derived_by_id(records: list[LogRecord], prefix: str) -> dict[str, dict[str, bytes]]:
    """What the processors wrote, per topic: event id -> the record's bytes (copies must
    be identical, which is the byte-for-byte half of the claim)."""
    written: dict[str, dict[str, bytes]] = {}
    for record in records:
        name = record.topic.removeprefix(prefix)
        if record.value is None:
            continue
        value = orjson.loads(record.value)
        if name in ("agent-input", "fleet-input"):
            forwarded = value["type"] in ("signal.reconciled", "agent.assessed")
        elif name == "kills":
            forwarded = value.get("source") not in NOT_FROM_PROCESSORS
        else:
            forwarded = name in DERIVED_BY_PROCESSORS
        if not forwarded:
            continue
        seen = written.setdefault(name, {})
        assert seen.setdefault(value["event_id"], record.value) == record.value, value
    return written


DERIVED_BY_PROCESSORS = {
    "reconciled",
    "unreconciled",
    "confidence",
    "decisions",
    "orders",
    "allocations",
    "kills",
}


def replayed_by_id(records: list[LogRecord], prefix: str) -> dict[str, dict[str, bytes]]:
    """What the replay emits, with its governance facts signed as the live shell signs them
    (Ed25519 is deterministic: the same fact and key give the same bytes)."""
    replayed: dict[str, dict[str, bytes]] = {}
    for processor in processors():
        outputs = replay_processor(processor, records, SUPERVISOR_KEY.verifier, prefix)
        for out in signed_outputs(outputs, SUPERVISOR_KEY.signer):
            seen = replayed.setdefault(out.topic, {})
            encoded = encode_event(out.event)
            assert seen.setdefault(str(out.event.event_id), encoded) == encoded
    return replayed


async def in_every_partition(broker: EmbeddedBroker, prefix: str, name: str, event: Event) -> bool:
    records = await read_broker(broker.bootstrap, [prefix + name])
    holding = {
        record.partition
        for record in records
        if record.value and orjson.loads(record.value)["event_id"] == str(event.event_id)
    }
    return len(holding) == topic(name).partitions


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("worker_count", [1, 2])
async def test_derived_topics_equal_a_replay_of_the_processor_inputs(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, worker_count: int
) -> None:
    await create_topics(broker, prefix)
    secret = new_key()
    prices, others = fleet_events(seed=11, days=10)
    stream = interleave(prices, others)
    third = len(stream) // 3
    mid = stream[third].ts
    kill = sign(
        KillRequested.create(
            ts=datetime.now(UTC),  # commands are judged fresh at receipt
            producer="test",
            target_type="agent",
            target="noisy",
            reason="operator test",
            actor="alice",
            nonce=new_nonce(),
        ),
        bytes.fromhex(secret),
    )
    changes: list[Event] = [
        signed(
            policy_update(
                mid,
                window_days=7,
                max_drawdown_bps=400.0,
                significance_gate=True,
                daily_budget_usd=0.012,
            )
        ),
        RegimeChanged.create(ts=mid, producer="test", regime="HIGH_VOL"),
    ]
    workers = []
    for i in range(worker_count):
        settings = worker_settings(prefix, mkdir(tmp_path / f"worker-{i}"))
        (settings.data_dir / "operator-keys.json").write_bytes(orjson.dumps({"alice": secret}))
        workers.append(Worker(broker, settings))
    opening = RegimeChanged.create(ts=START - DAY, producer="test", regime="RISK_ON")
    await produce(broker, prefix, [opening])
    for worker in workers:
        worker.start()
    try:
        twice = [event for event in stream[:third] for _ in range(2)]
        await produce(broker, prefix, twice)
        await produce(broker, prefix, [*changes, kill, *changes])
        # The policy reaches the agent processors through its own intake, the runs through
        # theirs: which comes first at a processor is up to the two intakes. Each processor
        # decides from its own input whatever the order (checked below), but only runs
        # that follow the new budget can be paused by it, and once the runs' intake ran
        # ahead of the policy's ("no budget pause"). So, as an operator changes a policy
        # and then the agents run, wait until the policy is in every agent processor input.
        await eventually(
            lambda: in_every_partition(broker, prefix, "agent-input", changes[0]),
            timeout_s=120,
        )
        await produce(broker, prefix, [event for event in stream[third:] for _ in range(2)])

        topics = [prefix + spec.name for spec in CATALOGUE]
        last: list[object] = [None]
        verdict: list[tuple[object, object]] = []

        async def live_equals_replay() -> bool:
            records = await read_broker(broker.bootstrap, topics)
            live = derived_by_id(records, prefix)
            settled = live == last[0] and len(live.get("reconciled", {})) > 0
            last[0] = live
            if not settled:
                return False  # still processing
            verdict[:] = [(live, replayed_by_id(records, prefix))]
            return verdict[0][0] == verdict[0][1]

        await eventually(live_equals_replay, timeout_s=240, every_s=3)
    finally:
        for worker in workers:
            await worker.stop()
    live = verdict[0][0]
    assert isinstance(live, dict)
    # The stream really went through every processor and rule.
    for name in ("reconciled", "confidence", "decisions", "orders", "allocations"):
        assert live.get(name), name
    facts = [orjson.loads(v) for v in live["allocations"].values()]
    regimes = {f["regime"] for f in facts if f["type"] == "allocation.updated"}
    assert {"RISK_ON", "HIGH_VOL"} <= regimes
    kills = [orjson.loads(v) for v in live["kills"].values()]
    assert kills, "the rules killed nobody: the stream did not exercise them"
    assert any(k["source"] == "budget" and k["until"] for k in kills), "no budget pause"
    assert any(f["type"] == "strategy.trials" for f in facts)
    decisions = [orjson.loads(v) for v in live["decisions"].values()]
    assert any(d["stats"]["psr"] is not None for d in decisions), "no PSR in a decision"
