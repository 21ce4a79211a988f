"""The CSV file source on the layouts people actually download.

Each fixture copies the shape of a real export (header, banner, time format, row
order, trailing columns), with a few rows; the last tests read the real Bitfinex
file from `../shared/data` when it is there.
"""

from __future__ import annotations

import csv
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.reconcile.csv_source import (
    DEMO_CSV,
    load_candles,
    parse_time,
    price_events,
    read_candles,
)

SHARED_CSV = Path("/work/shared/data/bitfinex-1h-btc-usd.csv")
HOUR = timedelta(hours=1)
JAN = datetime(2024, 1, 1, tzinfo=UTC)


def write(tmp_path: Path, text: str, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def closes(path: Path, **options: str) -> list[tuple[datetime, str, float]]:
    """(close time, symbol, price) of every event: what the reconciler will see."""
    return [(e.ts, e.symbol, e.price) for e in price_events(path, producer="test", **options)]


# CryptoDataDownload, current layout: URL banner, `unix` in seconds, newest first.
CDD_HOURLY = """https://www.CryptoDataDownload.com
unix,date,symbol,open,high,low,close,Volume BTC,Volume USD
1704074400,2024-01-01 02:00:00,BTC/USD,42600.1,42700.0,42550.0,42650.5,12.1,516065.5
1704070800,2024-01-01 01:00:00,BTC/USD,42500.0,42650.0,42480.0,42600.1,10.4,443041.0
1704067200,2024-01-01 00:00:00,BTC/USD,42300.0,42550.0,42280.0,42500.0,15.9,675750.0
"""

EXPECTED_HOURLY = [
    (JAN + HOUR, "BTC", 42500.0),
    (JAN + 2 * HOUR, "BTC", 42600.1),
    (JAN + 3 * HOUR, "BTC", 42650.5),
]


def test_cryptodatadownload_with_banner_newest_first(tmp_path: Path) -> None:
    loaded = load_candles(write(tmp_path, CDD_HOURLY))

    assert (loaded.interval, loaded.time_column, loaded.skipped) == ("1h", "unix", [])
    assert closes(write(tmp_path, CDD_HOURLY)) == EXPECTED_HOURLY


def test_cryptodatadownload_binance_file_with_millisecond_unix_and_tradecount(
    tmp_path: Path,
) -> None:
    text = (
        "Disclaimer: this file is for research only\n"
        "Unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT,tradecount\n"
        "1704074400000,2024-01-01 02:00:00,BTCUSDT,42600.1,42700,42550,42650.5,12.1,516065,900\n"
        "1704070800000,2024-01-01 01:00:00,BTCUSDT,42500,42650,42480,42600.1,10.4,443041,800\n"
        "1704067200000,2024-01-01 00:00:00,BTCUSDT,42300,42550,42280,42500,15.9,675750,1000\n"
    )

    assert closes(write(tmp_path, text)) == EXPECTED_HOURLY


def test_binance_kline_export_in_milliseconds_oldest_first(tmp_path: Path) -> None:
    """data.binance.vision columns; the open time, not `close_time` (…59.999), is used."""
    text = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore\n"
        "1704067200000,42300.00000000,42550.00000000,42280.00000000,42500.00000000,"
        "15.9,1704070799999,675750.0,1000,8.1,344250.0,0\n"
        "1704070800000,42500.00000000,42650.00000000,42480.00000000,42600.10000000,"
        "10.4,1704074399999,443041.0,800,5.0,213000.5,0\n"
        "1704074400000,42600.10000000,42700.00000000,42550.00000000,42650.50000000,"
        "12.1,1704077999999,516065.5,900,6.2,264400.0,0\n"
    )
    path = write(tmp_path, text, "BTCUSDT-1h-2024-01.csv")

    with pytest.raises(ValueError, match="no symbol column"):
        load_candles(path)
    assert closes(path, symbol="BTCUSDT") == EXPECTED_HOURLY


def test_binance_kline_export_without_header_in_microseconds(tmp_path: Path) -> None:
    """Binance spot files from 2025 on have no header and microsecond times."""
    text = (
        "1735689600000000,93576.00,94509.42,93489.03,94401.14,755.9,1735693199999999,"
        "71100000.1,100000,400.1,37600000.2,0\n"
        "1735693200000000,94401.13,94703.50,94250.00,94543.41,512.2,1735696799999999,"
        "48400000.3,90000,250.5,23700000.4,0\n"
    )
    new_year = datetime(2025, 1, 1, tzinfo=UTC)

    loaded = load_candles(write(tmp_path, text), symbol="BTC")

    assert loaded.time_column == "column 1 (no header)"
    assert [(c.close_time, c.close) for c in loaded.candles] == [
        (new_year + HOUR, 94401.14),
        (new_year + 2 * HOUR, 94543.41),
    ]


