"""L2 row clipping, once for every layer.

A row ``x_i`` clipped to the L2 limit ``C`` is ``x_i * min(1, C / ||x_i||_2)`` (Abadi et al., CCS 2016;
McMahan et al., ICLR 2018 for client updates). Only the factor lives here; callers multiply it into
their rows in their own dtype and memory. Names: an *L2 limit* bounds a row's Euclidean norm; a
per-coordinate bound (``secagg.FixedPoint.clip``) bounds every ``|x_ij|`` and is a different thing.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

#: Norms below this are treated as this value in the division (the factor is 1 there anyway).
TINY = 1e-300

A = TypeVar("A", torch.Tensor, np.ndarray)


def l2_clip_factors(norms: A, limit: float) -> A:
    """``min(1, limit / ||x_i||)`` for every row norm (``(n,)``; a 0-d input gives a 0-d output).

    Args:
        norms: row L2 norms, non-negative (``torch.Tensor`` or ``numpy.ndarray``; float64 advised).
        limit: the L2 limit ``C > 0``.

    Returns:
        The factors, of the input's kind and dtype (numpy in, numpy out).

    >>> l2_clip_factors(np.array([0.0, 0.5, 4.0]), 2.0).tolist()
    [1.0, 1.0, 0.5]
    """
    t = torch.from_numpy(np.asarray(norms)) if isinstance(norms, np.ndarray) else norms
    out = torch.where(t > limit, limit / t.clamp_min(TINY), torch.ones_like(t))
    return out.numpy() if isinstance(norms, np.ndarray) else out
