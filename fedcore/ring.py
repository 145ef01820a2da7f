"""The centered lift of Z_{2^bits}, once for the masking protocols and distributed DP.

A ring element ``u`` in ``[0, 2^bits)`` stands for the integer ``u`` if ``u < 2^(bits-1)`` and
``u - 2^bits`` otherwise (two's complement), so sums of signed values that stay inside
``[-2^(bits-1), 2^(bits-1))`` decode exactly (Bonawitz et al., CCS 2017, Section 3; Kairouz, Liu and
Steinke, ICML 2021, Algorithm 2).
"""

from __future__ import annotations

import numpy as np


def centered_lift(y: np.ndarray, bits: int) -> np.ndarray:
    """Z_{2^bits} -> the centered integers ``[-2^(bits-1), 2^(bits-1))`` as int64 (``bits <= 63``).

    >>> centered_lift(np.array([0, 1, 255, 128], dtype=np.uint64), 8).tolist()
    [0, 1, -1, -128]
    """
    u = np.asarray(y).astype(np.uint64) & np.uint64((1 << bits) - 1)
    s = u.astype(np.int64)
    return np.where(u >= np.uint64(1 << (bits - 1)), s - np.int64(1 << bits), s)
