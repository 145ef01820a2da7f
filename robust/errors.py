"""Typed errors of the robust package."""

from __future__ import annotations


class RobustError(Exception):
    """Base class of errors raised by robust/."""


class ByzantineBoundError(RobustError, ValueError):
    """The rule cannot tolerate f Byzantine rows among n; the message says "got f=..., n=...; want ..."."""


class NonFiniteError(RobustError, ValueError):
    """More rows are non-finite (NaN/Inf) than the Byzantine bound f tolerates."""
