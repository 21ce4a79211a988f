"""The three e-mailed reports as messages: a subject, a plain-text body and an HTML body.
Pure.

Markdown (the IC memo the LLM writes, the forensics report) becomes HTML through
markdown-it-py with raw HTML disabled, so a tag in the source, from an LLM or from an agent
that named itself, is shown as text and never becomes markup. Images are disabled too: a
mail client loads them without a click, so an injected image address would learn who
opened the mail and when. Links stay (they need a click), and markdown-it drops the
`javascript:`, `vbscript:`, `file:` and `data:` ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt

from projections.reports.forensics import ForensicsReport, forensics_markdown, forensics_text
from projections.reports.lp_email import LpEmail
from projections.reports.markup import MISSING
from schemas.envelope import format_utc

EmailKind = Literal["ic-memo", "lp-email", "forensics"]

# A file name in the outbox and the local part of a Message-ID: no path separator, no
# leading dot, nothing a header would have to quote.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")

_STYLE = """<style>
body { font-family: Arial, Helvetica, sans-serif; color: #222; }
table { border-collapse: collapse; margin: 0 0 16px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
</style>"""


@dataclass(frozen=True)
class OutgoingEmail:
    kind: EmailKind
    message_id: str  # the caller's deterministic id (the period's run id)
    subject: str
    text: str
    html: str

    def __post_init__(self) -> None:
        if not _MESSAGE_ID.fullmatch(self.message_id):
            raise ValueError(
                f"message id {self.message_id!r}: letters, digits, '.', '_' and '-' only, "
                "not starting with '.'"
            )
        if not self.subject.isprintable():
            raise ValueError(f"subject {self.subject!r} holds a control character")


def markdown_html(markdown: str) -> str:
    """`markdown` as an HTML document in which no tag of the source survives as markup."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head>\n<meta charset="utf-8">',
        _STYLE,
        "</head>",
        "<body>",
        _MARKDOWN.render(markdown).rstrip("\n"),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def ic_memo_email(message_id: str, markdown: str, subject: str) -> OutgoingEmail:
    """The memo's markdown is its plain text: it reads as written."""
    return OutgoingEmail(
        kind="ic-memo",
        message_id=message_id,
        subject=subject,
        text=markdown,
        html=markdown_html(markdown),
    )


def lp_email_message(message_id: str, lp: LpEmail) -> OutgoingEmail:
    """The LP email is rendered already, every name escaped (projections.reports.lp_email)."""
    return OutgoingEmail(
        kind="lp-email", message_id=message_id, subject=lp.subject, text=lp.text, html=lp.html
    )


def forensics_subject(report: ForensicsReport) -> str:
    as_of = MISSING if report.event_time is None else format_utc(report.event_time)
    return f"[Forensics] {len(report.worst)} worst trades | {as_of}"


def forensics_email(message_id: str, report: ForensicsReport) -> OutgoingEmail:
    return OutgoingEmail(
        kind="forensics",
        message_id=message_id,
        subject=forensics_subject(report),
        text=forensics_text(report),
        html=markdown_html(forensics_markdown(report)),
    )
