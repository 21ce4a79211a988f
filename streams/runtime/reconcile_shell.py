"""Reconciliation in Faust: the intakes re-key signals and prices by base asset onto
`reconcile-input`, so the book of a symbol always lives on one partition whatever
key producers used; the processor there is `streams.reconcile.processor`.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas.envelope import Event
from schemas.events import PriceObserved, SignalEmitted
from streams.core.signing import FactSigner
from streams.reconcile.candles import base_asset
from streams.reconcile.processor import ReconcileProcessor
from streams.reconcile.rule import BOOK_SHARDS, SymbolBook
from streams.runtime.outputs import FaustTopics, Handlers, forward
from streams.runtime.processor_shell import ProcessorShell


def register_reconcile(
    app: faust.App, topics: FaustTopics, handlers: Handlers, signer: FactSigner
) -> ProcessorShell[SymbolBook]:
    async def to_reconcile(message: Any, event: Event) -> None:
        assert isinstance(event, SignalEmitted | PriceObserved)
        await forward(topics, "reconcile-input", base_asset(event.symbol), event)

    handlers["signals"].append(to_reconcile)
    handlers["prices"].append(to_reconcile)
    return ProcessorShell(app, topics, ReconcileProcessor(), BOOK_SHARDS, signer)
