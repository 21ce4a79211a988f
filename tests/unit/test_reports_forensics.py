"""Failure forensics: the worst trades joined with their runs by run_id, each agent's
losses and telemetry, and hypotheses that appear when the data holds them and not
otherwise. Logs are built by hand (tests/report_events.py: run k and trade k on day k);
the expected figures are worked out in the comments."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from projections.reports.forensics import (
    WORST_TRADES,
    ForensicsReport,
    forensics_markdown,
    forensics_report,
    forensics_text,
)
from schemas.envelope import Event
from schemas.events import RegimeChanged
from tests.report_events import DAY, T0, folded, multiplier, run, run_id, trade


def report_of(*events: Event) -> ForensicsReport:
    return forensics_report(folded(events))


def regime_from(day: float, regime: str) -> RegimeChanged:
    return RegimeChanged.create(ts=T0 + day * DAY, producer="test", regime=regime)


def kinds(report: ForensicsReport, agent: str) -> list[str]:
    row = next(row for row in report.agents if row.agent == agent)
    return [h.kind for h in row.hypotheses]


def test_the_worst_trades_are_the_losses_worst_first_each_joined_with_its_run() -> None:
    report = report_of(
        run("alpha", 1, latency_ms=100, tokens=10, cost_usd=0.01),
        run("alpha", 2, latency_ms=200, tokens=20, cost_usd=0.02, errors=1),
        run("alpha", 3, latency_ms=300, tokens=30, cost_usd=0.03),
        run("beta", 2, latency_ms=700, tokens=70, cost_usd=0.07),
        trade("alpha", 1, -50.0),
        trade("alpha", 2, 20.0),  # a winner: no failure, not listed
        trade("alpha", 3, -80.0),
        trade("beta", 2, -80.0),  # as bad as alpha's third, but exits a day earlier
        trade("gamma", 2, -10.0),  # its run never reached the log
    )
    # Lowest PnL first; -80 twice: the earlier exit (beta, day 3) before alpha's (day 4).
    assert [(t.rank, t.agent, t.pnl_bps) for t in report.worst] == [
        (1, "beta", -80.0),
        (2, "alpha", -80.0),
        (3, "alpha", -50.0),
        (4, "gamma", -10.0),
    ]
    assert [t.run_id for t in report.worst] == [
        run_id("beta", 2),
        run_id("alpha", 3),
        run_id("alpha", 1),
        run_id("gamma", 2),
    ]
    beta, alpha3, alpha1, gamma = (t.run for t in report.worst)
    assert beta is not None and (beta.latency_ms, beta.tokens, beta.cost_usd) == (700, 70, 0.07)
    assert alpha3 is not None and (alpha3.latency_ms, alpha3.tokens, alpha3.errors) == (300, 30, 0)
    assert alpha1 is not None and alpha1.cost_usd == 0.01
    assert gamma is None  # missing telemetry: the trade stays, its run shows as missing
    assert (report.trades, report.losses) == (5, 4)

    table = forensics_text(report).splitlines()[4:9]  # the header, then rank 1 to 4
    missing_row = table[4]
    assert missing_row.split()[:3] == ["4", "gamma", "-10.0"]
    assert "not on the log" in missing_row
    assert "| 4 | gamma | -10.0 |" in forensics_markdown(report)


def test_each_agent_with_losses_gets_its_losses_and_its_runs_telemetry() -> None:
    report = report_of(
        run("alpha", 1, latency_ms=100, tokens=10),
        run("alpha", 2, latency_ms=200, tokens=20, errors=1),
        run("alpha", 3, latency_ms=300, tokens=30),
        run("beta", 2, latency_ms=700, tokens=70),
        run("delta", 1),
        trade("alpha", 1, -50.0),
        trade("alpha", 2, 20.0),
        trade("alpha", 3, -80.0),
        trade("beta", 2, -80.0),
        trade("gamma", 2, -10.0),
        trade("delta", 1, 5.0),  # no loss: not among the agents
    )
    alpha, beta, gamma = report.agents  # most lost first: -130, -80, -10
    # alpha: losses -50 and -80 of 3 trades: -130, average -65; runs 100/200/300 ms and
    # 10/20/30 tokens: medians 200 ms and 20; 1 error in 3 runs; worst runs day 3, day 1.
    assert (alpha.agent, alpha.trades, alpha.losses) == ("alpha", 3, 2)
    assert (alpha.loss_bps, alpha.avg_loss_bps) == (-130.0, -65.0)
    assert (alpha.runs, alpha.median_latency_ms, alpha.median_tokens) == (3, 200.0, 20.0)
    assert alpha.error_rate == pytest.approx(1 / 3)
    assert alpha.example_runs == [run_id("alpha", 3), run_id("alpha", 1)]
    assert (beta.agent, beta.losses, beta.median_latency_ms, beta.error_rate) == (
        "beta",
        1,
        700.0,
        0.0,
    )
    # gamma's run is not on the log: no telemetry, one loss without its run.
    assert (gamma.agent, gamma.runs, gamma.median_latency_ms, gamma.error_rate) == (
        "gamma",
        0,
        None,
        None,
    )
    assert (gamma.missing_runs, gamma.example_runs) == (1, [run_id("gamma", 2)])


def test_only_the_window_counts_and_at_most_25_trades_are_listed() -> None:
    # Day k's trade exits on day k + 1; the last on day 41 is the clock, so the 30-day
    # window is (day 11, day 41]: trades 11..40 are in it, 30 of them, all losses -k.
    events: list[Event] = [trade("alpha", k, -float(k)) for k in range(1, 41)]
    events += [run("alpha", 5, latency_ms=9000.0, errors=4)]  # day 5: before the window
    events += [run("alpha", k, latency_ms=100.0 * (k - 30)) for k in (31, 32, 33)]
    report = report_of(*events)
    assert (report.trades, report.losses) == (30, 30)
    assert len(report.worst) == WORST_TRADES == 25
    assert [t.pnl_bps for t in report.worst] == [-float(k) for k in range(40, 15, -1)]
    (alpha,) = report.agents
    # Runs of days 31, 32, 33 (100, 200, 300 ms, no error); day 5's is outside.
    assert (alpha.runs, alpha.median_latency_ms, alpha.error_rate) == (3, 200.0, 0.0)


def test_losses_concentrated_in_a_regime_are_a_hypothesis_with_their_figures() -> None:
    # Regimes from the `regimes` log at the signal's time: HIGH_VOL for days 1-4, RISK_ON
    # after. HIGH_VOL: 3 losses in 4 trades; RISK_ON: 1 loss in 6.
    # Of 4 losses 3 are HIGH_VOL (75%), against 4 of 10 trades (40%): lift 1.875 >= 1.5
    # on 3 losses. RISK_ON has 1 loss (< 3): nothing said.
    pnls = [-10.0, -10.0, -10.0, 10.0, -10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    report = report_of(
        regime_from(0.5, "HIGH_VOL"),
        regime_from(4.5, "RISK_ON"),
        *[trade("alpha", k, pnl) for k, pnl in enumerate(pnls, start=1)],
    )
    (alpha,) = report.agents
    (hypothesis,) = alpha.hypotheses
    assert hypothesis.kind == "regime_concentration"
    assert hypothesis.figures == {
        "regime": "HIGH_VOL",
        "losses_in_regime": 3,
        "losses": 4,
        "trades_in_regime": 4,
        "trades": 10,
        "loss_share": 0.75,
        "trade_share": 0.4,
        "lift": pytest.approx(1.875),
    }
    assert hypothesis.statement == (
        "losses concentrated in HIGH_VOL: 3 of 4 losses (75%) against 4 of 10 trades (40%), "
        "1.88 times its share"
    )
    assert [t.regime for t in report.worst] == ["HIGH_VOL", "HIGH_VOL", "HIGH_VOL", "RISK_ON"]


@pytest.mark.parametrize(
    "regimes, pnls",
    [
        # HIGH_VOL: 2 losses in 3 trades, lift (2/3) / (3/10) = 2.2, but on 2 losses only.
        (["HIGH_VOL"] * 3 + ["RISK_ON"] * 7, [-10, -10, 10, -10, 10, 10, 10, 10, 10, 10]),
        # 3 losses in 5 trades in each regime: lift (3/6) / (5/10) = 1.0 in both.
        (["HIGH_VOL"] * 5 + ["RISK_ON"] * 5, [-10, -10, -10, 10, 10, -10, -10, -10, 10, 10]),
        # No regime known: nothing to concentrate in.
        ([None] * 10, [-10, -10, -10, 10, 10, 10, 10, 10, 10, 10]),
    ],
)
def test_no_regime_hypothesis_without_enough_concentrated_losses(
    regimes: list[str | None], pnls: list[float]
) -> None:
    report = report_of(
        *[
            trade("alpha", k, pnl, regime=regime)
            for k, (regime, pnl) in enumerate(zip(regimes, pnls, strict=True), start=1)
        ]
    )
    assert kinds(report, "alpha") == []


def spiky(losing: list[float], winning: list[float], *, on: str = "latency") -> ForensicsReport:
    """Three losses (days 1-3) then three wins (days 4-6), each run with the figure given."""
    events: list[Event] = []
    for k, (figure, pnl) in enumerate(
        [(f, -20.0) for f in losing] + [(f, 30.0) for f in winning], start=1
    ):
        if on == "latency":
            events.append(run("alpha", k, latency_ms=figure, cost_usd=0.01))
        else:
            events.append(run("alpha", k, latency_ms=100.0, cost_usd=figure))
        events.append(trade("alpha", k, pnl))
    return report_of(*events)


def test_a_latency_spike_on_losing_runs_is_a_hypothesis() -> None:
    # Medians: 1000 ms behind losses, 400 ms behind wins: 2.5 times (>= 1.5), 3 runs each.
    # Costs are all 0.01 USD: no cost spike.
    report = spiky([900.0, 1000.0, 1100.0], [300.0, 400.0, 500.0])
    (hypothesis,) = report.agents[0].hypotheses
    assert hypothesis.kind == "latency_spike"
    assert hypothesis.figures == {
        "losing_runs": 3,
        "winning_runs": 3,
        "median_losing": 1000.0,
        "median_winning": 400.0,
        "ratio": 2.5,
    }


def test_a_cost_spike_on_losing_runs_is_a_hypothesis() -> None:
    # Medians 0.06 against 0.02 USD: 3 times.
    report = spiky([0.05, 0.06, 0.07], [0.01, 0.02, 0.03], on="cost")
    (hypothesis,) = report.agents[0].hypotheses
    assert hypothesis.kind == "cost_spike"
    assert hypothesis.figures["ratio"] == pytest.approx(3.0)


def test_no_spike_below_the_ratio_or_on_too_few_runs() -> None:
    # 1000 against 800 ms: 1.25 times, under 1.5.
    assert kinds(spiky([900.0, 1000.0, 1100.0], [700.0, 800.0, 900.0]), "alpha") == []
    # The same spike, but one losing trade's run is missing: 2 losing runs (< 3).
    events: list[Event] = [run("alpha", 1, latency_ms=900.0), run("alpha", 2, latency_ms=1000.0)]
    events += [run("alpha", k, latency_ms=100.0 * k) for k in (4, 5, 6)]
    events += [trade("alpha", k, -20.0) for k in (1, 2, 3)]
    events += [trade("alpha", k, 30.0) for k in (4, 5, 6)]
    report = report_of(*events)
    assert kinds(report, "alpha") == []
    assert report.agents[0].missing_runs == 1


def sticky_log(after: list[float]) -> list[Event]:
    """Three wins, three losses, a win; `after[k - 1]` is the multiplier trade k left."""
    pnls = [100.0, 100.0, 100.0, -50.0, -50.0, -50.0, 100.0]
    events: list[Event] = [trade("alpha", k, pnl) for k, pnl in enumerate(pnls, start=1)]
    return events + [multiplier("alpha", k, mult) for k, mult in enumerate(after, start=1)]


def test_a_multiplier_that_stays_near_its_ceiling_through_losses_is_a_hypothesis() -> None:
    # The line: 0.9 x ceiling 1.20 = 1.08. After the losses of days 4, 5, 6 the multiplier
    # was 1.2, 1.2, 1.116: three consecutive losses (-150 bps) at 1.116 or more.
    report = report_of(*sticky_log([1.2, 1.2, 1.2, 1.2, 1.2, 1.116, 1.15]))
    (hypothesis,) = report.agents[0].hypotheses
    assert hypothesis.kind == "sticky_multiplier"
    assert hypothesis.figures == {
        "consecutive_losses": 3,
        "loss_bps": -150.0,
        "lowest_multiplier": 1.116,
        "ceiling": 1.2,
        "line": pytest.approx(1.08),
        "first_exit": "2025-03-06T00:00:00Z",
        "last_exit": "2025-03-08T00:00:00Z",
    }


def test_a_multiplier_that_decays_with_the_losses_is_no_hypothesis() -> None:
    # The rule at work (x0.93 per loss): 1.116, 1.038, 0.965: one loss above 1.08 only.
    assert kinds(report_of(*sticky_log([1.2, 1.2, 1.2, 1.116, 1.038, 0.965, 0.99])), "alpha") == []
    # No multiplier on the log at all: nothing can be said about it.
    assert kinds(report_of(*sticky_log([])), "alpha") == []


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_a_hostile_name_is_text_in_the_markdown_and_one_line_in_the_text() -> None:
    name = "<img src=x onerror=alert(1)>\n\x1b[2J[x](https://evil.example)"
    report = report_of(run(name, 1), trade(name, 1, -10.0, regime="<b>HOT</b>"))
    markdown = forensics_markdown(report)
    parser = Tags()
    parser.feed(markdown)
    assert parser.tags == []
    assert "](" not in markdown.replace("\\](", "")
    text = forensics_text(report)
    assert "\x1b" not in text and "\x1b" not in markdown
    assert len(text.splitlines()) == len(
        forensics_text(report_of(trade("a", 1, -10.0))).splitlines()
    )
