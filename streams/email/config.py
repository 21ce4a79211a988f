"""Where the reports are e-mailed from and to (SPEC section 8), read from the environment.

A bad address is refused when the settings are read, naming the variable, rather than
when a report is due hours later, or by SendGrid with a 400 that says less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.sendgrid.com"
DEFAULT_SENDER = "meta-supervisor@localhost"
DEFAULT_IC_SUBJECT = "[IC Weekly] MarketAgents Memo"

# An addr-spec without quoting or comments: enough for the addresses a team configures, and
# nothing that can end a header or smuggle in a second address. A domain without a dot is
# allowed (the default sender is at localhost).
_ADDR_SPEC = r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+"
_ADDRESS = re.compile(rf"(?P<name>[^<>]*?)\s*<(?P<bracketed>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC})")
_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')


def _address(value: str, variable: str) -> str:
    """`value` ("a@b.c" or "Name <a@b.c>") in the form SendGrid's client and the stdlib
    both read back as it was meant (a name with a comma quoted, not RFC 2047 encoded); a
    ValueError naming `variable` if it is not exactly one address."""
    value = value.strip()
    found = _ADDRESS.fullmatch(value) if value.isprintable() else None
    if found is None:
        raise ValueError(f"{variable}: {value!r} is not an e-mail address")
    name = (found["name"] or "").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    addr = found["bracketed"] or found["bare"]
    if not name:
        return addr
    if _NEEDS_QUOTES.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


@dataclass(frozen=True)
class EmailSettings:
    api_key: str | None  # SENDGRID_API_KEY
    base_url: str  # SENDGRID_BASE_URL
    recipients: tuple[str, ...]  # META_EMAIL_TO
    sender: str  # EMAIL_FROM
    ic_subject: str  # IC_MEMO_SUBJECT
    attempts: int = 4  # 1 + 3 retries
    backoff_s: float = 1.0  # 1, 2, 4 s between attempts (doubling)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must not be negative, not {self.backoff_s}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EmailSettings:
        base_url = env.get("SENDGRID_BASE_URL", "").strip() or DEFAULT_BASE_URL
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"SENDGRID_BASE_URL: {base_url!r} is not an http(s) address")
        subject = env.get("IC_MEMO_SUBJECT", "").strip() or DEFAULT_IC_SUBJECT
        if not subject.isprintable():
            raise ValueError(f"IC_MEMO_SUBJECT: {subject!r} holds a control character")
        # One address once: SendGrid refuses a message that lists an address twice.
        recipients: dict[str, str] = {}
        for item in env.get("META_EMAIL_TO", "").split(","):
            if item.strip():
                recipient = _address(item, "META_EMAIL_TO")
                recipients.setdefault(parseaddr(recipient)[1].lower(), recipient)
        return cls(
            api_key=env.get("SENDGRID_API_KEY", "").strip() or None,
            base_url=base_url.rstrip("/"),
            recipients=tuple(recipients.values()),
            sender=_address(env.get("EMAIL_FROM", "").strip() or DEFAULT_SENDER, "EMAIL_FROM"),
            ic_subject=subject,
        )

    def can_send(self) -> bool:
        return self.api_key is not None and bool(self.recipients)
