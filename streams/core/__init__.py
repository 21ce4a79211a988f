"""What every processor shares: the fleet facts each input carries and how a processor steps.

`fleet_state` (policy, regimes, kill list, allocation, looked up by event time),
`kill_list` and `kill_facts` (the kill list fold and the facts that change it), and
`processing` (the processor protocol, `Routed`, `apply_input`). Pure: no broker,
no clock. May import `schemas` only.
"""