def test_yahoo_daily_file_uses_close_not_adj_close_and_a_day_interval(tmp_path: Path) -> None:
    text = (
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-01,42280.234375,44175.437500,42214.976563,44167.332031,44167.0,18426978443\n"
        "2024-01-02,44187.140625,45899.707031,44176.949219,44957.968750,44957.0,39335274536\n"
        "2024-01-03,44961.601563,45503.242188,40813.535156,42848.175781,42848.0,46342323118\n"
    )

    loaded = load_candles(write(tmp_path, text), symbol="BTC-USD")

    assert loaded.interval == "1d"
    assert [(c.symbol, c.close_time, c.close) for c in loaded.candles] == [
        ("BTC", JAN + timedelta(days=1), 44167.332031),
        ("BTC", JAN + timedelta(days=2), 44957.968750),
        ("BTC", JAN + timedelta(days=3), 42848.175781),
    ]


def test_older_cryptodatadownload_hours_written_as_am_pm(tmp_path: Path) -> None:
    text = (
        "https://www.CryptoDataDownload.com\n"
        "Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD\n"
        "2019-07-04 01-PM,BTCUSD,11900.0,11950.0,11850.0,11920.0,300.1,3577192.0\n"
        "2019-07-04 12-PM,BTCUSD,11850.0,11910.0,11800.0,11900.0,310.0,3689000.0\n"
        "2019-07-04 01-AM,BTCUSD,11849.99,11880.0,11790.01,11849.69,303.61,3589525.18\n"
        "2019-07-04 12-AM,BTCUSD,11976.42,12064.26,11812.01,11849.99,1627.53,19416056.06\n"
    )
    day = datetime(2019, 7, 4, tzinfo=UTC)

    loaded = load_candles(write(tmp_path, text))

    assert loaded.interval == "1h"
    assert [(c.open_time, c.close) for c in loaded.candles] == [
        (day, 11849.99),
        (day + HOUR, 11849.69),
        (day + 12 * HOUR, 11900.0),
        (day + 13 * HOUR, 11920.0),
    ]


def test_the_repo_layout_and_its_demo_slice(tmp_path: Path) -> None:
    text = (
        "Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo\n"
        "2024-01-01 00:00,BTCUSD,42300,42550,42280,42500.0,15.9,675750\n"
        "2024-01-01 02:00,BTCUSD,42600.1,42700,42550,42650.5,12.1,516065.5\n"
        "2024-01-01 01:00,BTCUSD,42500,42650,42480,42600.1,10.4,443041\n"
    )
    assert closes(write(tmp_path, text)) == EXPECTED_HOURLY

    demo = read_candles(DEMO_CSV)
    assert (demo[0].open_time, demo[0].close) == (datetime(2019, 4, 5, tzinfo=UTC), 4944.01)
    assert len(demo) == 2_162


def test_iso_8601_with_zone_is_converted_to_utc(tmp_path: Path) -> None:
    text = (
        "timestamp,symbol,close\n"
        "2024-01-01T00:00:00Z,ETH,2300.0\n"
        "2024-01-01T02:00:00+01:00,ETH,2310.0\n"
        "2024-01-01T02:00:00.000+00:00,ETH,2320.0\n"
    )

    assert closes(write(tmp_path, text)) == [
        (JAN + HOUR, "ETH", 2300.0),
        (JAN + 2 * HOUR, "ETH", 2310.0),
        (JAN + 3 * HOUR, "ETH", 2320.0),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "1704070800",
        "1704070800000",
        "1704070800000000",
        "1704070800.0",
        "2024-01-01 01:00",
        "2024-01-01 01:00:00",
        "2024-01-01T01:00:00Z",
        "2024-01-01 01-AM",
        " 2024-01-01 01 AM ",
    ],
)
def test_every_time_layout_reads_the_same_instant(text: str) -> None:
    assert parse_time(text) == JAN + HOUR


@pytest.mark.parametrize("text", ["", "yesterday", "01/02/2024 01:00", "-5", "nan", "1e300"])
def test_unreadable_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("newest_first", [True, False])
def test_a_repeated_row_keeps_the_first_in_the_file(tmp_path: Path, newest_first: bool) -> None:
    rows = [
        "2024-01-01 00:00,BTCUSD,1,1,1,100.0,1,1",
        "2024-01-01 01:00,BTCUSD,1,1,1,101.0,1,1",
        "2024-01-01 01:00,BTCUSD,1,1,1,999.0,1,1",
        "2024-01-01 02:00,BTCUSD,1,1,1,102.0,1,1",
    ]
    body = rows[::-1] if newest_first else rows
    text = "Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo\n" + "\n".join(body) + "\n"

    loaded = load_candles(write(tmp_path, text))

    kept = 999.0 if newest_first else 101.0
    assert [c.close for c in loaded.candles] == [100.0, kept, 102.0]
    assert loaded.duplicates == 1
    assert "1 repeated rows dropped" in loaded.summary()


