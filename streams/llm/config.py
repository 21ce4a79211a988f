"""Where the LLM calls get their key, endpoint and model, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_MEMO_MODEL = "gpt-4.1-mini"
API_KEY_VARS = ("OPENAI_API_KEY", "AI_INTEGRATIONS_OPENAI_API_KEY")
BASE_URL_VARS = ("AI_INTEGRATIONS_OPENAI_BASE_URL", "OPENAI_BASE_URL")


def _first_set(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """An empty variable counts as unset: deployment templates often export `KEY=`."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class LlmSettings:
    # Kept out of the repr so that logging the settings never leaks the key.
    api_key: str | None = field(repr=False)
    base_url: str | None
    memo_model: str
    proposal_model: str
    temperature: float = 0.2
    max_tokens: int = 1800
    timeout_s: float = 60.0
    # The openai client's own retries: it backs off and honours Retry-After.
    max_retries: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LlmSettings:
        """The integration's variables (AI_INTEGRATIONS_*) come from a hosted proxy: its key
        is only a fallback for OPENAI_API_KEY, but its base URL wins, since that key is only
        good at that proxy."""
        memo_model = _first_set(env, ("IC_MEMO_MODEL",)) or DEFAULT_MEMO_MODEL
        return cls(
            api_key=_first_set(env, API_KEY_VARS),
            base_url=_first_set(env, BASE_URL_VARS),
            memo_model=memo_model,
            proposal_model=_first_set(env, ("AGENT_GEN_MODEL",)) or memo_model,
        )
