"""Confidentiality: cryptographic primitives and secure-sum protocols.

Masked secure aggregation (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al., CCS 2020):

>>> import numpy as np, secagg
>>> fp = secagg.FixedPoint(bits=32, clip=1.0)
>>> updates = np.linspace(-1.0, 1.0, 50).reshape(5, 10)
>>> x = np.stack([fp.encode(row, n_summands=5) for row in updates])
>>> out = secagg.run_round(x, t=3, dropouts={4: "masked_input"})
>>> out.survivors
[0, 1, 2, 3]
>>> mean = fp.decode_sum(out.sum, n_summands=5) / len(out.survivors)
>>> bool(np.allclose(mean, updates[:4].mean(0), atol=1e-6))
True
"""

from secagg.client import CLIENT_TRANSITIONS, SecAggClient, Stage
from secagg.config import RoundConfig
from secagg.driver import PHASES, RoundOutput, run_round
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
from secagg.graph import choose_degree, default_threshold, min_threshold, tolerated_corrupt
from secagg.prg import expand
from secagg.server import SERVER_TRANSITIONS, SecAggServer, ServerStage
from secagg.shamir import ShamirError, reconstruct, share

__all__ = [
    "CLIENT_TRANSITIONS",
    "PHASES",
    "SERVER_TRANSITIONS",
    "AuthenticationError",
    "EncodingError",
    "FixedPoint",
    "MalformedMessage",
    "ProtocolAbort",
    "RoundConfig",
    "RoundOutput",
    "SecAggClient",
    "SecAggError",
    "SecAggServer",
    "ServerStage",
    "ShamirError",
    "Stage",
    "StageError",
    "TooFewSurvivors",
    "choose_degree",
    "default_threshold",
    "expand",
    "min_threshold",
    "reconstruct",
    "run_round",
    "share",
    "tolerated_corrupt",
]