def test_bad_rows_are_skipped_and_reported_by_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        "https://www.CryptoDataDownload.com\n"
        "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n"
        "1704074400,2024-01-01 02:00:00,BTC/USD,1,1,1,42650.5,1,1\n"
        "soon,2024-01-01 01:00:00,BTC/USD,1,1,1,42600.1,1,1\n"
        "1704067200,2024-01-01 00:00:00,BTC/USD,1,1,1,,1,1\n"
        "\n"
        "1704063600,2023-12-31 23:00:00,BTC/USD,1,1,1,-3,1,1\n"
        "1704061800,2023-12-31 22:30:00,BTC/USD,1,1,1,42000,1,1\n"
        "1704056400,2023-12-31 21:00:00,BTC/USD,1,1\n"
        "1704052800,2023-12-31 20:00:00,BTC/USD,1,1,1,41900.0,1,1\n"
        "1704049200,2023-12-31 19:00:00,BTC/USD,1,1,1,41800.0,1,1\n"
        "1704045600,2023-12-31 18:00:00,BTC/USD,1,1,1,41700.0,1,1\n"
        "Data provided for research purposes only\n"
    )
    path = write(tmp_path, text)

    loaded = load_candles(path)

    assert [c.close for c in loaded.candles] == [41700.0, 41800.0, 41900.0, 42650.5]
    assert [(row.line, row.reason) for row in loaded.skipped] == [
        (4, "unreadable time 'soon'"),
        (5, "unreadable close ''"),
        (7, "candle close must be positive, got -3.0"),
        (8, "open_time 2023-12-31 22:30:00+00:00 is not on a 1h boundary"),
        (9, "5 fields, expected at least 7"),
        (13, "1 fields, expected at least 7"),
    ]
    summary = loaded.summary()
    assert "6 rows skipped: line 4: unreadable time 'soon'" in summary
    assert "and 1 more" in summary

    with caplog.at_level(logging.WARNING):
        assert len(read_candles(path)) == 4
    assert "6 rows skipped" in caplog.text


def test_a_symbol_parameter_names_every_row(tmp_path: Path) -> None:
    assert {c.symbol for c in read_candles(write(tmp_path, CDD_HOURLY), symbol="XBT")} == {"XBT"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no header found"),
        ("just some notes\nnothing tabular here\n", "no header found"),
        ("Date,Symbol,Open\n2024-01-01 00:00,BTC,1\n", "no header found"),
        ("Date,Symbol,Close\n", "no readable candle row"),
        ("Date,Symbol,Close\nlater,BTC,1\nsoon,BTC,2\n", r"line 2: unreadable time 'later'"),
        ("Date,Close\n2024-01-01 00:00,1\n", "no symbol column"),
        ("Date,Symbol,Close\n2024-01-01 00:00,BTC,1\n", "a single candle time; pass the interval"),
        ("Date,Symbol,Close\n2024-01-01 00:00,BTC,1\n2024-01-01 00:30,BTC,1\n", "not a known"),
    ],
)
def test_an_unreadable_file_is_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ValueError, match=message) as refused:
        load_candles(path)
    assert str(path) in str(refused.value)


def test_an_explicit_interval_is_used_as_given(tmp_path: Path) -> None:
    one_row = "Date,Symbol,Close\n2024-01-01 00:00,BTC,1\n"

    [candle] = read_candles(write(tmp_path, one_row), interval="1d")

    assert candle.close_time == JAN + timedelta(days=1)


# -- the real file ------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared data file not present")
def test_the_real_bitfinex_file_matches_a_plain_reading_of_it() -> None:
    with SHARED_CSV.open(newline="") as handle:
        plain = {
            datetime.fromisoformat(row["Date"]).replace(tzinfo=UTC) + HOUR: float(row["Close"])
            for row in csv.DictReader(handle)
        }

    loaded = load_candles(SHARED_CSV, source="bitfinex")

    assert (loaded.skipped, loaded.duplicates, loaded.interval) == ([], 0, "1h")
    assert {c.close_time: c.close for c in loaded.candles} == plain
    assert [c.close_time for c in loaded.candles] == sorted(plain)
