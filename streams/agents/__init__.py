"""Everything per agent (SPEC section 6): rolling statistics, the confidence multiplier,
the decision rules, the execution gate, and the per-agent processor's step. Pure.
May import `schemas` and `streams.core`.
"""
