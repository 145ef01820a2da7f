"""Confidentiality: cryptographic primitives and secure-sum protocols."""

from secagg.errors import (
    AuthenticationError,
    EncodingError,
    MalformedMessage,
    ProtocolAbort,
    SecAggError,
    StageError,
    TooFewSurvivors,
)

__all__ = [
    "AuthenticationError",
    "EncodingError",
    "MalformedMessage",
    "ProtocolAbort",
    "SecAggError",
    "StageError",
    "TooFewSurvivors",
]
