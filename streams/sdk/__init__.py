"""Client SDK for trading agents: runs, LLM usage, signals and the kill-switch guard.

client = SyncClient.connect()
with client.run("momentum-1", strategy_class="momentum") as run:
    response = openai_client.chat.completions.create(...)
    run.add_llm_usage(response)
    run.emit_signal("BTC", "LONG", confidence=0.7)
"""

from streams.sdk.client import AsyncClient, SyncClient
from streams.sdk.run_context import AgentKilledError, current_run

__all__ = ["AgentKilledError", "AsyncClient", "SyncClient", "current_run"]
