"""Scheduled reports (SPEC 8): when each is due, who runs a period, and the runs themselves.

`periods` is pure (which period is due at a time); `claims` makes a period run once across
workers, restarts and rebalances; `jobs` builds and sends the IC memo, the LP email and
the forensics report, recording each step on the log before the next."""
