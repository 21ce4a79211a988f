"""The dashboard page in headless Chromium against a real broker: what an operator sees and
does, including what a hostile agent name must not do (the JSON behind it is
test_dashboard's)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from projections.log import events
from schemas.events import DecisionMade, RunCompleted
from streams.broker.durable_log import DurableLog
from streams.broker.embedded import EmbeddedBroker
from streams.broker.recorder import Recorder
from streams.broker.restore import restore
from streams.dashboard.server import run_dashboard
from streams.fleet.commands import new_key
from streams.runtime.settings import Settings
from tests.conftest import eventually
from tests.integration import test_dashboard
from tests.integration.stack import Worker, create_topics, produce
from tests.integration.test_dashboard import (
    HOSTILE,
    TOKEN,
    StartDashboard,
    commands_on_the_log,
    dashboard_settings,
    produce_log,
)
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log

pytest.importorskip("playwright", reason="playwright is not installed: pip install -e '.[dev]'")
from playwright.async_api import ConsoleMessage, Dialog, Page, async_playwright, expect

# The dashboard fixture test_dashboard starts its tests with (bound here so pytest finds it).
start_dashboard = test_dashboard.start_dashboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium executable found: install chromium: apt-get install chromium",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


@asynccontextmanager
async def browser_page(url: str, *, expected_errors: tuple[str, ...] = ()) -> AsyncIterator[Page]:
    """The dashboard open in a fresh headless Chromium; fails the test on any page error,
    console error or dialog (an `alert` from a hostile name would be one), except console
    errors naming one of `expected_errors` (Chromium logs every refused fetch)."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        source = message.location["url"]
        if message.type == "error" and not any(part in source for part in expected_errors):
            problems.append(f"console error: {message.text} ({source})")

    async def dialog(opened: Dialog) -> None:
        problems.append(f"{opened.type}: {opened.message}")
        await opened.dismiss()  # an open dialog would stall the page, hiding why

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", console)
            page.on("dialog", dialog)
            page.set_default_timeout(10_000)
            await page.goto(url)
            yield page
        finally:
            await browser.close()
    assert problems == []


async def test_the_page_shows_the_desk_and_live_events_with_names_as_text(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, start_dashboard: StartDashboard
) -> None:
    await create_topics(broker, prefix)
    records = desk_log()
    await produce_log(broker, prefix, records)
    desk = list(events(records, verifier=SUPERVISOR_KEY.verifier))
    agents = sorted({e.agent for e in desk if isinstance(e, RunCompleted)})
    dashboard = await start_dashboard(dashboard_settings(prefix, tmp_path))

    async with browser_page(dashboard.url + "/") as page:
        names = page.locator("#agents tbody tr td:first-child")
        await expect(names).to_have_text(agents, timeout=20_000)
        await expect(page.locator("#connection")).to_have_text("live")
        await expect(page.locator("#as-of")).to_contain_text(f"{len(records)} records")
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        clock = max(e.ts for e in desk if isinstance(e, DecisionMade))
        run = RunCompleted.create(
            ts=clock,
            producer="test",
            agent=HOSTILE,
            run_id=uuid.uuid4(),
            started_at=clock - timedelta(seconds=3),
            latency_ms=3000.0,
            cost_usd=0.25,
        )
        await produce(broker, prefix, [run])
        await expect(names).to_have_text(sorted([*agents, HOSTILE]), timeout=5_000)
        assert await page.evaluate("window.loadedOnce") is True
        hostile = names.filter(has_text="onerror")
        assert await hostile.text_content() == HOSTILE
        assert await page.locator("#agents img").count() == 0
        assert await page.locator("img").count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)


