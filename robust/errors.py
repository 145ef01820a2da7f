"""Typed errors of the robust package.

Every error raised on purpose by robust/ is a :class:`RobustError`; each message says
"got X; want Y". The subclasses also derive from the builtin their callers used to catch
(``ValueError``, ``KeyError``, ``TypeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class RobustError(Exception):
    """Base class of errors raised by robust/."""


class ParameterError(RobustError, ValueError, TypeError):
    """A constructor or call parameter is out of range, of the wrong type, or unknown."""


class StackError(RobustError, ValueError):
    """The stack (or a per-row argument such as weights) has the wrong type, shape or dtype."""


class UnknownNameError(RobustError, KeyError):
    """A registry lookup of a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; the message reads better as plain text.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(RobustError, ValueError):
    """A name registered twice."""


class ByzantineBoundError(RobustError, ValueError):
    """The rule cannot tolerate f Byzantine rows among n; the message says "got f=..., n=...; want ..."."""


class NonFiniteError(RobustError, ValueError):
    """More rows are non-finite (NaN/Inf) than the Byzantine bound f tolerates."""


class NonFiniteResultError(RobustError, ArithmeticError):
    """A finite stack whose aggregate is not representable in the stack's dtype (it overflows)."""
