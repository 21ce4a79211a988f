"""Sends events to their catalogue topic, keyed as the contract says (`schemas.topics`)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.topics import key_for, topic_for


class Publisher:
    """An aiokafka producer that waits for every replica (acks=all): an event the SDK was
    told is sent is in the durable log."""

    def __init__(self, bootstrap: str, topic_prefix: str = "") -> None:
        self.topic_prefix = topic_prefix
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

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
