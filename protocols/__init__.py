"""Aggregation rounds across parties, each with a leakage profile and an overhead meter.

Every module of this package registers its protocols in :data:`PROTOCOLS` when imported; importing
the package imports them all. ``protocols.make(mechanism, rule=..., **params)`` composes a
confidentiality mechanism with a robust rule (:mod:`protocols.mechanisms`); without ``rule`` it also
builds a registered protocol by name, as before.
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
)
from protocols.mechanisms import (
    MECHANISMS,
    Composed,
    CompositionError,
    UnknownMechanism,
    UnsupportedComposition,
    make,
)

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "MECHANISMS",
    "PROTOCOLS",
    "AggregationProtocol",
    "Composed",
    "CompositionError",
    "Leakage",
    "Meter",
    "PhaseCost",
    "RoundResult",
    "UnknownMechanism",
    "UnsupportedComposition",
    "make",
]
