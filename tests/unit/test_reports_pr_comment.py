"""The PR comment: its figures from hand-built logs (worked out in tests/report_events.py
and below), and names from outside that render as their own text, never as markup."""

from __future__ import annotations

import html
import re
import string
from datetime import timedelta
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from projections.fleet import FleetProjection
from projections.reports.markup import md_text, printable
from projections.reports.meta import meta_report
from projections.reports.pr_comment import pr_comment
from schemas.envelope import Event
from schemas.events import Decision
from streams.core.fleet_state import default_policy, policy_at
from tests.report_events import (
    HOSTILE,
    T0,
    allocation,
    decision,
    folded,
    portfolio_log,
    run,
    trade,
)

HOUR = timedelta(hours=1)


def comment_of(projection: FleetProjection) -> str:
    clock = projection.clock
    policy = policy_at(projection.fleet, clock) if clock is not None else default_policy()
    return pr_comment(meta_report(projection), policy)


def section(comment: str, title: str) -> str:
    """The text of one `### title` section."""
    start = comment.index(f"### {title}")
    end = comment.find("\n### ", start + 1)
    return comment[start : end if end != -1 else len(comment)]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in `text`, split on unescaped pipes."""
    lines = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_the_portfolio_shows_deployed_and_unweighted_figures_worked_out_by_hand() -> None:
    comment = comment_of(folded(portfolio_log()))
    assert "**Severity: HIGH**" in comment  # the deployed PnL is negative
    assert table_rows(section(comment, "Portfolio")) == [
        ["PnL", "-100.0 bps", "-240.0 bps"],
        ["max drawdown", "150.0 bps", "340.0 bps"],
        ["current drawdown", "150.0 bps", "n/a"],
        ["hit rate", "n/a", "33.3%"],
        ["CVaR 95", "n/a", "-300.0 bps"],
    ]
    assert "3 trades in the window · regime n/a · 2 agents, 2 trading" in comment


def test_the_decisions_are_the_ten_most_recent_one_per_agent() -> None:
    # Agent i decides at T0 + i hours, but a06 at 5 h like a05 (a tie: name order); a11
    # changed twice, and shows its newest decision only. The ten most recent: a11 .. a07,
    # a05, a06, a04, a03, a02; a01 and a00 are older.
    events: list[Event] = [decision("a11", T0 - HOUR, Decision.HOLD)]
    events += [
        decision(f"a{i:02}", T0 + (5 if i == 6 else i) * HOUR, Decision.HOLD) for i in range(12)
    ]
    events.append(decision("a11", T0 + 11 * HOUR, Decision.PROMOTE, Decision.HOLD, ["gate"]))
    rows = table_rows(section(comment_of(folded(events)), "Decisions"))
    assert [row[1] for row in rows] == [
        "a11", "a10", "a09", "a08", "a07", "a05", "a06", "a04", "a03", "a02",
    ]  # fmt: skip
    assert rows[0] == ["2025-03-01T11:00:00Z", "a11", "**PROMOTE**", "HOLD", "gate"]


def test_the_allocation_shows_the_ten_largest_weights_the_rest_and_cash() -> None:
    # Weights 1% .. 12% (78% in all): the ten largest 12% .. 3%, two others 2% + 1% = 3%,
    # and 22% in cash.
    weights = {f"a{i:02}": (i + 1) / 100 for i in range(12)}
    allocated = section(comment_of(folded([allocation(T0, weights, regime="MIXED")])), "Allocation")
    assert "As of 2025-03-01T00:00:00Z, regime MIXED, cap 100.0% of capital." in allocated
    assert table_rows(allocated) == [
        *[[f"a{i:02}", f"{i + 1}.0%"] for i in range(11, 1, -1)],
        ["2 others", "3.0%"],
        ["cash", "22.0%"],
    ]


def test_the_promotion_gate_is_shown_as_it_stands_with_what_fails() -> None:
    # alpha: 20 trades of +10/+20 (300 bps, all hits), 20 runs without error at 100 ms,
    # no multiplier update (1.0): passes. beta: 5 trades of +10: too few, 50 bps < 150.
    events: list[Event] = []
    for k in range(1, 21):
        events += [run("alpha", k), trade("alpha", k, 10.0 if k % 2 else 20.0)]
    for k in range(1, 6):
        events += [run("beta", k), trade("beta", k, 10.0)]
    events.append(decision("alpha", T0 + 21 * 24 * HOUR, Decision.PROMOTE, Decision.HOLD))
    events.append(decision("beta", T0 + 24 * HOUR, Decision.HOLD))
    projection = folded(events)
    gate = section(comment_of(projection), "Promotion gate")
    assert "1 of 2 agents pass it over the window now; 1 recorded as PROMOTE." in gate
    alpha, beta = table_rows(gate)
    psr = meta_report(projection).agents[0].stats.psr
    assert psr is not None
    assert alpha == ["alpha", "PROMOTE", "pass", f"{psr:.3f}", alpha[4], ""]
    assert beta[:3] == ["beta", "HOLD", "fail"]
    assert beta[5] == md_text("not enough evidence: 5 of 20 trades; pnl_sum 50.0 bps < 150.0 bps")


def test_an_empty_log_gives_a_comment_that_says_so() -> None:
    comment = comment_of(FleetProjection())
    assert "No decision yet." in comment
    assert "No allocation yet: all in cash." in comment


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_hostile_names_are_text_in_the_comment_never_markup() -> None:
    events: list[Event] = [allocation(T0, {name: 0.05 for name in HOSTILE}, regime="<b>X</b>")]
    for k, name in enumerate(HOSTILE, start=1):
        events += [
            trade(name, k, -10.0),
            decision(name, T0 + k * HOUR, Decision.HOLD, None, [name]),
        ]
    comment = comment_of(folded(events))
    parser = Tags()
    parser.feed(comment)
    assert parser.tags == []  # no HTML element at all: every < of a name is an entity
    for title in ("Decisions", "Allocation", "Promotion gate"):
        rows = table_rows(section(comment, title))
        assert len({len(row) for row in rows}) == 1  # no name split or ended a table row
    for name in HOSTILE:
        assert md_text(name) in comment
    assert "](" not in comment.replace("\\](", "")  # no link or image can open


ENTITIES = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


def shown(markdown: str) -> str:
    """What CommonMark displays for text of plain characters, backslash escapes and the
    entities html.escape writes; fails on any unescaped ASCII punctuation (which could
    start emphasis, code, a link, an image, a table cell, HTML or an autolink)."""
    out, i = [], 0
    while i < len(markdown):
        char = markdown[i]
        if char == "\\":
            assert markdown[i + 1] in string.punctuation
            out.append(markdown[i + 1])
            i += 2
        elif char == "&":
            entity = ENTITIES.match(markdown, i)
            assert entity is not None
            out.append(html.unescape(entity.group()))
            i = entity.end()
        else:
            assert char not in string.punctuation, f"unescaped {char!r} in {markdown!r}"
            out.append(char)
            i += 1
    return "".join(out)


@given(st.text())
def test_md_text_shows_the_text_itself_with_no_markup_and_no_mention(text: str) -> None:
    # One line (control characters as spaces), and a zero-width space after each "@".
    assert shown(md_text(text)) == printable(text).replace("@", "@\u200b")
