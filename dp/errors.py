"""Typed errors of the dp package."""

from __future__ import annotations


class DPError(Exception):
    """Base class of errors raised by dp/."""


class PrivacyConfigError(DPError, ValueError):
    """A privacy parameter is out of range; the message says "got X; want Y"."""


class AlreadyAttachedError(DPError, RuntimeError):
    """Opacus would be attached a second time to one module (it would duplicate hooks and noise)."""


class BudgetExceededError(DPError, RuntimeError):
    """One more step would spend more than the configured privacy budget."""


class ModularWrapError(DPError, ValueError):
    """A value does not fit the modular range of the secure sum: decoding it would wrap around."""


class AccountingError(DPError, ArithmeticError):
    """The accountant cannot compute epsilon for these (valid) parameters: its numerics failed, or
    the computation would need more memory than the stated bound (``dp.accounting.PRV_MAX_BYTES``)."""
