"""Aggregation rounds across parties, each with a leakage profile and an overhead meter.

Every module of this package registers its protocols in :data:`PROTOCOLS` when imported; importing
the package imports them all, so ``protocols.make(name, ...)`` knows every protocol.
"""

import importlib
import pkgutil

from protocols.base import (
    PROTOCOLS,
    AggregationProtocol,
    Leakage,
    Meter,
    PhaseCost,
    RoundResult,
    make,
)

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["PROTOCOLS", "AggregationProtocol", "Leakage", "Meter", "PhaseCost", "RoundResult", "make"]
