"""The envelope every event carries, and the helpers that make ids and times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Namespace for ids of derived events: uuid5(namespace, causes) is stable across
# processes and replays, which is what makes reprocessing idempotent.
DERIVED_ID_NAMESPACE = uuid.UUID("6f1c2b1e-7d4a-5b8e-9c3f-2a1d0e4b5c6d")


def derived_event_id(*causes: object) -> uuid.UUID:
    """Return the id of an event derived from `causes`; same causes, same id."""
    return uuid.uuid5(DERIVED_ID_NAMESPACE, "|".join(str(cause) for cause in causes))


def to_utc(value: datetime) -> datetime:
    """Reject naive datetimes: event time must be unambiguous."""
    if value.tzinfo is UTC:  # the usual case, and the cheapest check
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must carry a timezone (ISO-8601 with 'Z' or an offset)")
    return value.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """ISO-8601 UTC with a `Z`, the only time format on the wire."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


# Every datetime field of a wire model: timezone required, held in UTC. Pydantic writes a
# UTC datetime in JSON as ISO-8601 with "Z", the wire format (`format_utc`). Typed per field
# rather than by a catch-all validator on every field of every model: that ran a Python
# function for each field of each model built, a tenth of a replay's time.
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]


class WireModel(BaseModel):
    """Frozen base for everything on the wire: unknown fields are ignored, not fatal."""

    # NaN and infinity are refused: a number that is not a number has no place in PnL.
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Event(WireModel):
    """Envelope shared by all events; subclasses add the payload and fix `type`."""

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int = 1
    ts: UtcDatetime
    producer: str = "unknown"

    @field_validator("type")
    @classmethod
    def _type_matches_model(cls, value: str) -> str:
        if cls.TYPE and value != cls.TYPE:
            raise ValueError(f"type {value!r} does not belong to {cls.__name__} ({cls.TYPE!r})")
        return value

    @classmethod
    def create(cls, **fields: Any) -> Self:
        """Build an event of this type; `type` and `schema_version` are filled in."""
        return cls(type=cls.TYPE, schema_version=cls.SCHEMA_VERSION, **fields)
