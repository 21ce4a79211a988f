"""The streaming replay engine over the durable log: order, as-of by time and by offsets,
the position it reports, memory that does not grow with the log, and `metasup replay`."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from projections.log import LogRecord, LogUnavailable, merged_by_receipt, read_durable_log
from projections.replay import (
    EPOCH,
    AsOf,
    AsOfError,
    DurableLogSource,
    Replay,
    format_offsets,
    open_source,
    parse_as_of_offsets,
)
from schemas.envelope import format_utc
from streams.broker.durable_log import DurableLog, StoredRecord
from streams.broker.embedded import free_port
from streams.cli.main import main
from tests.keys import SUPERVISOR_KEY
from tests.report_log import desk_log

Key = tuple[str, int, int]  # topic, partition, offset
PREFIX = "t1."


def write_log(path: Path, partitions: dict[str, int], records: Iterable[LogRecord]) -> Path:
    durable_log = DurableLog(path)
    durable_log.set_topics(partitions)
    durable_log.append(
        StoredRecord(r.topic, r.partition, r.offset, r.timestamp_ms, None, r.value) for r in records
    )
    durable_log.close()
    return path


def partition_log(path: Path, stamps: dict[tuple[str, int], list[int]]) -> Path:
    """A log whose partition (topic, p) holds records received at the given ms, in order."""
    records = [
        LogRecord(topic, partition, offset, ms, f"{topic}{partition}@{offset}".encode())
        for (topic, partition), stamps_ms in stamps.items()
        for offset, ms in enumerate(stamps_ms)
    ]
    partitions: Counter[str] = Counter()
    for topic, partition in stamps:
        partitions[topic] = max(partitions[topic], partition + 1)
    return write_log(path, dict(partitions), records)


def keys(records: Iterable[LogRecord]) -> list[Key]:
    return [(r.topic, r.partition, r.offset) for r in records]


def replay(path: Path, topics: list[str], as_of: AsOf | None = None) -> tuple[Replay, list[Key]]:
    with closing(DurableLogSource(path)) as source:
        run = Replay(source, topics, as_of, progress=False)
        return run, keys(run)


def at_ms(ms: float) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# --- the durable-log source --------------------------------------------------------------


def test_durable_source_knows_every_partition_and_streams_one_up_to_an_end(
    tmp_path: Path,
) -> None:
    path = partition_log(tmp_path / "log.sqlite3", {("a", 0): [1, 2, 3], ("a", 1): [4, 5]})
    DurableLog(path).set_topics({"b": 1})  # a topic with no records yet
    with closing(DurableLogSource(path)) as source:
        ends = source.end_offsets(["a", "b", "missing"])
        assert ends == {("a", 0): 3, ("a", 1): 2, ("b", 0): 0}
        assert keys(source.partition_records("a", 0, 2)) == [("a", 0, 0), ("a", 0, 1)]


def test_a_missing_durable_log_is_an_error_not_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(LogUnavailable, match="no durable log at"):
        DurableLogSource(tmp_path / "nowhere.sqlite3")
    assert not (tmp_path / "nowhere.sqlite3").exists()


def test_an_unreachable_broker_falls_back_to_the_durable_log_and_says_so(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    path = partition_log(tmp_path / "log.sqlite3", {("a", 0): [1]})
    with closing(open_source(bootstrap, path, timeout_s=10)) as source:
        assert source.description == f"durable log {path} (broker {bootstrap} not reachable)"
    with pytest.raises(LogUnavailable, match="is it running"):
        open_source(bootstrap, None, timeout_s=10)
    with pytest.raises(LogUnavailable, match="is it running"):
        open_source(bootstrap, tmp_path / "absent.sqlite3", timeout_s=10)


# --- order ---------------------------------------------------------------------------


def test_equal_receipt_times_on_several_partitions_order_by_topic_partition_offset(
    tmp_path: Path,
) -> None:
    stamps = {("b", 0): [100, 100, 300], ("a", 1): [100, 200], ("a", 0): [200, 200]}
    run, got = replay(partition_log(tmp_path / "log.sqlite3", stamps), ["a", "b"])
    assert got == [
        ("a", 1, 0),  # 100
        ("b", 0, 0),  # 100
        ("b", 0, 1),  # 100
        ("a", 0, 0),  # 200
        ("a", 0, 1),  # 200
        ("a", 1, 1),  # 200
        ("b", 0, 2),  # 300
    ]
    assert run.records_by_topic == {"a": 4, "b": 3}
    assert run.position == {("a", 0): 2, ("a", 1): 2, ("b", 0): 3}
    assert run.newest_received_at == at_ms(300)


def test_a_partition_whose_receipt_times_go_back_keeps_its_own_order(tmp_path: Path) -> None:
    stamps = {("a", 0): [10, 30, 20], ("a", 1): [15, 25]}
    path = partition_log(tmp_path / "log.sqlite3", stamps)
    _, got = replay(path, ["a"])
    # a0@20 comes after a0@30, as it was written; a1@25 is merged in before a0@30.
    assert got == [("a", 0, 0), ("a", 1, 0), ("a", 1, 1), ("a", 0, 1), ("a", 0, 2)]
    assert got == keys(merged_by_receipt(read_durable_log(path, ["a"])))


def test_only_the_topics_asked_for_are_replayed(tmp_path: Path) -> None:
    stamps = {("a", 0): [1, 2], ("b", 0): [1], ("c", 0): [3]}
    run, got = replay(partition_log(tmp_path / "log.sqlite3", stamps), ["c", "a"])
    assert got == [("a", 0, 0), ("a", 0, 1), ("c", 0, 0)]
    assert set(run.position) == {("a", 0), ("c", 0)}


# --- as of ---------------------------------------------------------------------------


def test_as_of_a_time_filters_every_partition_to_its_end(tmp_path: Path) -> None:
    stamps = {("a", 0): [10, 30, 20], ("a", 1): [15, 25, 40]}
    path = partition_log(tmp_path / "log.sqlite3", stamps)
    run, got = replay(path, ["a"], AsOf(received_until=at_ms(25)))
    # a0@20 follows a later record and is still part of what was known at 25.
    assert got == [("a", 0, 0), ("a", 1, 0), ("a", 0, 2), ("a", 1, 1)]
    assert run.records_read == run.records_to_read == 6
    assert run.records_by_topic == {"a": 4}
    assert run.position == {("a", 0): 3, ("a", 1): 2}
    assert run.newest_received_at == at_ms(25)


@pytest.mark.parametrize(
    ("until_ms", "kept"),
    [(24.999, [10, 15, 20]), (25, [10, 15, 20, 25]), (25.999, [10, 15, 20, 25])],
)
def test_a_record_received_exactly_at_the_as_of_time_is_kept(
    tmp_path: Path, until_ms: float, kept: list[int]
) -> None:
    path = partition_log(tmp_path / "log.sqlite3", {("a", 0): [10, 15, 20, 25, 26]})
    _, got = replay(path, ["a"], AsOf(received_until=at_ms(until_ms)))
    assert [[10, 15, 20, 25, 26][offset] for _, _, offset in got] == kept


def test_as_of_offsets_stop_named_partitions_and_read_the_others_to_their_end(
    tmp_path: Path,
) -> None:
    stamps = {("a", 0): [1, 2, 3, 4], ("a", 1): [1, 2, 3], ("b", 0): [5, 6]}
    path = partition_log(tmp_path / "log.sqlite3", stamps)
    as_of = AsOf(offsets={("a", 0): 2, ("b", 0): 99})  # 99: past the end, read to the end
    run, got = replay(path, ["a", "b"], as_of)
    assert got == [
        ("a", 0, 0),
        ("a", 1, 0),
        ("a", 0, 1),
        ("a", 1, 1),
        ("a", 1, 2),
        ("b", 0, 0),
        ("b", 0, 1),
    ]
    assert run.records_to_read == 2 + 3 + 2
    assert run.position == {("a", 0): 2, ("a", 1): 3, ("b", 0): 2}


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ({("a", 5): 1}, "a:5, which this replay does not read"),
        ({("zzz", 0): 1}, r"zzz:0, which this replay does not read \(partitions of: a\)"),
    ],
)
def test_as_of_offsets_naming_what_is_not_replayed_are_refused(
    tmp_path: Path, offsets: dict[tuple[str, int], int], message: str
) -> None:
    path = partition_log(tmp_path / "log.sqlite3", {("a", 0): [1]})
    with pytest.raises(AsOfError, match=message):
        replay(path, ["a"], AsOf(offsets=offsets))


def test_the_position_reached_given_back_as_offsets_replays_the_same_records(
    tmp_path: Path,
) -> None:
    stamps = {("a", 0): [10, 20, 30, 40], ("a", 1): [5, 35], ("b", 0): [50]}
    path = partition_log(tmp_path / "log.sqlite3", stamps)
    by_time, got = replay(path, ["a", "b"], AsOf(received_until=at_ms(30)))
    assert by_time.position == {("a", 0): 3, ("a", 1): 1, ("b", 0): 0}
    pasted = format_offsets(by_time.position)
    assert pasted == "a:0:3,a:1:1,b:0:0"
    _, again = replay(path, ["a", "b"], AsOf(offsets=parse_as_of_offsets(pasted)))
    assert again == got


def test_as_of_is_a_time_or_offsets_never_both() -> None:
    with pytest.raises(AsOfError, match="not both"):
        AsOf(received_until=at_ms(1), offsets={("a", 0): 1})
    with pytest.raises(AsOfError, match="timezone"):
        AsOf(received_until=datetime(2024, 1, 1))  # noqa: DTZ001


def test_as_of_offsets_are_parsed_and_printed_back_alike() -> None:
    text = "kills:0:15,signals:0:1200,signals:1:980"
    parsed = parse_as_of_offsets(" signals:1:980, signals:0:1200 ,kills:0:15")
    assert parsed == {("signals", 1): 980, ("signals", 0): 1200, ("kills", 0): 15}
    assert format_offsets(parsed) == text
    assert format_offsets({("t1.runs", 0): 3}, prefix="t1.") == "runs:0:3"
    assert parse_as_of_offsets("runs:0:3", prefix="t1.") == {("t1.runs", 0): 3}
    assert parse_as_of_offsets("t9.x-y_z:3:0") == {("t9.x-y_z", 3): 0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no offsets given"),
        (" , ", "no offsets given"),
        ("signals", "'signals' is not topic:partition:offset"),
        ("signals:0", "'signals:0' is not topic:partition:offset"),
        (":0:5", "':0:5' is not topic:partition:offset"),
        ("signals:0:1:2", "'signals:0:1:2' is not topic:partition:offset"),
        ("signals:x:5", "the partition in 'signals:x:5' must be a whole number >= 0, got 'x'"),
        ("signals:0:-1", "the offset in 'signals:0:-1' must be a whole number >= 0, got '-1'"),
        ("signals:0:", "the offset in 'signals:0:' must be a whole number"),
        ("signals:0:1,runs:1:2,signals:0:3", "signals:0 is named twice"),
    ],
)
def test_bad_as_of_offsets_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(AsOfError) as error:
        parse_as_of_offsets(text)
    assert message in str(error.value)


# --- streaming -----------------------------------------------------------------------


# Measured in a fresh interpreter: tracemalloc counts every allocation of the process, and
# in one CI run, after the integration tier in the same session, something else (no other
# thread ran: checked) added 11 MB to the replay's peak and 35 MB to the list's size, most
# likely finalizers and log capture of earlier tests' garbage. Alone it is 0.3 MB.
_MEASURE_MEMORY = """
import sys, tracemalloc
from contextlib import closing
from pathlib import Path
from projections.log import read_durable_log
from projections.replay import DurableLogSource, Replay
path = Path(sys.argv[1])
tracemalloc.start()
whole = read_durable_log(path, ["t0", "t1"])
list_bytes = tracemalloc.get_traced_memory()[0]
assert len(whole) == 50_000
del whole
tracemalloc.reset_peak()
base = tracemalloc.get_traced_memory()[0]
with closing(DurableLogSource(path)) as source:
    total = sum(len(r.value or b"") for r in Replay(source, ["t0", "t1"], progress=False))
