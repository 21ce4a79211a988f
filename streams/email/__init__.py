"""The e-mailed reports (SPEC section 8): the IC memo, the LP daily email and the failure
forensics, sent through SendGrid or, without a key or recipients, written to a local
outbox as `.eml` files.

`config` reads the settings from the environment, `message` builds the messages (pure)
and `send` delivers them, the only module that does I/O. May import `schemas` and
`projections` (the reports it sends).
"""
