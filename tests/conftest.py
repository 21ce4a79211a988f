"""Shared test helpers: bounded waiting, never a bare sleep."""

from __future__ import annotations

import os

from streams.runtime.waiting import eventually

# Fixtures every tier may use: fake HTTP services on 127.0.0.1.
pytest_plugins = ["tests.fakes.github"]

# Workers and stacks started by tests send no scheduled reports (an LP email to the
# outbox at every start, a replay of the log in each worker); the schedule's own tests
# turn it on for the workers they start.
os.environ.setdefault("METASUP_SCHEDULES", "off")
# Nothing a test runs may reach a real OpenAI or SendGrid, whatever the developer's shell has.
for _variable in (
    "OPENAI_API_KEY",
    "AI_INTEGRATIONS_OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AI_INTEGRATIONS_OPENAI_BASE_URL",
    "SENDGRID_API_KEY",
    "SENDGRID_BASE_URL",
    "META_EMAIL_TO",
):
    os.environ.pop(_variable, None)

__all__ = ["eventually"]
