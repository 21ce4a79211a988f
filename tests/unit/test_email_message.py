"""The e-mailed reports as messages: markdown becomes HTML in which no tag, event handler,
script link or image of the source survives (an LLM wrote the memo, agents name
themselves), the forensics mail carries its report, and an id that could leave the outbox
or a subject that could end a header is refused."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from projections.reports.forensics import ForensicsReport, forensics_report, forensics_text
from projections.reports.lp_email import lp_email
from projections.reports.meta import meta_report
from schemas.envelope import Event
from streams.email.message import (
    OutgoingEmail,
    forensics_email,
    ic_memo_email,
    lp_email_message,
    markdown_html,
)
from tests.report_events import HOSTILE, folded, portfolio_log, run, trade


class Page(HTMLParser):
    """The elements of an HTML body (tag, attributes) and its text."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data

    def tags(self) -> list[str]:
        return [tag for tag, _ in self.elements]

    def handlers(self) -> list[str]:
        return [name for _, attrs in self.elements for name in attrs if name.startswith("on")]

    def hrefs(self) -> list[str | None]:
        return [attrs.get("href") for tag, attrs in self.elements if tag == "a"]


def assert_inert(page: Page) -> None:
    assert not {"script", "img", "iframe", "object", "embed", "form"} & set(page.tags())
    assert page.handlers() == []
    assert all(href and href.startswith("https://") for href in page.hrefs())


def test_raw_html_in_markdown_is_shown_as_text_not_markup() -> None:
    markdown = (
        "# Memo\n\n"
        "<script>alert(1)</script>\n\n"
        'Then <img src=x onerror=alert(1)> and <a href="#" onclick="steal()">here</a>.\n'
    )
    page = Page(markdown_html(markdown))

    assert_inert(page)
    assert page.tags().count("a") == 0
    assert "<script>alert(1)</script>" in page.text
    assert "<img src=x onerror=alert(1)>" in page.text
    assert '<a href="#" onclick="steal()">here</a>' in page.text


def test_script_links_and_images_render_inert_while_a_web_link_stays() -> None:
    markdown = (
        "[click](javascript:alert(1)) [vb](vbscript:msgbox) [data](data:text/html,<b>x</b>)\n\n"
        "![pixel](https://evil.example/p.png?who=you)\n\n"
        "[the dashboard](https://dash.example/fleet)\n"
    )
    page = Page(markdown_html(markdown))

    assert_inert(page)
    # The image is not loaded; its address is only the target of a link a reader may click.
    assert page.hrefs() == ["https://evil.example/p.png?who=you", "https://dash.example/fleet"]
    assert "[click](javascript:alert(1))" in page.text


def test_markdown_structure_renders_headings_lists_and_tables() -> None:
    markdown = (
        "# Executive summary\n\nFleet **up**.\n\n- one\n- two\n\n"
        "| agent | pnl |\n|---|---:|\n| alpha | +1.0 |\n"
    )
    page = Page(markdown_html(markdown))

    assert page.tags()[:2] == ["html", "head"]
    assert {"h1", "strong", "ul", "li", "table", "th", "td"} <= set(page.tags())
    assert "alpha" in page.text and "+1.0" in page.text


def test_the_ic_memo_mail_is_the_markdown_as_text_and_rendered_as_html() -> None:
    markdown = "# Executive summary\n\n<b>risk</b> & return\n"
    email = ic_memo_email("ic-2025-w10", markdown, "[IC Weekly] MarketAgents Memo")

    assert (email.kind, email.message_id) == ("ic-memo", "ic-2025-w10")
    assert email.subject == "[IC Weekly] MarketAgents Memo"
    assert email.text == markdown
    page = Page(email.html)
    assert "b" not in page.tags() and "<b>risk</b> & return" in page.text


def test_the_lp_mail_is_the_lp_email_as_rendered() -> None:
    lp = lp_email(meta_report(folded(portfolio_log())))
    email = lp_email_message("lp-2025-03-04", lp)

    assert email.kind == "lp-email"
    assert (email.subject, email.text, email.html) == (lp.subject, lp.text, lp.html)


def hostile_forensics() -> ForensicsReport:
    events: list[Event] = []
    for k, name in enumerate(HOSTILE, start=1):
        events += [run(name, k), trade(name, k, -10.0 * k)]
    return forensics_report(folded(events))


def test_the_forensics_mail_names_its_trades_and_date_and_keeps_hostile_names_text() -> None:
    report = hostile_forensics()
    email = forensics_email("forensics-2025-03-09", report)

    # Seven losing trades; the last exits on day 7 + 1 (T0 is 2025-03-01).
    assert email.subject == "[Forensics] 7 worst trades | 2025-03-09T00:00:00Z"
    assert email.text == forensics_text(report)
    page = Page(email.html)
    assert_inert(page)
    assert page.hrefs() == []
    for name in HOSTILE:
        assert name in page.text.replace("@\u200b", "@")


def test_the_forensics_subject_of_an_empty_log_says_so() -> None:
    email = forensics_email("forensics-empty", forensics_report(folded([])))
    assert email.subject == "[Forensics] 0 worst trades | n/a"


@pytest.mark.parametrize("message_id", ["", "../etc/passwd", "a/b", ".hidden", "a b", "a\nb"])
def test_an_id_that_is_no_plain_file_name_is_refused(message_id: str) -> None:
    with pytest.raises(ValueError, match="message id"):
        OutgoingEmail("forensics", message_id, "subject", "text", "<p>html</p>")


def test_a_subject_that_would_end_its_header_is_refused() -> None:
    with pytest.raises(ValueError, match="subject"):
        ic_memo_email("ic-1", "memo", "Memo\r\nBcc: someone@evil.example")
