"""The page's static assets: data is only ever rendered as text, nothing runs inline, and
nothing is fetched from elsewhere (the Content-Security-Policy would block it anyway, but
a page that relied on it would then be broken)."""

from __future__ import annotations

import re

import orjson
import pytest

from streams.dashboard.server import STATIC, sse_frame

HTML_SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(")
INLINE_HANDLER = re.compile(r"\bon[a-z]+\s*=", re.IGNORECASE)
REMOTE = re.compile(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)


@pytest.mark.parametrize("asset", ["app.js", "index.html", "style.css"])
def test_no_asset_parses_html_from_strings_or_sets_inline_handlers(asset: str) -> None:
    text = (STATIC / asset).read_text()
    assert not HTML_SINKS.findall(text)
    assert not INLINE_HANDLER.findall(text)
    assert not REMOTE.findall(text)


def test_the_page_runs_only_its_own_script() -> None:
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL)
    assert scripts == [""]  # one script, loaded from /static, with no inline body
    assert '<script src="/static/app.js"' in html
    assert "style=" not in html  # inline styles are refused by default-src 'self'


def test_the_checks_catch_what_they_are_for() -> None:
    assert HTML_SINKS.findall("cell.innerHTML = row.agent")
    assert INLINE_HANDLER.findall('<img src=x onerror="alert(1)">')
    assert REMOTE.findall('<script src="https://cdn.example/chart.js">')


def test_a_state_event_carries_multi_line_json_whole() -> None:
    data = orjson.dumps({"agent": "<img src=x onerror=alert(1)>\nline"}, option=orjson.OPT_INDENT_2)
    frame = sse_frame("state", data + b"\n")
    assert frame.startswith(b"event: state\n") and frame.endswith(b"\n\n")
    lines = frame.decode().split("\n")
    payload = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
    assert orjson.loads(payload) == {"agent": "<img src=x onerror=alert(1)>\nline"}
    assert frame.count(b"\n\n") == 1  # one event: no blank line inside it
