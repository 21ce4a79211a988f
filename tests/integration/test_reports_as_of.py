"""Reports from the real broker: a report taken mid-stream is rebuilt byte for byte later,
as of its time or its offsets, whatever was appended since; two replays agree."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from projections.log import LogRecord
from streams.broker.embedded import EmbeddedBroker
from tests.fakes.github import FakeGitHub
from tests.integration.stack import create_topics, metasup, produce, worker_settings
from tests.report_log import desk_log


async def produce_records(broker: EmbeddedBroker, prefix: str, records: list[LogRecord]) -> None:
    """The recorded values, in receipt order, each to its topic (one partition per topic
    here: `as_records` puts every event on partition 0)."""
    assert {r.partition for r in records} == {0}
    await produce(broker, prefix, [(r.topic, r.value or b"") for r in records])


async def test_a_report_taken_mid_stream_is_rebuilt_as_of_its_time_and_its_offsets(
    broker: EmbeddedBroker, prefix: str, tmp_path: Path
) -> None:
    await create_topics(broker, prefix)
    settings = worker_settings(prefix, tmp_path)
    log = list(desk_log())
    half = len(log) // 2
    await produce_records(broker, prefix, log[:half])

    # Nothing else produces here, so the report need not leave the last seconds out.
    live = ("report", "meta", "--settle", "0")
    code, said = await metasup(settings, broker, *live, "--out", str(tmp_path / "a"))
    assert code == 0, said
    then = (tmp_path / "a").read_bytes()
    meta = orjson.loads(then)["meta"]
    assert meta["records"] == half and meta["generated_at"] is not None

    await asyncio.sleep(0.01)  # the rest is received strictly later
    await produce_records(broker, prefix, log[half:])
    code, said = await metasup(settings, broker, *live, "--out", str(tmp_path / "now"))
    assert code == 0, said
    assert orjson.loads((tmp_path / "now").read_bytes())["meta"]["records"] == len(log)

    position = ",".join(f"{key}:{offset}" for key, offset in meta["position"].items())
    for words in (("--as-of", meta["generated_at"]), ("--as-of-offsets", position)):
        out = tmp_path / words[0]
        code, said = await metasup(settings, broker, "report", "meta", *words, "--out", str(out))
        assert code == 0, said
        assert out.read_bytes() == then, words[0]

    # Two replays of the whole log, each in a fresh process: the same bytes.
    code, said = await metasup(settings, broker, *live, "--out", str(tmp_path / "b"))
    assert code == 0, said
    assert (tmp_path / "b").read_bytes() == (tmp_path / "now").read_bytes()


async def test_report_kinds_render_and_a_bad_as_of_says_what_is_wrong(
    broker: EmbeddedBroker,
    prefix: str,
    tmp_path: Path,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_topics(broker, prefix)
    settings = worker_settings(prefix, tmp_path)
    await produce_records(broker, prefix, list(desk_log()))

    async def report(*words: str) -> tuple[int, str]:
        # Nothing else produces here: no need to leave the last seconds out.
        return await metasup(settings, broker, "report", *words, "--settle", "0")

    code, said = await report("kills")
    assert code == 0, said
    assert "stopped now:" in said and "agent llm-flaky killed by supervisor (auto)" in said
    code, said = await report("lineage")
    assert code == 0 and "llm-trend [llm_macro]" in said, said
    code, said = await report("forensics", "--format", "text")
    assert code == 0 and "worst" in said.lower(), said
    code, said = await report("pr-comment")
    assert code == 0 and "## Meta-supervisor report" in said, said
    github.answer = {"html_url": "https://github.com/o/r/pull/3#issuecomment-9"}
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test")
    code, said = await report("pr-comment", "--post", "o/r#3", "--github-api", github.url)
    assert code == 0 and "posted: https://github.com/o/r/pull/3#issuecomment-9" in said, said
    ((path, _, body),) = github.requests
    assert path == "/repos/o/r/issues/3/comments"
    assert orjson.loads(body)["body"].startswith("## Meta-supervisor report")
    code, said = await report("lp-email", "--format", "json")
    assert code == 0 and "[LP Daily] PnL" in said and "Not investment advice." in said, said
    code, said = await report("kills", "--format", "html")
    assert code == 2 and "kills comes as text, json" in said, said
    code, said = await report("meta", "--as-of-offsets", "kills:x:3")
    assert code == 2 and "partition" in said and "whole number" in said, said
    code, said = await report("meta", "--as-of", "2026-01-01T00:00")
    assert code == 2 and "timezone" in said, said
