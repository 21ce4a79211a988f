"""The python examples of the README and of the docstrings run, so they cannot go stale.

Every fenced ```python block is executed as a script, without a broker: the SDK's producer
and fleet view are replaced by in-memory fakes, `openai` by a stand-in module. The README's
SDK example also runs against the real embedded broker in the integration tier
(`tests/integration/test_sdk_sync.py`).
"""

from __future__ import annotations

import sys
from datetime import datetime

import pytest

from schemas.envelope import Event
from schemas.events import RunCompleted, SignalEmitted
from streams.sdk import client as sdk_client
from tests.builders import DocExample, doc_examples, fake_openai
from tests.keys import SUPERVISOR_KEY

EXAMPLES = doc_examples()


class FakePublisher:
    """The SDK's Publisher without a broker: what is published lands in `sent`."""

    def __init__(self, sent: list[Event]) -> None:
        self.sent = sent

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, event: Event, wait: bool = True) -> None:
        self.sent.append(event)


class FakeFleetView:
    """The kill-switch guard without a broker: `killed` maps agent -> reason."""

    def __init__(self, killed: dict[str, str]) -> None:
        self.killed = killed

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def killed_reason(self, agent: str, strategy_class: str | None, at: datetime) -> str | None:
        return self.killed.get(agent)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Run the SDK without a broker; returns the events the examples publish."""
    published: list[Event] = []
    monkeypatch.setattr(sdk_client, "Publisher", lambda *_, **__: FakePublisher(published))
    monkeypatch.setattr(sdk_client, "FleetView", lambda *_, **__: FakeFleetView({}))
    monkeypatch.setitem(sys.modules, "openai", fake_openai())
    # A guard verifies kills with the supervisor's public key, found from the environment.
    monkeypatch.setenv("METASUP_SUPERVISOR_PUBLIC_KEY_FILE", str(SUPERVISOR_KEY.public))
    return published


def test_the_readme_and_the_sdk_docstrings_have_examples() -> None:
    places = {example.where.split(":")[0] for example in EXAMPLES}
    assert {"README.md", "streams/sdk/__init__.py", "streams/sdk/client.py"} <= places


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.where for example in EXAMPLES])
def test_an_example_runs_and_reports_its_runs(example: DocExample, sent: list[Event]) -> None:
    example.run()

    runs = [event for event in sent if isinstance(event, RunCompleted)]
    signals = [event for event in sent if isinstance(event, SignalEmitted)]
    assert runs, "every example shows at least one run"
    assert all(run.skipped_reason is None and run.errors == 0 for run in runs)
    assert {signal.run_id for signal in signals} <= {run.run_id for run in runs}


def test_the_readme_example_counts_the_llm_usage(sent: list[Event]) -> None:
    (readme,) = [example for example in EXAMPLES if example.where.startswith("README.md")]

    readme.run()

    (run,) = [event for event in sent if isinstance(event, RunCompleted)]
    assert (run.agent, run.strategy_class) == ("momentum-1", "momentum")
    assert (run.tokens_in, run.tokens_out) == (1000, 200)  # from the fake openai response
    assert run.cost_usd > 0


def test_the_decorator_example_skips_a_killed_agent(
    sent: list[Event], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "agent momentum-1 killed by ops (operator)"
    monkeypatch.setattr(
        sdk_client, "FleetView", lambda *_, **__: FakeFleetView({"momentum-1": reason})
    )
    (example,) = [example for example in EXAMPLES if example.where.endswith(":supervised")]

    example.run()

    assert capsys.readouterr().out == "None\n"  # the function was not called
    assert [(event.type, getattr(event, "skipped_reason", None)) for event in sent] == [
        ("run.completed", reason)
    ]
