"""One orjson codec for every record, with upcasting and actionable rejections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import Event
from schemas.events import EVENT_TYPES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (type, from_version) -> function returning the payload at from_version + 1.
# Register with `register_upcaster`; a v1 record is upcast step by step to the
# version the model expects before it is validated.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

# An event is one small fact: the largest the supervisor writes (a decision with its window
# stats, an allocation) are a few KiB. A record far past that is a batch, a file or an attack,
# and parsing it would only cost memory and time on every reader.
MAX_RECORD_BYTES = 256 * 1024


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(function: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = function
        return function

    return register


@dataclass(frozen=True)
class RejectedRecord(Exception):
    """A record that cannot become an event; `reason` says what to fix."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def upcast(payload: dict[str, Any], model: type[Event]) -> dict[str, Any]:
    event_type = str(payload.get("type"))
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise RejectedRecord(f"schema_version must be a positive integer, got {version!r}")
    if version > model.SCHEMA_VERSION:
        raise RejectedRecord(
            f"{event_type} schema_version {version} is newer than this consumer knows "
            f"({model.SCHEMA_VERSION}); upgrade the consumer"
        )
    while version < model.SCHEMA_VERSION:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise RejectedRecord(f"no upcaster for {event_type} from schema_version {version}")
        payload = {**step(payload), "schema_version": version + 1}
        version += 1
    return payload


def decode_event(raw: bytes | None, expected_types: frozenset[str] | None = None) -> Event:
    """Parse and validate one record value, or raise RejectedRecord with a readable reason."""
    if raw is None:
        raise RejectedRecord("record has no value (tombstone); events are never null")
    if len(raw) > MAX_RECORD_BYTES:
        raise RejectedRecord(
            f"record is {len(raw):,} bytes, over the limit of {MAX_RECORD_BYTES:,} for one "
            "event; send one small fact per record (no batches, files or blobs)"
        )
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise RejectedRecord(f"value is not valid UTF-8 JSON: {error}") from None
    if not isinstance(payload, dict):
        raise RejectedRecord(f"value must be a JSON object, got {type(payload).__name__}")
    event_type = payload.get("type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        known = ", ".join(sorted(expected_types or EVENT_TYPES))
        raise RejectedRecord(f"unknown event type {event_type!r}; expected one of: {known}")
    if expected_types is not None and event_type not in expected_types:
        allowed = ", ".join(sorted(expected_types))
        raise RejectedRecord(f"event type {event_type!r} does not belong on this topic ({allowed})")
    try:
        return model.model_validate(upcast(payload, model))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '(event)'}: {issue['msg']}"
            for issue in error.errors()
        )
        raise RejectedRecord(f"invalid {event_type}: {problems}") from None
