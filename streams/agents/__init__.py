"""Per-agent folds: rolling statistics and the confidence multiplier (SPEC section 6)."""
