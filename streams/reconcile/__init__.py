"""Reconciliation: signals meet prices and become realized PnL (SPEC section 5)."""
