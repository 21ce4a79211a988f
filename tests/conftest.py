"""Shared test helpers: bounded waiting, never a bare sleep."""

from __future__ import annotations

from streams.runtime.waiting import eventually

__all__ = ["eventually"]
