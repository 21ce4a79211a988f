"""The LLM call through the real openai client against a fake API on 127.0.0.1: what it
sends, what it records, how it retries and fails; the settings and the price table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace

import pytest

from streams.llm.chat import LlmFailed, LlmUnavailable, complete, prompt_sha256
from streams.llm.config import LlmSettings
from streams.llm.pricing import cost_usd
from tests.fakes.openai_server import FakeOpenAI, Reply, completion, error

KEY = "sk-test-key"
MESSAGES = [
    {"role": "system", "content": "You write memos."},
    {"role": "user", "content": "Write the memo."},
]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def settings_for(fake: FakeOpenAI, max_retries: int = 2) -> LlmSettings:
    settings = LlmSettings.from_env({"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url})
    return replace(settings, max_retries=max_retries)


def test_the_request_carries_model_sampling_messages_and_the_key(server: FakeOpenAI) -> None:
    complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "gpt-4.1-mini",
        "messages": MESSAGES,
        "temperature": 0.2,
        "max_tokens": 1800,
    }


def test_a_json_schema_is_sent_as_a_strict_response_format(server: FakeOpenAI) -> None:
    schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    complete(settings_for(server), MESSAGES, model="m", json_schema=schema, schema_name="batch")
    assert server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "batch", "strict": True, "schema": schema},
    }


def test_usage_and_its_cost_are_recorded_at_the_served_models_price(server: FakeOpenAI) -> None:
    served = "gpt-4.1-mini-2025-04-14"
    server.reply(
        Reply(body=completion("memo", model=served, prompt_tokens=1000, completion_tokens=500))
    )
    result = complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")
    assert (result.text, result.model, result.tokens_in, result.tokens_out) == (
        "memo",
        served,
        1000,
        500,
    )
    # gpt-4.1-mini: $0.40 in, $1.60 out per 1M tokens: 0.0004 + 0.0008.
    assert result.cost_usd == pytest.approx(0.0012)


def test_without_usage_tokens_are_zero_and_the_cost_unknown(server: FakeOpenAI) -> None:
    server.reply(Reply(body=completion("memo", prompt_tokens=None)))
    result = complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")
    assert (result.tokens_in, result.tokens_out, result.cost_usd) == (0, 0, None)


def test_a_model_without_a_price_has_an_unknown_cost(server: FakeOpenAI) -> None:
    server.reply(Reply(body=completion("memo", model="house-model-7")))
    assert complete(settings_for(server), MESSAGES, model="house-model-7").cost_usd is None


def test_a_rate_limit_is_retried_after_the_delay_the_server_asked_for(
    server: FakeOpenAI,
) -> None:
    server.reply(error(429, "Rate limit reached", **{"Retry-After": "1"}))
    result = complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")
    assert result.text == "ok"
    first, second = server.requests
    assert second.at - first.at >= 0.95
    assert second.body == first.body
    assert result.latency_ms >= 950  # the wait is part of what the call took


def test_a_persistent_server_error_fails_with_the_status_after_the_retries(
    server: FakeOpenAI,
) -> None:
    server.reply(*[error(500, "The server had an error", **{"retry-after-ms": "10"})] * 3)
    with pytest.raises(LlmFailed) as failed:
        complete(settings_for(server, max_retries=1), MESSAGES, model="gpt-4.1-mini")
    assert len(server.requests) == 2  # the call and one retry
    assert "HTTP 500" in str(failed.value)
    assert "rerun later" in str(failed.value)


def test_a_refused_key_fails_at_once_and_says_which_variables_to_check(
    server: FakeOpenAI,
) -> None:
    server.reply(error(401, "Incorrect API key provided"))
    with pytest.raises(LlmFailed) as failed:
        complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")
    assert len(server.requests) == 1
    message = str(failed.value)
    assert "HTTP 401" in message
    assert "OPENAI_API_KEY" in message and "AI_INTEGRATIONS_OPENAI_API_KEY" in message


def test_an_unreachable_endpoint_fails_and_says_to_check_the_base_url() -> None:
    with FakeOpenAI() as gone:
        settings = settings_for(gone, max_retries=0)
    with pytest.raises(LlmFailed) as failed:  # nothing listens on its port any more
        complete(settings, MESSAGES, model="gpt-4.1-mini")
    assert "APIConnectionError" in str(failed.value)
    assert "base URL" in str(failed.value)


def test_an_answer_without_text_is_a_failure_not_an_empty_memo(server: FakeOpenAI) -> None:
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    server.reply(Reply(body=body))
    with pytest.raises(LlmFailed, match="I can't help with that"):
        complete(settings_for(server), MESSAGES, model="gpt-4.1-mini")


def test_without_a_key_nothing_is_sent_and_the_error_names_both_variables(
    server: FakeOpenAI,
) -> None:
    settings = LlmSettings.from_env({"OPENAI_API_KEY": "", "OPENAI_BASE_URL": server.base_url})
    with pytest.raises(LlmUnavailable) as unavailable:
        complete(settings, MESSAGES, model="gpt-4.1-mini")
    assert "OPENAI_API_KEY" in str(unavailable.value)
    assert "AI_INTEGRATIONS_OPENAI_API_KEY" in str(unavailable.value)
    assert server.requests == []


def test_the_prompt_hash_is_of_canonical_json() -> None:
    expected = hashlib.sha256(b'[{"content":"hi","role":"user"}]').hexdigest()
    assert prompt_sha256([{"role": "user", "content": "hi"}]) == expected
    assert prompt_sha256([{"content": "hi", "role": "user"}]) == expected
    assert prompt_sha256([{"role": "user", "content": "hi!"}]) != expected


# --- settings -------------------------------------------------------------------------


def test_settings_default_to_the_spec_models_and_sampling() -> None:
    settings = LlmSettings.from_env({})
    assert settings == LlmSettings(
        api_key=None,
        base_url=None,
        memo_model="gpt-4.1-mini",
        proposal_model="gpt-4.1-mini",
        temperature=0.2,
        max_tokens=1800,
        timeout_s=60.0,
        max_retries=2,
    )


def test_settings_read_keys_urls_and_models_in_order_of_precedence() -> None:
    everything = {
        "OPENAI_API_KEY": "sk-own",
        "AI_INTEGRATIONS_OPENAI_API_KEY": "sk-integration",
        "AI_INTEGRATIONS_OPENAI_BASE_URL": "http://integration/v1",
        "OPENAI_BASE_URL": "http://own/v1",
        "IC_MEMO_MODEL": "gpt-4.1",
        "AGENT_GEN_MODEL": "gpt-4o",
    }
    settings = LlmSettings.from_env(everything)
    assert (settings.api_key, settings.base_url) == ("sk-own", "http://integration/v1")
    assert (settings.memo_model, settings.proposal_model) == ("gpt-4.1", "gpt-4o")

    fallbacks = LlmSettings.from_env(
        {
            **everything,
            "OPENAI_API_KEY": "",
            "AI_INTEGRATIONS_OPENAI_BASE_URL": "",
            "AGENT_GEN_MODEL": "",
        }
    )
    assert (fallbacks.api_key, fallbacks.base_url) == ("sk-integration", "http://own/v1")
    assert fallbacks.proposal_model == "gpt-4.1"  # the memo's model


def test_the_key_stays_out_of_the_settings_repr() -> None:
    assert "sk-secret" not in repr(LlmSettings.from_env({"OPENAI_API_KEY": "sk-secret"}))


# --- prices ---------------------------------------------------------------------------


def test_costs_are_list_prices_per_million_tokens() -> None:
    assert cost_usd("gpt-4.1", 1_000_000, 1_000_000) == pytest.approx(2.00 + 8.00)
    assert cost_usd("gpt-4.1-nano", 500_000, 250_000) == pytest.approx(0.05 + 0.10)
    assert cost_usd("gpt-4o", 2_000, 1_000) == pytest.approx(0.005 + 0.010)
    assert cost_usd("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert cost_usd("gpt-4.1-mini", 0, 1_000_000) == pytest.approx(1.60)


def test_a_dated_snapshot_is_priced_as_its_base_model_and_others_are_unknown() -> None:
    assert cost_usd("gpt-4.1-mini-2025-04-14", 2_000, 500) == pytest.approx(0.0008 + 0.0008)
    assert cost_usd("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd("gpt-5", 1_000, 1_000) is None
    assert cost_usd("gpt-4.1-mini-preview", 1_000, 1_000) is None
