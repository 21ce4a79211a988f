"""Reconciliation (SPEC section 5): signals meet prices and become realized PnL; price
sources (CSV files, Binance and Coinbase candles, the live poller). The rule and the
processor's step are pure; the feeds do HTTP at the edge. May import `schemas` and
`streams.core`.
"""
