"""Shared test helpers: bounded waiting, never a bare sleep."""

from __future__ import annotations

from streams.runtime.waiting import eventually

# Fixtures every tier may use: fake HTTP services on 127.0.0.1.
pytest_plugins = ["tests.fakes.github"]

__all__ = ["eventually"]
