"""Read models: views rebuilt from the log on demand, through the same pure folds the live
tables use (agent stats, reconcile status, the policy history and diffs).

Each module is pure over events or log records, except `log`, which reads the broker or the
durable log. Projections may import `schemas`, the broker readers and the pure folds of
`streams`; never `streams.sdk` or `streams.cli`, which sit above them.
"""
