"""The codec: every event type round-trips; bad input gets a reason a person can act on;
a v1 record is upcast for a v2 consumer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import UPCASTERS, RejectedRecord, decode_event, encode_event, upcast
from schemas.envelope import Event
from schemas.events import EVENT_TYPES, SignalEmitted
from schemas.stats import AgentStats

# Hypothesis wants naive bounds and adds the zone itself.
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
names = st.text(alphabet="abcxyz-_.é", min_size=1, max_size=12)
unit_floats = st.floats(min_value=0.001, max_value=1.0)

# Values that meet every field constraint of the contract (non-empty names, 0 < x <= 1,
# counts from 1).
STRATEGIES: dict[Any, st.SearchStrategy[Any]] = {
    str: names,
    int: st.integers(1, 10_000),
    float: unit_floats,
    datetime: aware_datetimes,
    list[str]: st.lists(names, min_size=1, max_size=3),
    dict[str, float]: st.dictionaries(names, unit_floats, max_size=3),
    dict[str, Any]: st.dictionaries(names, unit_floats, max_size=3),
    AgentStats: st.builds(
        AgentStats,
        trades=st.integers(0, 500),
        pnl_sum_bps=st.floats(-1e5, 1e5),
        hit_rate=st.none() | unit_floats,
        cvar95_bps=st.none() | st.floats(-1e4, 0),
    ),
}


BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "nonce": st.text("0123456789abcdef", min_size=16),
    # A partial policy: at least one changed key.
    "changes": st.dictionaries(names, unit_floats, min_size=1, max_size=3),
}


def event_strategy(model: type[Event]) -> st.SearchStrategy[Event]:
    def strategy(name: str, annotation: Any) -> st.SearchStrategy[Any]:
        if name in BY_NAME:
            return BY_NAME[name]
        if annotation in STRATEGIES:
            return STRATEGIES[annotation]
        return st.from_type(annotation)

    fields = {
        name: strategy(name, field.annotation)  # type: ignore[arg-type]
        for name, field in model.model_fields.items()
        if name not in {"event_id", "type", "schema_version", "ts", "producer"}
        and field.is_required()
    }
    return st.builds(model.create, ts=aware_datetimes, producer=names, **fields)


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_event_type_round_trips_through_the_wire(model: type[Event], data: Any) -> None:
    event = data.draw(event_strategy(model))
    assert decode_event(encode_event(event)) == event


def signal(at: datetime, direction: str, confidence: float) -> SignalEmitted:
    return SignalEmitted.create(
        ts=at,
        producer="t",
        agent="a",
        run_id="7f1c2b1e-7d4a-4b8e-9c3f-2a1d0e4b5c6d",
        symbol="BTC",
        direction=direction,
        confidence=confidence,
    )


def test_times_travel_as_utc_with_z() -> None:
    raw = encode_event(signal(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "LONG", 0.5))
    assert orjson.loads(raw)["ts"] == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"type": "signal.teleported"}', "unknown event type 'signal.teleported'"),
        (b'{"type": "signal.emitted", "ts": "2024-01-01T00:00:00"}', "must carry a timezone"),
        (
            b'{"type": "signal.emitted", "ts": "2024-01-01T00:00:00Z", "agent": "a",'
            b' "run_id": "7f1c2b1e-7d4a-4b8e-9c3f-2a1d0e4b5c6d", "symbol": "BTC",'
            b' "direction": "UP", "confidence": 1.5}',
            "direction",
        ),
        (None, "no value"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(RejectedRecord, match=reason):
        decode_event(raw)


def test_nan_and_infinity_never_enter_the_log() -> None:
    raw = (
        b'{"type": "price.observed", "ts": "2024-01-01T00:00:00Z", "symbol": "BTC",'
        b' "price": Infinity}'
    )
    with pytest.raises(RejectedRecord):
        decode_event(raw)
    with pytest.raises(ValueError, match="finite"):
        AgentStats(pnl_sum_bps=float("nan"))


def test_an_event_on_the_wrong_topic_is_rejected() -> None:
    raw = b'{"type": "price.observed", "ts": "2024-01-01T00:00:00Z", "symbol": "BTC", "price": 1}'
    with pytest.raises(RejectedRecord, match="does not belong on this topic"):
        decode_event(raw, frozenset({"signal.emitted"}))


def test_unknown_extra_fields_are_ignored_not_fatal() -> None:
    payload = orjson.loads(encode_event(signal(datetime(2024, 1, 1, tzinfo=UTC), "SHORT", 0.5)))
    decoded = decode_event(orjson.dumps({**payload, "new_field_from_v9": [1, 2]}))
    assert isinstance(decoded, SignalEmitted) and decoded.direction == "SHORT"


class SignalEmittedV2(SignalEmitted):
    """What a v2 consumer would deploy: `confidence` renamed to `conviction`."""

    SCHEMA_VERSION: ClassVar[int] = 2
    conviction: float


def test_a_v2_consumer_reads_a_v1_log_through_its_upcaster() -> None:
    v1 = orjson.loads(encode_event(signal(datetime(2024, 1, 1, tzinfo=UTC), "LONG", 0.7)))
    UPCASTERS[("signal.emitted", 1)] = lambda p: {**p, "conviction": p["confidence"]}
    try:
        upgraded = SignalEmittedV2.model_validate(upcast(v1, SignalEmittedV2))
    finally:
        del UPCASTERS[("signal.emitted", 1)]
    assert upgraded.schema_version == 2 and upgraded.conviction == 0.7
    with pytest.raises(RejectedRecord, match="no upcaster"):
        upcast(v1, SignalEmittedV2)
    with pytest.raises(RejectedRecord, match="newer than this consumer"):
        upcast({**v1, "schema_version": 3}, SignalEmittedV2)
