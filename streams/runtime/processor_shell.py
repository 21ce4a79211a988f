"""The Faust shell around a pure processor: load, step, emit, store. Nothing else.

Its input is admitted through the supervisor's public key (an unsigned or forged kill or
policy fact goes to `deadletter`, so the pure step only sees verified facts), and the
governance facts it emits are signed with the private key.

State lives in two changelog-backed tables per processor: the per-key states
(sharded, see `streams.runtime.sharded_store`) and the fleet facts of each input
partition. Both are written once per commit (`streams.runtime.write_behind`), to the
changelog partition of the record that changed them, so the facts of partition p are
recovered with p.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import faust
from pydantic import BaseModel

from schemas.topics import topic
from streams.core.fleet_state import FleetState
from streams.core.processing import Processor, Routed, apply_input
from streams.core.signing import FactSigner
from streams.runtime.deadletter import accepted_events
from streams.runtime.faust_fixes import before_commit
from streams.runtime.outputs import FaustTopics, send_routed, signed
from streams.runtime.sharded_store import ShardedStore, ShardSpec
from streams.runtime.write_behind import ChangelogWriter, WriteBehind

S = TypeVar("S", bound=BaseModel)
# Last-moment change of outputs at the edge (e.g. routing live orders to a broker).
OutputHook = Callable[[list[Routed]], list[Routed]]


class ProcessorShell(Generic[S]):
    """Registers the processor's Faust agent and tables; exposes its store to the views."""

    def __init__(
        self,
        app: faust.App,
        topics: FaustTopics,
        processor: Processor[S],
        shards: ShardSpec,
        signer: FactSigner,
        on_outputs: OutputHook | None = None,
    ) -> None:
        spec = topic(processor.input_topic)
        input_topic = topics[processor.input_topic].get_topic_name()
        partitions = spec.partitions
        states = app.Table(
            f"{processor.name}-state", key_type=bytes, value_type=bytes, partitions=partitions
        )
        facts = app.Table(
            f"{processor.name}-facts", key_type=bytes, value_type=bytes, partitions=partitions
        )
        states_writer, facts_writer = ChangelogWriter(states), ChangelogWriter(facts)
        self.store: WriteBehind[S] = WriteBehind(
            ShardedStore(states_writer, processor.state_model, shards), states_writer
        )
        self.facts: WriteBehind[FleetState] = WriteBehind(
            ShardedStore(facts_writer, FleetState, {}), facts_writer
        )
        self.processor = processor
        before_commit(app, self.flush)

        # Faust calls it with the revoked partitions; its stub wants a catch-all signature.
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def drop_unwritten(app: Any, revoked: set[Any], **kwargs: Any) -> None:
            lost = {tp.partition for tp in revoked if tp.topic == input_topic}
            self.store.drop(lost)
            self.facts.drop(lost)

        async def process(stream: Any) -> None:
            async for message, event in accepted_events(
                stream, spec.types, topics["deadletter"], signer.verifier
            ):
                facts_key = b"partition-%d" % message.partition
                facts = self.facts.load(facts_key) or FleetState()
                result = apply_input(processor, facts, self.load, event)
                outputs = on_outputs(result.outputs) if on_outputs else result.outputs
                # Emit first, then store: a crash in between re-emits the same ids
                # (deduplicated downstream) instead of losing them.
                await send_routed(topics, signed(outputs, signer))
                if result.facts is not facts:
                    self.facts.save(facts_key, result.facts, message.partition)
                if result.key is not None and result.state is not None:
                    self.store.save(result.key.encode(), result.state, message.partition)

        app.agent(topics[processor.input_topic], name=processor.name)(process)

    def load(self, key: str) -> S | None:
        return self.store.load(key.encode())

    def flush(self) -> None:
        """Write the states and facts changed since the last commit (before the next)."""
        self.facts.flush()
        self.store.flush()
