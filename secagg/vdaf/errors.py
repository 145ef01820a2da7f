"""Typed errors of secagg.vdaf (Prio3, FLPs, PINE): one family, ``VdafError``.

Every error says what it got and what it wanted. The verification errors name the step of the
draft (draft-irtf-cfrg-vdaf-20) at which a report is rejected, so that a server can record a typed
reason instead of stopping its round.
"""

from __future__ import annotations

from secagg.errors import SecAggError


class VdafError(SecAggError, ValueError):
    """Base class of the errors raised by secagg.vdaf."""


class VdafParameterError(VdafError):
    """An instance's parameters are out of range (field too small, bad chunk length, too few proofs)."""


class VdafDecodeError(VdafError):
    """Bytes do not decode: wrong length, a field element >= the modulus, a bad seed size."""


class VdafMeasurementError(VdafError):
    """A client's measurement is outside the domain the circuit accepts (the client refuses to prove)."""


class VdafVerifyError(VdafError):
    """A report failed verification; ``step`` names the draft's step that rejected it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
