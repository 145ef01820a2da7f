"""Integrity: Byzantine-robust aggregators, pre-aggregators and attacks on ``(n, d)`` stacks."""

from robust import attacks as attacks
from robust.errors import ByzantineBoundError, NonFiniteError, RobustError
from robust.selection import krum_scores, krum_select, pairwise_sq_distances

__all__ = [
    "ByzantineBoundError",
    "NonFiniteError",
    "RobustError",
    "attacks",
    "krum_scores",
    "krum_select",
    "pairwise_sq_distances",
]
