"""Client SDK for trading agents: runs, LLM usage, signals and the kill-switch guard.

Holds the clients (`AsyncClient`, `SyncClient`, the `supervised` decorator), the run
context and the LLM price table. It may import `schemas` (the wire contract, the clock)
and the fleet view its guard reads (`streams.runtime.fleet_view`); it is a client, so nothing on
the server side may import it.

```python
from streams.sdk import SyncClient

with SyncClient("127.0.0.1:9092", producer="my-agent", follow_kills=True) as client:
    with client.run("momentum-1", strategy_class="momentum") as run:
        usage = {"prompt_tokens": 900, "completion_tokens": 120}
        run.add_llm_usage({"model": "gpt-4.1-mini", "usage": usage})  # or an OpenAI response
        client.emit_signal("BTC", "LONG", confidence=0.7)
```
"""

from streams.sdk.client import AsyncClient, SyncClient
from streams.sdk.run_context import AgentKilledError, current_run

__all__ = ["AgentKilledError", "AsyncClient", "SyncClient", "current_run"]
