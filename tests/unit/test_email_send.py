"""Delivering the reports: SendGrid's official client against a fake v3 API on 127.0.0.1
(the request SendGrid documents, retries on 429, 5xx and lost connections, none on a
refusal, never an exception), the outbox when there is no key or nobody to send to, and
settings that refuse a bad address by the variable's name. Sleeps are recorded, never
slept."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import pytest

from projections.reports.forensics import forensics_report
from projections.reports.lp_email import lp_email
from projections.reports.meta import meta_report
from schemas.envelope import Event
from schemas.events import Decision
from streams.email.config import EmailSettings
from streams.email.message import (
    OutgoingEmail,
    forensics_email,
    ic_memo_email,
    lp_email_message,
)
from streams.email.send import MESSAGE_ID_HEADER, deliver, write_eml
from tests.fakes.sendgrid_server import Answer, FakeSendGrid
from tests.report_events import HOSTILE, T0, allocation, decision, folded, run, trade

KEY = "SG.test-key.0123456789"
RECIPIENTS = "Ops Desk <ops@example.com>, , lp@example.com"
EMAIL = OutgoingEmail(
    kind="lp-email",
    message_id="lp-2025-03-04",
    subject="[LP Daily] PnL +1.0 bps | DD 0.0 bps",
    text="LP daily summary\nnaïve ✓\n",
    html="<!DOCTYPE html>\n<html><body><p>LP daily summary, naïve ✓</p></body></html>\n",
)


class Sleeps(list[float]):
    """A sleep function that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


def settings_for(url: str, **env: str) -> EmailSettings:
    defaults = {
        "SENDGRID_API_KEY": KEY,
        "SENDGRID_BASE_URL": url,
        "META_EMAIL_TO": RECIPIENTS,
        "EMAIL_FROM": "Meta Supervisor <meta@example.com>",
    }
    return EmailSettings.from_env(defaults | env)


# --- sending ------------------------------------------------------------------------------


