"""Aggregation rounds across parties, each with a leakage profile and an overhead meter."""

from protocols import plain as plain
from protocols.base import (
    PROTOCOLS,
    AggregationProtocol,
    Leakage,
    Meter,
    PhaseCost,
    RoundResult,
    make,
)

__all__ = ["PROTOCOLS", "AggregationProtocol", "Leakage", "Meter", "PhaseCost", "RoundResult", "make"]
