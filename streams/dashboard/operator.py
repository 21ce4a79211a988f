"""The dashboard's operator controls: a bearer token lets a request through; what is sent is
a signed operator command on `commands`, exactly as `metasup kill|revive` sends it, so
the supervisor verifies it the same way and alone writes the fact on `kills`.

The token only gates the page's controls; the command's authority is the signature of
the dashboard's actor (`METASUP_DASHBOARD_ACTOR`) from the operator keyring, so a
revoked key stops the dashboard too.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final, Literal

from pydantic import Field, ValidationError, field_validator

from schemas.envelope import UtcDatetime, WireModel, format_utc
from schemas.events import (
    MAX_NAME_CHARS,
    KillRequested,
    OperatorCommand,
    ReviveRequested,
    TargetType,
)
from streams.fleet.commands import load_keyring, new_nonce, sign
from streams.runtime.settings import Settings

PRODUCER: Final = "metasup.dashboard"
Action = Literal["kill", "pause", "revive"]
ACTIONS: Final[tuple[Action, ...]] = ("kill", "pause", "revive")


class ControlRefused(Exception):
    """A request the dashboard answers with `status` and a message saying what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CommandRequest(WireModel):
    """The JSON body of `POST /api/commands/<action>`."""

    target: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    target_type: TargetType = "agent"
    reason: str = Field(default="", max_length=1000)
    until: UtcDatetime | None = None  # pause only: an ISO-8601 time with a timezone

    @field_validator("target")
    @classmethod
    def _stripped(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("the target is blank")
        return stripped


def check_token(configured: str | None, authorization: str | None) -> None:
    """Raise unless the request carries the configured bearer token (compared in constant
    time); with no token configured the controls are off."""
    if configured is None:
        raise ControlRefused(
            403,
            "operator controls are disabled: start `metasup up` with METASUP_DASHBOARD_TOKEN "
            "set (e.g. METASUP_DASHBOARD_TOKEN=$(openssl rand -hex 24)) and send it as "
            "'Authorization: Bearer <token>'",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), configured.encode()
    ):
        raise ControlRefused(401, "a valid operator token is needed (Authorization: Bearer ...)")


def parse_request(action: Action, body: bytes, now: datetime) -> CommandRequest:
    try:
        request = CommandRequest.model_validate_json(body or b"{}")
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise ControlRefused(400, f"bad request body ({problems})") from None
    if action == "pause":
        if request.until is None:
            raise ControlRefused(400, "pause needs `until`, an ISO-8601 time with a timezone")
        if request.until <= now:
            raise ControlRefused(400, f"until {format_utc(request.until)} is not in the future")
    elif request.until is not None:
        raise ControlRefused(400, f"{action} takes no `until` (a timed kill is a pause)")
    return request


def signing_key(settings: Settings) -> tuple[str, bytes]:
    """The dashboard actor and its secret from the operator keyring."""
    actor = settings.dashboard_actor
    try:
        keyring = load_keyring(settings.keyring_source())
    except ValueError as error:
        raise ControlRefused(503, f"the operator keyring cannot be read: {error}") from None
    secret = keyring.get(actor)
    if secret is None:
        raise ControlRefused(
            503,
            f"the operator keyring has no key for the dashboard's actor {actor!r}: run "
            f"`metasup keys new --actor {actor}` (or set METASUP_DASHBOARD_ACTOR to an actor "
            "of the keyring), then restart `metasup up`",
        )
    return actor, secret


def build_command(
    action: Action, request: CommandRequest, actor: str, secret: bytes, now: datetime
) -> OperatorCommand:
    """The signed command for `action`: a pause is a kill with `until`."""
    kind = ReviveRequested if action == "revive" else KillRequested
    command = kind.create(
        ts=now,
        producer=PRODUCER,
        target_type=request.target_type,
        target=request.target,
        reason=request.reason,
        actor=actor,
        nonce=new_nonce(),
        until=request.until,
    )
    return sign(command, secret)
