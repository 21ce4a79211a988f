"""The Faust shell around the pure packages: the app and its settings, the topology
(intakes, relays), one shell that loads, steps, emits and stores for every processor,
the web views, the deadletter, the sharded table store, the Faust fixes, the
FleetView, and the embedded stack (`metasup up`). The only package that talks to Faust.
May import every package above it in the flow: `schemas`, `streams.core`,
`streams.reconcile`, `streams.agents`, `streams.fleet`, `streams.broker`.
"""
