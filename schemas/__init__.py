"""The wire contract: event models, codec and topic catalogue.

External tools depend on topic names and `type` values; change them only with a
migration note in the README.
"""

from schemas.codec import RejectedRecord, decode_event, encode_event
from schemas.envelope import Event
from schemas.events import EVENT_TYPES

__all__ = ["EVENT_TYPES", "Event", "RejectedRecord", "decode_event", "encode_event"]
