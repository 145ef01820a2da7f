"""Typed errors of the secagg package (and of every protocol built on it)."""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of errors raised by secagg/."""


class EncodingError(SecAggError, ValueError):
    """A value cannot be encoded without overflow or wrap-around (e.g. n * max would wrap the ring)."""


class ProtocolAbort(SecAggError):
    """A protocol round cannot complete correctly and stops instead of giving a wrong result."""


class MalformedMessage(ProtocolAbort):
    """A message failed to decode or validate (bad version, length, field, point or ciphertext)."""


class StageError(ProtocolAbort):
    """A message arrived in a stage where it is not allowed (wrong, repeated or reordered stage)."""


class AuthenticationError(ProtocolAbort):
    """A signature, MAC or proof did not verify."""


class TooFewSurvivors(ProtocolAbort):
    """Fewer parties remain than the threshold needs; the message says how many were needed and left."""
