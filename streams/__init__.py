"""Stream processing, in the order data flows: `core` (shared facts, the processor
protocol), `reconcile`, `agents`, `fleet` (pure rules and processor steps), `broker`
(the embedded Kafka broker and durable log), `runtime` (the Faust shell), `cli`; and
`sdk`, the client library agents import (nothing on the server side imports it).
"""
