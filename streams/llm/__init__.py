"""The LLM edge: the weekly investment-committee memo and new-agent proposals, asked of an
OpenAI chat model through the official client. Prompts and validation are pure; only
`chat.complete` talks to the network."""
