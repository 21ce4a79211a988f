"""The wall clock, injected: rules take a `Clock` argument and never read the time themselves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock (timezone-aware UTC); tests and replays pass their own."""
    return datetime.now(UTC)