def test_the_mail_is_sent_as_the_v3_api_documents_it(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    delivery = deliver(EMAIL, settings_for(sendgrid.url), tmp_path, sleeps)

    (received,) = sendgrid.requests
    assert delivery.status == "sent"
    assert delivery.attempts == 1
    assert delivery.detail == "sent to 2 recipients (HTTP 202)"
    assert delivery.provider_id == received.answer.headers["X-Message-Id"]
    assert delivery.outbox_path is None
    assert received.path == "/v3/mail/send"
    assert received.headers["Authorization"] == f"Bearer {KEY}"
    assert received.headers["Content-Type"] == "application/json"
    body = received.body
    assert body["from"] == {"name": "Meta Supervisor", "email": "meta@example.com"}
    assert body["personalizations"] == [
        {"to": [{"name": "Ops Desk", "email": "ops@example.com"}, {"email": "lp@example.com"}]}
    ]
    assert body["subject"] == EMAIL.subject
    assert body["content"] == [
        {"type": "text/plain", "value": EMAIL.text},
        {"type": "text/html", "value": EMAIL.html},
    ]
    assert body["custom_args"] == {"message_id": "lp-2025-03-04", "kind": "lp-email"}
    assert body["headers"] == {MESSAGE_ID_HEADER: "lp-2025-03-04"}
    assert sleeps == []
    assert list(tmp_path.iterdir()) == []


class Elements(HTMLParser):
    def __init__(self, body: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text = ""
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text += data


def assert_inert_html_reached_the_server(sendgrid: FakeSendGrid) -> Elements:
    html = next(
        c["value"] for c in sendgrid.requests[-1].body["content"] if c["type"] == "text/html"
    )
    page = Elements(html)
    tags = {tag for tag, _ in page.elements}
    assert not {"script", "img", "iframe"} & tags
    assert [name for _, attrs in page.elements for name, _ in attrs if name.startswith("on")] == []
    return page


def test_hostile_agent_names_reach_sendgrid_as_text_in_every_report(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    settings = settings_for(sendgrid.url)
    events: list[Event] = [allocation(T0, {HOSTILE[0]: 0.5, HOSTILE[2]: 0.25})]
    for k, name in enumerate(HOSTILE, start=1):
        events += [run(name, k), trade(name, k, -5.0 * k), decision(name, T0, Decision.KILL)]
    projection = folded(events)
    emails = [
        lp_email_message("lp-1", lp_email(meta_report(projection))),
        forensics_email("forensics-1", forensics_report(projection)),
    ]
    for email in emails:
        assert deliver(email, settings, tmp_path, Sleeps()).status == "sent"
        page = assert_inert_html_reached_the_server(sendgrid)
        for name in HOSTILE:
            assert name in page.text.replace("@\u200b", "@")


def test_markdown_from_the_llm_reaches_sendgrid_inert(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    memo = (
        '# Executive summary\n\n<script>alert(1)</script> & "quotes"\n\n'
        "<img src=x onerror=alert(1)> [click](javascript:alert(1))\n"
    )
    email = ic_memo_email("ic-2025-w10", memo, "[IC Weekly] MarketAgents Memo")
    assert deliver(email, settings_for(sendgrid.url), tmp_path, Sleeps()).status == "sent"

    page = assert_inert_html_reached_the_server(sendgrid)
    assert [tag for tag, _ in page.elements if tag == "a"] == []
    assert '<script>alert(1)</script> & "quotes"' in page.text
    assert sendgrid.requests[0].body["content"][0] == {"type": "text/plain", "value": memo}


def test_a_server_error_is_retried_after_the_first_backoff(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    sendgrid.script(Answer(500, body='{"errors": [{"message": "internal"}]}'))
    sleeps = Sleeps()
    delivery = deliver(EMAIL, settings_for(sendgrid.url), tmp_path, sleeps)

    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert sleeps == [1.0]
    assert [r.answer.status for r in sendgrid.requests] == [500, 202]
    assert sendgrid.requests[0].body == sendgrid.requests[1].body


@pytest.mark.parametrize("retry_after, slept", [("3", 3.0), ("600", 60.0), ("soon", 1.0)])
def test_a_429_waits_as_long_as_retry_after_says_up_to_a_minute(
    sendgrid: FakeSendGrid, tmp_path: Path, retry_after: str, slept: float
) -> None:
    sendgrid.script(Answer(429, {"Retry-After": retry_after}, '{"errors": []}'))
    sleeps = Sleeps()
    delivery = deliver(EMAIL, settings_for(sendgrid.url), tmp_path, sleeps)

    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert sleeps == [slept]


def test_a_persistent_503_fails_after_every_attempt_with_doubling_waits(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    settings = settings_for(sendgrid.url)
    sendgrid.script(*[Answer(503, body='{"errors": [{"message": "try later"}]}')] * 10)
    sleeps = Sleeps()
    delivery = deliver(EMAIL, settings, tmp_path, sleeps)

    assert delivery.status == "failed"
    assert delivery.attempts == settings.attempts == len(sendgrid.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert "HTTP 503" in delivery.detail and "try later" in delivery.detail
    assert "after 4 attempts" in delivery.detail
    assert delivery.provider_id is None


def test_a_refusal_is_not_retried(sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    refusal = '{"errors": [{"message": "The from address does not match a verified Sender"}]}'
    sendgrid.script(Answer(400, body=refusal))
    sleeps = Sleeps()
    delivery = deliver(EMAIL, settings_for(sendgrid.url), tmp_path, sleeps)

    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "HTTP 400" in delivery.detail
    assert "does not match a verified Sender" in delivery.detail
    assert sleeps == []
    assert len(sendgrid.requests) == 1


def test_no_server_listening_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        sleeps = Sleeps()
        delivery = deliver(EMAIL, settings_for(url), tmp_path, sleeps)

    assert (delivery.status, delivery.attempts) == ("failed", 4)
    assert sleeps == [1.0, 2.0, 4.0]
    assert url in delivery.detail and "refused" in delivery.detail.lower()
    assert list(tmp_path.iterdir()) == []


def test_a_body_the_client_takes_for_an_api_key_fails_without_a_request(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    email = ic_memo_email("ic-1", "SG.leaked.key123 in the memo", "Memo")
    delivery = deliver(email, settings_for(sendgrid.url), tmp_path, Sleeps())

    assert (delivery.status, delivery.attempts) == ("failed", 0)
    assert "API key" in delivery.detail
    assert sendgrid.requests == []


# --- the outbox ---------------------------------------------------------------------------


def read_eml(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)
    return message


def test_without_a_key_the_mail_goes_to_the_outbox_as_an_eml(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    delivery = deliver(EMAIL, settings_for(sendgrid.url, SENDGRID_API_KEY=""), outbox, Sleeps())

    path = outbox / "lp-2025-03-04.eml"
    assert delivery.status == "outbox"
    assert delivery.outbox_path == path
    assert delivery.attempts == 0
    assert delivery.detail == f"written to {path}: no SENDGRID_API_KEY"
    assert sendgrid.requests == []
    assert sorted(p.name for p in outbox.iterdir()) == ["lp-2025-03-04.eml"]

    message = read_eml(path)
    assert message["Subject"] == EMAIL.subject
    assert message["From"] == "Meta Supervisor <meta@example.com>"
    assert message["To"] == "Ops Desk <ops@example.com>, lp@example.com"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"] == "<lp-2025-03-04@example.com>"
    assert message[MESSAGE_ID_HEADER] == "lp-2025-03-04"
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert parts == {"text/plain": EMAIL.text, "text/html": EMAIL.html}


def test_without_recipients_the_outbox_says_so_and_the_mail_has_no_to(tmp_path: Path) -> None:
    settings = EmailSettings.from_env({"SENDGRID_API_KEY": KEY})
    delivery = deliver(EMAIL, settings, tmp_path, Sleeps())

    assert delivery.status == "outbox"
    assert delivery.detail.endswith(": no META_EMAIL_TO")
    assert delivery.outbox_path is not None
    message = read_eml(delivery.outbox_path)
    assert message["To"] is None
    assert message["From"] == "meta-supervisor@localhost"
    assert message["Message-ID"] == "<lp-2025-03-04@localhost>"

    neither = deliver(EMAIL, EmailSettings.from_env({}), tmp_path, Sleeps())
    assert neither.detail.endswith(": no SENDGRID_API_KEY and no META_EMAIL_TO")


def test_the_same_id_rewrites_one_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    settings = EmailSettings.from_env({})
    write_eml(EMAIL, settings, tmp_path)
    rerun = OutgoingEmail(EMAIL.kind, EMAIL.message_id, "rerun", "again\n", "<p>again</p>\n")
    path = write_eml(rerun, settings, tmp_path)

    assert list(tmp_path.iterdir()) == [path]
    assert read_eml(path)["Subject"] == "rerun"


def test_an_outbox_that_cannot_be_written_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "outbox"
    not_a_folder.write_text("a file where the outbox should be")
    delivery = deliver(EMAIL, EmailSettings.from_env({}), not_a_folder, Sleeps())

    assert (delivery.status, delivery.outbox_path) == ("failed", None)
    assert "could not write to the outbox" in delivery.detail


# --- settings -----------------------------------------------------------------------------


def test_settings_have_the_documented_defaults() -> None:
    settings = EmailSettings.from_env({})
    assert settings == EmailSettings(
        api_key=None,
        base_url="https://api.sendgrid.com",
        recipients=(),
        sender="meta-supervisor@localhost",
        ic_subject="[IC Weekly] MarketAgents Memo",
    )
    assert (settings.attempts, settings.backoff_s) == (4, 1.0)
    assert not settings.can_send()


def test_settings_read_every_variable() -> None:
    settings = EmailSettings.from_env(
        {
            "SENDGRID_API_KEY": f" {KEY} ",
            "SENDGRID_BASE_URL": "http://127.0.0.1:8080/",
            "META_EMAIL_TO": "a@example.com,, Doe <b@example.com> ,A@EXAMPLE.COM",
            "EMAIL_FROM": '"Desk, Meta" <meta@example.com>',
            "IC_MEMO_SUBJECT": "Weekly memo",
        }
    )
    assert settings.api_key == KEY
    assert settings.base_url == "http://127.0.0.1:8080"
    # Blanks dropped; the same address twice kept once (SendGrid refuses duplicates).
    assert settings.recipients == ("a@example.com", "Doe <b@example.com>")
    assert settings.sender == '"Desk, Meta" <meta@example.com>'
    assert settings.ic_subject == "Weekly memo"
    assert settings.can_send()
    assert not EmailSettings.from_env({"META_EMAIL_TO": "a@example.com"}).can_send()


@pytest.mark.parametrize(
    "variable, value",
    [
        ("META_EMAIL_TO", "ops@example.com, not-an-address"),
        ("META_EMAIL_TO", "ops@example.com\r\nBcc: spy@evil.example"),
        ("META_EMAIL_TO", "Name <a@example.com> trailing"),
        ("EMAIL_FROM", "meta supervisor"),
        ("EMAIL_FROM", "a@example.com b@example.com"),
        ("SENDGRID_BASE_URL", "api.sendgrid.com"),
        ("IC_MEMO_SUBJECT", "Memo\nBcc: spy@evil.example"),
    ],
)
def test_a_bad_value_is_refused_by_its_variable_name(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        EmailSettings.from_env({variable: value})
