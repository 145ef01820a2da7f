"""Robust aggregation under CKKS (TenSEAL): clients, a server without the secret key, a key holder.

Importing this subpackage registers ``ckks_mean``, ``ckks_norm_clip``, ``ckks_krum``,
``ckks_multi_krum``, ``ckks_median`` and ``ckks_trimmed_mean`` in :data:`protocols.PROTOCOLS`.
"""

from protocols.ckks import krum, mean, norm_clip, order_stats
from protocols.ckks.checks import ByzantineInputError, MalformedUpload
from protocols.ckks.driver import CKKSRound, Message
from protocols.ckks.krum import CKKSKrum, CKKSMultiKrum, distance_error_bound
from protocols.ckks.mean import CKKSMean
from protocols.ckks.norm_clip import CKKSNormClip
from protocols.ckks.order_stats import CKKSMedian, CKKSTrimmedMean
from protocols.ckks.params import CKKSParameterError, CKKSParams
from protocols.ckks.setup import SetupError

__all__ = [
    "ByzantineInputError",
    "CKKSKrum",
    "CKKSMean",
    "CKKSMedian",
    "CKKSMultiKrum",
    "CKKSNormClip",
    "CKKSParameterError",
    "CKKSParams",
    "CKKSRound",
    "CKKSTrimmedMean",
    "MalformedUpload",
    "Message",
    "SetupError",
    "distance_error_bound",
    "krum",
    "mean",
    "norm_clip",
    "order_stats",
]
