"""The LP daily email: subject, lists and tables from hand-built logs (figures worked out in
tests/report_events.py and below); hostile agent names that stay text in the HTML."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

from projections.reports.lp_email import DISCLAIMER, LpEmail, lp_email
from projections.reports.meta import meta_report
from schemas.envelope import Event
from schemas.events import Decision
from tests.report_events import HOSTILE, T0, allocation, decision, folded, portfolio_log, trade

HOUR = timedelta(hours=1)


def email_of(events: list[Event]) -> LpEmail:
    return lp_email(meta_report(folded(events)))


def test_the_subject_is_the_deployed_pnl_and_max_drawdown_of_the_window() -> None:
    # portfolio_log: deployed PnL -100.0 bps, max drawdown 150.0 bps.
    assert email_of(portfolio_log()).subject == "[LP Daily] PnL -100.0 bps | DD 150.0 bps"
    # Its first trade alone: +100 at half weight, no fall from the peak.
    assert email_of(portfolio_log()[:2]).subject == "[LP Daily] PnL +50.0 bps | DD 0.0 bps"
    # A loss that rounds to zero is no "-0.0".
    tiny = [allocation(T0, {"alpha": 1.0}), trade("alpha", 1, -0.04)]
    assert email_of(tiny).subject == "[LP Daily] PnL +0.0 bps | DD 0.0 bps"


class Page(HTMLParser):
    """Every element and attribute of an HTML body, its text, and its table rows."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.in_cell = False
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.rows[-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag: str) -> None:
        self.in_cell = self.in_cell and tag not in ("td", "th")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.in_cell:
            self.rows[-1][-1] += data


def seventeen_agents(names: list[str]) -> list[Event]:
    """Agent i of 17 trades once for i - 8 bps (-8 .. +8); the last is PROMOTE, the first
    three KILL, RETIRE and KILLED, the others HOLD. The last two hold 40% and 10%."""
    made = [Decision.KILL, Decision.RETIRE, Decision.KILLED, *[Decision.HOLD] * 13]
    made.append(Decision.PROMOTE)
    events: list[Event] = [allocation(T0, {names[-1]: 0.4, names[-2]: 0.1})]
    for i, (name, outcome) in enumerate(zip(names, made, strict=True)):
        events += [trade(name, 1, float(i - 8)), decision(name, T0 + HOUR, outcome)]
    return events


NAMES = [f"a{i:02}" for i in range(17)]


def test_the_bodies_list_promotions_stops_weights_and_the_top_15_agents() -> None:
    email = email_of(seventeen_agents(NAMES))
    text = email.text
    assert "PROMOTE: a16" in text
    assert "KILL / RETIRE: a00 (KILL), a01 (RETIRE), a02 (KILLED)" in text
    # The 15 best window PnLs: a16 (+8) down to a02 (-6); a01 and a00 are left out.
    agents = text[text.index("Agents (top 15") :].splitlines()[2:17]
    assert [line.split()[0] for line in agents] == [f"a{i:02}" for i in range(16, 1, -1)]
    assert agents[0].split() == [
        "a16",
        "PROMOTE",
        "+8.0",
        "100.0%",
        "n/a",
        "n/a",
        "0.0000",
        "USD",
        "KEEP",
    ]
    page = Page(email.html)
    html_agents = page.rows[-16:]
    assert html_agents[0] == [
        "agent",
        "decision",
        "PnL bps",
        "hit",
        "err",
        "latency",
        "cost",
        "retire",
    ]
    assert [row[0] for row in html_agents[1:]] == [f"a{i:02}" for i in range(16, 1, -1)]
    assert html_agents[-1][:3] == ["a02", "KILLED", "-6.0"]
    # Weights: a16 40%, a15 10%, cash 50%.
    weights = page.rows[6:10]
    assert weights == [["agent", "weight"], ["a16", "40.0%"], ["a15", "10.0%"], ["cash", "50.0%"]]
    assert text.rstrip().endswith(DISCLAIMER)
    assert f'<p class="note">{DISCLAIMER}</p>' in email.html


def test_hostile_names_add_no_element_or_attribute_to_the_html() -> None:
    hostile = [*HOSTILE, *NAMES[len(HOSTILE) :]]
    plain, attacked = email_of(seventeen_agents(NAMES)), email_of(seventeen_agents(hostile))
    page = Page(attacked.html)
    assert page.elements == Page(plain.html).elements  # the same tags and attributes
    tags = {tag for tag, _ in page.elements}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "strong",
                    "table", "tr", "th", "td"}  # fmt: skip
    assert not any(name.startswith("on") for _, attrs in page.elements for name, _ in attrs)
    shown = "".join(page.text)
    for name in HOSTILE:
        assert name in shown  # as text, exactly as the agent named itself
    assert "<script>" not in attacked.html and "<img" not in attacked.html
