"""Typed errors of the norm-bound proof system (all are :class:`secagg.errors.SecAggError`)."""

from __future__ import annotations

from secagg.errors import AuthenticationError, MalformedMessage, SecAggError


class MalformedProof(MalformedMessage):
    """A proof, commitment or point failed to decode: wrong length, a non-canonical scalar (>= l), or a
    point that is not a valid prime-order Ed25519 point (small order, non-canonical, off-curve)."""


class ProofRejected(AuthenticationError):
    """A well-formed proof did not verify (wrong statement, tampered element, replayed context)."""


class WitnessError(SecAggError, ValueError):
    """An honest prover was asked to prove a false statement (an entry or the norm out of bound)."""


class ParameterError(SecAggError, ValueError):
    """Proof parameters are out of range (e.g. the squared norm could wrap modulo the group order)."""


class LinkCheckFailed(AuthenticationError):
    """The unmasked aggregate and blinding sum do not open the sum of the survivors' commitments: some
    survivor masked a vector other than the one it committed to (and proved bounded)."""
