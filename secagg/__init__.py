"""Confidentiality: cryptographic primitives and secure-sum protocols."""

from secagg.encoding import FixedPoint
from secagg.errors import (
    AuthenticationError,
    EncodingError,
    MalformedMessage,
    ProtocolAbort,
    SecAggError,
    StageError,
    TooFewSurvivors,
)
from secagg.prg import expand
from secagg.shamir import ShamirError

__all__ = [
    "AuthenticationError",
    "EncodingError",
    "FixedPoint",
    "MalformedMessage",
    "ProtocolAbort",
    "SecAggError",
    "ShamirError",
    "StageError",
    "TooFewSurvivors",
    "expand",
]
