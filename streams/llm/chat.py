"""One chat completion through the official openai client: the only place this package
touches the network. Retries are the client's own (it backs off and honours Retry-After);
what is left after them is an `LlmFailed` that says what went wrong and what to do."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from streams.llm.config import API_KEY_VARS, LlmSettings
from streams.llm.pricing import cost_usd

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str  # as the API answered: the dated snapshot that served the call
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    latency_ms: int


class LlmUnavailable(RuntimeError):
    """No API key: the caller can skip the LLM step and say so, rather than fail."""


class LlmFailed(RuntimeError):
    """The call failed after the client's retries."""


def prompt_sha256(messages: Messages) -> str:
    """Identifies a prompt in logs and records without repeating it (it holds fleet data)."""
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _advice(status: int | None) -> str:
    if status in (401, 403):
        return f"check the API key ({' or '.join(API_KEY_VARS)})"
    if status in (400, 404, 422):
        return (
            "check the model name (IC_MEMO_MODEL, AGENT_GEN_MODEL) and the base URL "
            "(AI_INTEGRATIONS_OPENAI_BASE_URL, OPENAI_BASE_URL)"
        )
    if status == 429:
        return "rate limited or out of quota: check the account's limits and billing, then rerun"
    if status is not None and status >= 500:
        return "the provider failed: rerun later"
    return "check the base URL and the network, then rerun"


def _failure_message(error: openai.APIError, retries: int) -> str:
    import openai

    status = error.status_code if isinstance(error, openai.APIStatusError) else None
    what = f"HTTP {status}" if status is not None else type(error).__name__
    return (
        f"chat completion failed (the client retries up to {retries} times): {what} from "
        f"{error.request.url}: "
        f"{error.message}; {_advice(status)}"
    )


def complete(
    settings: LlmSettings,
    messages: Messages,
    *,
    model: str,
    json_schema: dict[str, Any] | None = None,
    schema_name: str = "response",
) -> ChatResult:
    """With `json_schema`, the model is held to it by the API's strict structured output;
    the caller still validates what comes back."""
    if settings.api_key is None:
        raise LlmUnavailable(f"no OpenAI API key: set {' or '.join(API_KEY_VARS)}")
    # Imported here, when a completion is made: the client takes ~1 s to import, which
    # every `metasup` command paid before (they all load every subcommand).
    import openai

    client = openai.OpenAI(
        api_key=settings.api_key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
    )
    response_format: ResponseFormatJSONSchema | openai.Omit = openai.omit
    if json_schema is not None:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": json_schema},
        }
    started = time.monotonic()
    try:
        with client:
            response = client.chat.completions.create(
                model=model,
                # Our messages are plain role/content pairs, which is what these params are.
                messages=cast("list[ChatCompletionMessageParam]", messages),
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                response_format=response_format,
            )
    except openai.APIError as error:
        raise LlmFailed(_failure_message(error, settings.max_retries)) from error
    latency_ms = round((time.monotonic() - started) * 1000)
    if not response.choices or response.choices[0].message.content is None:
        refusal = response.choices[0].message.refusal if response.choices else None
        raise LlmFailed(
            f"chat completion from {response.model} returned no text"
            + (f" (refusal: {refusal})" if refusal else "")
            + "; rerun, or try another model"
        )
    usage = response.usage
    tokens_in = usage.prompt_tokens if usage else 0
    tokens_out = usage.completion_tokens if usage else 0
    served_by = response.model or model
    return ChatResult(
        text=response.choices[0].message.content,
        model=served_by,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        # Without usage the cost is unknown, not zero.
        cost_usd=cost_usd(served_by, tokens_in, tokens_out) if usage else None,
        latency_ms=latency_ms,
    )
