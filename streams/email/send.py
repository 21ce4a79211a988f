"""Delivering a report: through SendGrid's official client when there is a key and someone
to send to, else into a local outbox as an `.eml` file (SPEC section 8), and either way a
`Delivery` that says what happened.

`deliver` never raises for a transport failure: the workers that send the reports must
go on after a failed mail. Busy and failing answers (429, 5xx) and lost connections are
retried with doubling waits; a 4xx other than 429 is a refusal that retrying would repeat.
A retry after a 5xx or a timeout may send the mail twice if SendGrid had accepted it: the
v3 API has no idempotency key, and a duplicate report is better than a missing one.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError

from python_http_client.exceptions import HTTPError  # type: ignore[import-untyped]
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Header, Mail
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from projections.reports.markup import printable
from streams.email.config import EmailSettings
from streams.email.message import OutgoingEmail

REQUEST_TIMEOUT_S = 30.0  # the client waits forever by default; a worker must not
RETRY_AFTER_CAP_S = 60.0
BODY_EXCERPT_CHARS = 300
MESSAGE_ID_HEADER = "X-Metasup-Message-Id"  # in the mail itself, sent or in the outbox


@dataclass(frozen=True)
class Delivery:
    status: Literal["sent", "failed", "outbox"]
    attempts: int  # requests made to SendGrid (0 for the outbox)
    detail: str
    outbox_path: Path | None = None
    provider_id: str | None = None  # SendGrid's X-Message-Id


@dataclass(frozen=True)
class _Answer:
    """One attempt's outcome."""

    sent: bool
    detail: str  # the status and body excerpt, or the connection error
    retryable: bool
    retry_after_s: float | None = None
    provider_id: str | None = None


def deliver(
    email: OutgoingEmail,
    settings: EmailSettings,
    outbox_dir: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    if not settings.can_send():
        return _to_outbox(email, settings, outbox_dir)
    try:
        mail = _mail(email, settings)
    except ApiKeyIncludedException:
        return Delivery(
            "failed", 0, "SendGrid's client refused the message: a body starts like an API key"
        )
    client = SendGridAPIClient(settings.api_key, host=settings.base_url)
    for attempt in range(1, settings.attempts + 1):
        answer = _post(client, mail)
        if answer.sent:
            count = len(settings.recipients)
            return Delivery(
                "sent",
                attempt,
                f"sent to {count} recipient{'' if count == 1 else 's'} ({answer.detail})",
                provider_id=answer.provider_id,
            )
        if not answer.retryable or attempt == settings.attempts:
            break
        wait = settings.backoff_s * 2 ** (attempt - 1)
        sleep(wait if answer.retry_after_s is None else answer.retry_after_s)
    plural = "" if attempt == 1 else "s"
    return Delivery("failed", attempt, f"{answer.detail} (after {attempt} attempt{plural})")


def _to_outbox(email: OutgoingEmail, settings: EmailSettings, outbox_dir: Path) -> Delivery:
    missing = [
        variable
        for variable, present in (
            ("SENDGRID_API_KEY", settings.api_key is not None),
            ("META_EMAIL_TO", bool(settings.recipients)),
        )
        if not present
    ]
    why = "no " + " and no ".join(missing)
    try:
        path = write_eml(email, settings, outbox_dir)
    except OSError as error:
        return Delivery("failed", 0, f"could not write to the outbox {outbox_dir} ({why}): {error}")
    return Delivery("outbox", 0, f"written to {path}: {why}", outbox_path=path)


def _mail(email: OutgoingEmail, settings: EmailSettings) -> Mail:
    mail = Mail(
        from_email=settings.sender,
        to_emails=list(settings.recipients),
        subject=email.subject,
        plain_text_content=email.text,
        html_content=email.html,
    )
    mail.header = Header(MESSAGE_ID_HEADER, email.message_id)
    # Custom args come back in SendGrid's event webhook: a bounce names the report.
    mail.custom_arg = [CustomArg("message_id", email.message_id), CustomArg("kind", email.kind)]
    return mail


def _post(client: SendGridAPIClient, mail: Mail) -> _Answer:
    try:
        response = client.client.mail.send.post(request_body=mail.get(), timeout=REQUEST_TIMEOUT_S)
    except HTTPError as error:
        status = int(error.status_code)
        detail = f"HTTP {status}: {_excerpt(error.body)}"
        retry_after = _retry_after_s(error.headers) if status == 429 else None
        return _Answer(False, detail, status == 429 or status >= 500, retry_after)
    except (OSError, http.client.HTTPException) as error:
        # Refused, reset, timed out, or an answer cut short: the network, not the request.
        reason = error.reason if isinstance(error, URLError) else error
        return _Answer(False, f"no answer from {client.host}: {reason}", retryable=True)
    status = int(response.status_code)
    if 200 <= status < 300:
        return _Answer(True, f"HTTP {status}", False, provider_id=_header(response.headers))
    return _Answer(False, f"HTTP {status}: {_excerpt(response.body)}", retryable=False)


def _header(headers: Any) -> str | None:
    value = headers.get("X-Message-Id") if headers is not None else None
    return str(value) if value else None


def _retry_after_s(headers: Any) -> float | None:
    """A Retry-After in seconds, capped; an HTTP-date or nonsense falls back to the backoff."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return min(seconds, RETRY_AFTER_CAP_S) if seconds >= 0 else None


def _excerpt(body: bytes | str | None) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
    text = printable(text).strip()
    if len(text) > BODY_EXCERPT_CHARS:
        return text[:BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"


def write_eml(email: OutgoingEmail, settings: EmailSettings, outbox_dir: Path) -> Path:
    """The message as a mail client would have received it, in `<message_id>.eml`: the same
    id rewrites the same file, so a period's rerun leaves one mail."""
    message = EmailMessage()
    message["Subject"] = email.subject
    message["From"] = settings.sender
    if settings.recipients:
        message["To"] = ", ".join(settings.recipients)
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(settings.sender)[1].rpartition("@")[2]
    message["Message-ID"] = f"<{email.message_id}@{domain}>"
    message[MESSAGE_ID_HEADER] = email.message_id
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    path = outbox_dir / f"{email.message_id}.eml"
    _write_atomically(path, message.as_bytes())
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader of the outbox sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
