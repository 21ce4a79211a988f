"""Sends events to their catalogue topic, keyed as the contract says."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.topics import TopicSpec, home_topic


def topic_for(event: Event) -> TopicSpec:
    return home_topic(event.type)


def key_for(event: Event, spec: TopicSpec) -> bytes:
    """The record key: the payload field the catalogue names, or the literal "fleet"."""
    if spec.key == "fleet":
        return b"fleet"
    value = getattr(event, spec.key, None)
    return str(value if value is not None else event.event_id).encode()


class Publisher:
    """An aiokafka producer with one record per batch (exact end offsets on Tansu)."""

    def __init__(self, bootstrap: str, topic_prefix: str = "") -> None:
        self.topic_prefix = topic_prefix
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_batch_size=1, linger_ms=0
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event, wait: bool = True) -> None:
        spec = topic_for(event)
        sent = await self._producer.send(
            f"{self.topic_prefix}{spec.name}", encode_event(event), key=key_for(event, spec)
        )
        if wait:
            await sent

    async def flush(self) -> None:
        await self._producer.flush()
