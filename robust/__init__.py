"""Integrity: Byzantine-robust aggregators, pre-aggregators and attacks on ``(n, d)`` stacks.

>>> import torch, robust
>>> agg = robust.make("trimmed_mean", f=1)
>>> agg(torch.tensor([[0.0], [1.0], [2.0], [100.0]])).tolist()
[1.5]
"""

from robust import attacks as attacks
from robust.base import AGGREGATORS, PRE_AGGREGATORS, Aggregator, PreAggregator, make, make_pre
from robust.coordinate import CMLS, Mean, Median, SignMajority, TrimmedMean, coordinate_median, trimmed_mean
from robust.distance import Bulyan, Krum, MultiKrum
from robust.errors import ByzantineBoundError, NonFiniteError, RobustError
from robust.geometric import CenteredClipping, GeometricMedian
from robust.pipeline import Pipeline
from robust.pre import ARC, NNM, Bucketing, Clip
from robust.selection import (
    bulyan_select,
    coordinate_ranks,
    krum_scores,
    krum_select,
    median_weights,
    nnm_mixing,
    pairwise_sq_distances,
    trimmed_mean_weights,
)
from robust.spectral import DnC
from robust.trust import FLTrust, Reputation

__all__ = [
    "AGGREGATORS",
    "ARC",
    "CMLS",
    "NNM",
    "PRE_AGGREGATORS",
    "Aggregator",
    "Bucketing",
    "Bulyan",
    "ByzantineBoundError",
    "CenteredClipping",
    "Clip",
    "DnC",
    "FLTrust",
    "GeometricMedian",
    "Krum",
    "Mean",
    "Median",
    "MultiKrum",
    "NonFiniteError",
    "Pipeline",
    "PreAggregator",
    "Reputation",
    "RobustError",
    "SignMajority",
    "TrimmedMean",
    "attacks",
    "bulyan_select",
    "coordinate_median",
    "coordinate_ranks",
    "krum_scores",
    "krum_select",
    "make",
    "make_pre",
    "median_weights",
    "nnm_mixing",
    "pairwise_sq_distances",
    "trimmed_mean",
    "trimmed_mean_weights",
]