async def test_the_operator_form_refuses_without_the_token_and_kills_with_it(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path, start_dashboard: StartDashboard
) -> None:
    await create_topics(broker, prefix)
    (tmp_path / "operator-keys.json").write_bytes(orjson.dumps({"ops": new_key()}))
    settings = dashboard_settings(
        prefix, tmp_path, dashboard_token=SecretStr(TOKEN), dashboard_actor="ops"
    )
    # The worker's supervisor turns the dashboard's signed command into a kill.
    worker = Worker(broker, settings)
    worker.start()
    try:
        dashboard = await start_dashboard(settings)
        async with browser_page(
            dashboard.url + "/", expected_errors=("/api/commands/kill",)
        ) as page:
            await expect(page.locator("#kill-active")).to_have_text("nothing is killed")
            await page.locator("#op-action").select_option("kill")
            await page.locator("#op-target-type").select_option("agent")
            await page.locator("#op-target").fill("llm-flaky")
            await page.locator("#op-reason").fill("runaway losses")
            answer = page.locator("#op-answer")

            await page.get_by_role("button", name="send").click()
            await expect(answer).to_contain_text("HTTP 401")
            await expect(answer).to_have_class("answer error")
            assert await commands_on_the_log(broker, prefix) == []

            await page.locator("#op-token").fill(TOKEN)
            await page.get_by_role("button", name="send").click()
            await expect(answer).to_contain_text("HTTP 202")
            [sent] = await commands_on_the_log(broker, prefix)
            assert (sent.target_type, sent.target, sent.actor) == ("agent", "llm-flaky", "ops")
            await expect(page.locator("#kill-active li")).to_contain_text(
                ["llm-flaky"], timeout=40_000
            )
            await expect(page.locator("#kill-history tbody tr")).not_to_have_count(0)
    finally:
        await worker.stop()


def run_of(agent: str, ts: datetime) -> RunCompleted:
    return RunCompleted.create(
        ts=ts,
        producer="test",
        agent=agent,
        run_id=uuid.uuid4(),
        started_at=ts - timedelta(seconds=3),
        latency_ms=3000.0,
        cost_usd=0.25,
    )


@asynccontextmanager
async def serving(broker: EmbeddedBroker, settings: Settings) -> AsyncIterator[str]:
    """`run_dashboard` as `metasup up` runs it, its address; stopped on leaving, and it must
    stop within seconds (its open event streams included)."""
    stop = asyncio.Event()
    said: list[str] = []
    task = asyncio.create_task(
        run_dashboard(broker.bootstrap, stop, settings, SUPERVISOR_KEY.verifier, said.append)
    )
    try:
        await eventually(lambda: any(line.startswith("dashboard: ") for line in said), 10)
        [url] = [line.removeprefix("dashboard: ") for line in said if "http" in line]
        yield url.rstrip("/")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_page_reconnects_by_itself_after_the_stack_restarts(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await create_topics(broker, prefix)
    clock = datetime(2026, 3, 2, 12, tzinfo=UTC)
    await produce(broker, prefix, [run_of("llm-before", clock)])
    durable_log = DurableLog(tmp_path / "log.sqlite3")
    recorder = Recorder(broker.bootstrap, durable_log)
    await recorder.start()
    settings = dashboard_settings(prefix, tmp_path)
    async with (
        browser_page("about:blank", expected_errors=("/events",)) as page,
        aiohttp.ClientSession() as http,
    ):
        async with serving(broker, settings) as url:
            await page.goto(url + "/")
            names = page.locator("#agents tbody tr td:first-child")
            await expect(names).to_have_text(["llm-before"], timeout=20_000)
            await expect(page.locator("#connection")).to_have_text("live")
            await page.evaluate("window.loadedOnce = true")  # gone if the page reloads
            stream = await http.get(url + "/events")
            await stream.content.readline()  # open
            await recorder.drain()
            await recorder.stop()
        # The server stopped within seconds (`serving` checks), its event streams ended
        # cleanly: read to the end without a cut chunk.
        await asyncio.wait_for(stream.content.read(), 5)
        assert stream.content.at_eof()
        stream.release()
        await expect(page.locator("#connection")).to_have_text("reconnecting…")

        broker.stop()  # the broker too, restored from the durable log as `metasup up` does
        await broker.start()
        assert (await restore(broker.bootstrap, durable_log)).records >= 1
        async with serving(broker, settings) as again:
            assert again == url  # the same port
            await expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
            await expect(names).to_have_text(["llm-before"], timeout=20_000)
            await produce(broker, prefix, [run_of("llm-after", clock + timedelta(minutes=1))])
            await expect(names).to_have_text(["llm-after", "llm-before"], timeout=5_000)
            assert await page.evaluate("window.loadedOnce") is True
