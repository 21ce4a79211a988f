"""Test builders shared by every tier: one place instead of one copy per test file."""

from __future__ import annotations

from datetime import datetime


class ManualClock:
    """A clock the test moves by hand: call it for the time, set `now` to move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
