"""What the readable reports share: names from outside made inert, numbers in one format,
tables for terminals and for markdown.

Agent names, strategy classes and reasons come from outside the supervisor (the agents
name themselves, operators write reasons), and the reports are read where markup runs: a
pull-request comment, an e-mail. So every such string goes through `md_text` (markdown)
or `html.escape` (HTML) on its way in, and through `printable` in plain text.
"""

from __future__ import annotations

import html
import string
from collections.abc import Sequence

MISSING = "n/a"

# After an "@", so that GitHub, which finds mentions in the rendered text (a backslash
# escape does not stop it), pings nobody; the same trick bots use for quoted release notes.
_ZERO_WIDTH_SPACE = "\u200b"
_HTML_SPECIAL = frozenset("&<>\"'")
_MARKDOWN_PUNCTUATION = frozenset(string.punctuation) - _HTML_SPECIAL


def printable(value: str) -> str:
    """`value` on one line with its control and format characters as spaces: a name must
    not end a table row, move a terminal's cursor or reverse the text after it."""
    return "".join(char if char.isprintable() else " " for char in value)


def md_text(value: str) -> str:
    """`value` as literal markdown text: every ASCII punctuation character backslash-escaped
    (no emphasis, link, image, code, table cell or autolink can start), the HTML specials as
    entities (no tag), and no mention."""
    out = []
    for char in printable(value):
        if char in _HTML_SPECIAL:
            out.append(html.escape(char, quote=True))
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
        if char == "@":
            out.append(_ZERO_WIDTH_SPACE)
    return "".join(out)


def signed_bps(value: float) -> str:
    """A PnL in bps: one decimal and its sign (a loss rounding to zero shows as +0.0)."""
    return f"{round(value, 1) + 0.0:+.1f}"


def bps(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def share(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1%}"


def ratio(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def latency(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f} ms"


def usd(value: float | None) -> str:
    """LLM costs are cents or less per run: four decimals."""
    return MISSING if value is None else f"{value:.4f} USD"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns padded to their widest cell, numbers right-aligned where a header says so
    (a header ending in ">")."""
    right = [header.endswith(">") for header in headers]
    names = [header.removesuffix(">") for header in headers]
    cells = [names, *[[printable(cell) for cell in row] for row in rows]]
    widths = [max(len(line[k]) for line in cells) for k in range(len(names))]
    lines = [
        "  ".join(
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(line, widths, right, strict=True)
        ).rstrip()
        for line in cells
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub table; cells must be markdown already (user text through `md_text`), and a
    header ending in ">" right-aligns its column."""
    names = [header.removesuffix(">") for header in headers]
    rules = ["---:" if header.endswith(">") else "---" for header in headers]
    lines = [names, rules, *rows]
    return "".join("| " + " | ".join(line) + " |\n" for line in lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table with every cell escaped (`html.escape`, quotes too): cells are text,
    never markup; a header ending in ">" right-aligns its column."""
    right = [header.endswith(">") for header in headers]
    head = "".join(f"<th>{html.escape(h.removesuffix('>'), quote=True)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(cell, quote=True)}</td>'
            if align
            else f"<td>{html.escape(cell, quote=True)}</td>"
            for cell, align in zip(row, right, strict=True)
        )
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"
