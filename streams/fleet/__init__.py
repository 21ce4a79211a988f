"""The fleet-level rules (SPEC section 6): allocation under regime caps, the drawdown
breach, strategy-class kills, signed operator commands, and the fleet processor's fold
(`book`). Pure: state and time come in as arguments, events go out as return values.
May import `schemas`, `streams.core` and `streams.agents` (the stats fold).
"""