print(list_bytes, tracemalloc.get_traced_memory()[1] - base, total)
"""


def test_a_replay_never_holds_the_log(tmp_path: Path) -> None:
    """50,000 records of ~300 bytes on 8 partitions: the list of them takes ~20 MB; a replay
    that looks at each and lets it go peaks at a small fraction of that."""
    payload = b"x" * 300
    records = (
        LogRecord(f"t{i % 2}", (i // 2) % 4, i // 8, 1_000 + i, payload + str(i).encode())
        for i in range(50_000)
    )
    path = write_log(tmp_path / "log.sqlite3", {"t0": 4, "t1": 4}, records)
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE_MEMORY, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    list_bytes, replay_peak, total = map(int, measured.stdout.split())
    assert total == 50_000 * 300 + sum(len(str(i)) for i in range(50_000))
    assert list_bytes > 15_000_000
    assert replay_peak < list_bytes / 20, (replay_peak, list_bytes)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = partition_log(tmp_path / "log.sqlite3", {("a", 0): list(range(10_000))})
    for terminal, progress, shown in [
        (True, True, True),
        (False, True, False),
        (True, False, False),
    ]:
        stderr = Terminal() if terminal else io.StringIO()
        monkeypatch.setattr("sys.stderr", stderr)
        with closing(DurableLogSource(path)) as source:
            assert sum(1 for _ in Replay(source, ["a"], progress=progress)) == 10_000
        assert ("/10.0k" in stderr.getvalue()) is shown, stderr.getvalue()


# --- metasup replay --------------------------------------------------------------------


@pytest.fixture
def desk_durable_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo desk's recorded log (sources and everything derived) as a durable log under
    a topic prefix, and a CLI configured with that prefix and the supervisor key that signed
    it. Users name topics without the prefix, and so does what the CLI prints."""
    monkeypatch.setenv("METASUP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("METASUP_SUPERVISOR_PUBLIC_KEY_FILE", str(SUPERVISOR_KEY.public))
    monkeypatch.setenv("METASUP_TOPIC_PREFIX", PREFIX)
    records = [replace(r, topic=PREFIX + r.topic) for r in desk_log()]
    partitions = dict.fromkeys({r.topic for r in records}, 1)
    return write_log(tmp_path / "desk.sqlite3", partitions, records)


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replay", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def topic_counts(out: str) -> dict[str, int]:
    rows = out.split("records\n", 1)[1].split("  total", 1)[0]
    return {line.split()[0]: int(line.split()[1].replace(",", "")) for line in rows.splitlines()}


def position_of(out: str) -> str:
    return out.rstrip().splitlines()[-1].strip()


def test_metasup_replay_counts_every_public_topic_and_prints_a_position_to_paste_back(
    desk_durable_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli("--durable-log", str(desk_durable_log), capsys=capsys)
    assert code == 0, err
    records = desk_log()
    expected = Counter(r.topic for r in records)
    counts = topic_counts(out)
    assert {t: n for t, n in counts.items() if n} == expected
    assert f"read from the durable log {desk_durable_log}\n" in out
    assert f"\n  total {len(records):>23,}\n" in out
    assert f"{len(records):,} events folded through the fleet projection; 0 records" in out
    newest = max(r.timestamp_ms for r in records)
    assert f"newest record received at {format_utc(at_ms(newest))}" in out
    position = parse_as_of_offsets(position_of(out))
    assert position == {(t, 0): n for t, n in counts.items() if n}  # topics the log holds

    code, again, _ = cli(
        "--durable-log", str(desk_durable_log), "--as-of-offsets", position_of(out), capsys=capsys
    )
    assert code == 0
    assert topic_counts(again) == counts


def test_metasup_replay_as_of_a_time_reads_what_was_received_by_then(
    desk_durable_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = desk_log()
    middle = records[len(records) // 2].received_at
    cut = middle.replace(microsecond=0)
    code, out, err = cli(
        "--durable-log", str(desk_durable_log), "--as-of", format_utc(cut), capsys=capsys
    )
    assert code == 0, err
    known = [r for r in records if r.received_at <= cut]
    assert 0 < len(known) < len(records)
    assert {t: n for t, n in topic_counts(out).items() if n} == Counter(r.topic for r in known)
    assert f"as of receipt time {format_utc(cut)}" in out
    assert f"({len(records) - len(known):,} more records read were received after" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--as-of-offsets", "signals:0"], "'signals:0' is not topic:partition:offset"),
        (["--as-of-offsets", "signals:3:5"], "signals:3, which this replay does not read"),
        (["--as-of", "2024-01-01T00:00:00"], "--as-of: '2024-01-01T00:00:00' has no timezone"),
        (["--topics", "signals,sigals"], "unknown topic(s) sigals in --topics"),
    ],
)
def test_metasup_replay_refuses_bad_arguments_with_what_to_fix(
    desk_durable_log: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli("--durable-log", str(desk_durable_log), *argv, capsys=capsys)
    assert code == 2
    assert message in err


def test_metasup_replay_without_a_log_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METASUP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("METASUP_BROKER", f"kafka://127.0.0.1:{free_port()}")
    monkeypatch.setenv("METASUP_SUPERVISOR_PUBLIC_KEY_FILE", str(SUPERVISOR_KEY.public))
    code, _, err = cli(capsys=capsys)
    assert code == 1
    assert "cannot read the log from the broker" in err
    assert "is it running (`metasup up`)?" in err


def test_an_as_of_time_with_an_offset_is_the_same_instant_in_utc() -> None:
    plus_two = datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=2)))
    assert AsOf(received_until=plus_two).until_ms == 1_704_070_800_000  # 2024-01-01T01:00Z
