"""Coordinate-wise rules: Mean, Median, TrimmedMean, SignMajority and CMLS.

The order statistics are pure functions (:func:`coordinate_median`, :func:`trimmed_mean`) that work on
cache-sized column blocks: on the CPU through a comparator network applied to all columns of a block
at once (:mod:`robust._network`; measured here ~2.5x faster than ``numpy.sort(axis=0)``, itself faster
than ``torch.sort(dim=0)``/``torch.median(dim=0)``/``numpy.partition``), blocks spread over
``torch.get_num_threads()`` threads; on other devices through ``torch.sort``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from robust._network import apply_network, select_network
from robust.base import (
    AGGREGATORS,
    Aggregator,
    Selection,
    Stat,
    aligned_empty,
    as_weights,
    bound_error,
    numpy_ok,
    row_sq_norms,
)
from robust.errors import ParameterError
from robust.selection import median_weights, trimmed_mean_weights
from robust.statistics import Statistic

__all__ = [
    "CMLS",
    "Mean",
    "Median",
    "SignMajority",
    "TrimmedMean",
    "coordinate_median",
    "trimmed_mean",
]

#: Columns per step of the non-CPU SignMajority path.
_DEVICE_STEP = 131072

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="robust")
    return _POOL


def columnwise(x: torch.Tensor, kernel: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply ``kernel`` (an ``(n, c) -> (c,)`` numpy function) to column blocks of a CPU stack.

    Blocks (:func:`block_cols`) are processed in parallel threads (numpy releases the GIL inside its
    kernels); the result is a new ``(d,)`` tensor of the stack's dtype.
    """
    xn = x.detach().numpy()
    n, d = xn.shape
    threads = max(1, torch.get_num_threads())
    chunk = block_cols(n, d, threads)
    out = aligned_empty((d,), xn.dtype)

    def job(j: int) -> None:
        out[j : j + chunk] = kernel(xn[:, j : j + chunk])

    starts = range(0, d, chunk)
    if len(starts) == 1 or threads == 1:
        for j in starts:
            job(j)
    else:
        list(_pool().map(job, starts))
    return torch.from_numpy(out)


#: Columns, and values (16 MiB of float32), per block of :func:`columnwise` at most.
BLOCK_COLS, BLOCK_VALUES = 50_000, 2**22


def block_cols(n: int, d: int, threads: int) -> int:
    """Columns per block: ``d`` split into equal blocks of at most :data:`BLOCK_COLS` columns and
    :data:`BLOCK_VALUES` values, as many blocks as a multiple of ``threads`` so that every thread gets
    the same work (never under 1024 columns unless ``d`` is). Every comparator is a ufunc call per
    block, and each call hands the GIL over to the other pool thread, so short rows lose to the call
    overhead; measured on 2 cores, columns per block against the trimmed mean's time: n = 25,
    d = 500,000: 31,250 -> 29-37 ms, 41,667 -> 27-30 ms, 50,000 -> 29 ms, 62,500 -> 31-42 ms;
    n = 100, d = 100,000: 10,000 -> 117 ms, 16,667 -> 67 ms, 25,000 -> 55 ms, 50,000 -> 58 ms."""
    cap = max(1024, min(BLOCK_COLS, BLOCK_VALUES // n))
    blocks = threads * math.ceil(d / (threads * cap))
    return max(math.ceil(d / blocks), min(d, 1024))


def _median_ranks(n: int) -> tuple[int, ...]:
    h = n // 2
    return (h,) if n % 2 == 1 else (h - 1, h)


def _np_median(n: int) -> Callable[[np.ndarray], np.ndarray]:
    net = select_network(n, _median_ranks(n))

    def kernel(block: np.ndarray) -> np.ndarray:
        rows = apply_network(block, net)
        if len(rows) == 1:
            return rows[0]
        return rows[0] * 0.5 + rows[1] * 0.5

    return kernel


def _np_sign_votes(block: np.ndarray) -> np.ndarray:
    """``sum_i sign(x_ij)`` per column as (#positive - #negative): two comparisons into one byte mask,
    each summed down the columns in uint8 (no casts; up to 255 rows, wider sums beyond). Measured at
    n = 25, d = 500,000 on 2 cores: 7.2-8.0 ms, against 9.7-11.8 ms with int16 sums, 10.7-11.4 ms for
    a float ``sign`` and sum and 13-15 ms for a sign-and-add per row."""
    acc = np.uint8 if block.shape[0] < 256 else np.int64
    mask = np.empty(block.shape, dtype=np.bool_)
    np.greater(block, 0, out=mask)
    votes = np.add.reduce(mask.view(np.uint8), axis=0, dtype=acc).astype(block.dtype)
    np.less(block, 0, out=mask)
    votes -= np.add.reduce(mask.view(np.uint8), axis=0, dtype=acc)
    return votes


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of the rows of ``x`` (``(n, d) -> (d,)``).

    ``med_j = x_(k)j`` for odd ``n = 2k + 1`` (0-based order statistics); for even ``n`` the average of
    the two middle values ``(x_(n/2-1)j + x_(n/2)j) / 2``, as ``numpy.median`` (``torch.median`` would
    return the lower one).
    """
    n = int(x.shape[0])
    if numpy_ok(x):
        return columnwise(x, _np_median(n))
    if n % 2 == 1:
        return torch.median(x, dim=0).values
    s = torch.sort(x, dim=0).values
    return s[n // 2 - 1] * 0.5 + s[n // 2] * 0.5


def trimmed_mean(x: torch.Tensor, f: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean: per column drop the ``f`` largest and ``f`` smallest, average the
    ``n - 2f`` others (Yin et al., ICML 2018). Requires ``n > 2f``.

    The middle values are selected by order statistics, never by subtracting the extremes from the sum
    (that would lose the honest values to cancellation when a row is ~1e12).
    """
    n = int(x.shape[0])
    if n <= 2 * f:
        raise bound_error("trimmed mean", f, n, "n > 2f")
    if f == 0:
        return x.mean(dim=0)
    if numpy_ok(x):
        net = select_network(n, bag=range(f, n - f))

        def kernel(block: np.ndarray) -> np.ndarray:
            rows = apply_network(block, net)
            acc = np.add(rows[0], rows[1]) if len(rows) > 1 else rows[0].copy()
            for r in rows[2:]:
                acc += r
            acc /= n - 2 * f
            return acc

        return columnwise(x, kernel)
    s = torch.sort(x, dim=0).values
    return s[f : n - f].mean(dim=0)


@AGGREGATORS.register("mean")
class Mean(Aggregator):
    """Arithmetic mean, optionally weighted: ``out = sum_i w_i x_i / sum_i w_i``.

    Not robust (breakdown point 0): it tolerates no non-finite row. ``weights`` (shape ``(n,)``,
    non-negative, positive sum) may be passed at call time: ``Mean()(stack, weights=w)``.
    """

    name = "mean"
    statistic = Statistic.LINEAR

    def __init__(self) -> None:
        super().__init__(None)

    def weights_from(self, stat: None, n: int) -> torch.Tensor:
        """``w_i = 1 / n`` (:mod:`robust.statistics`; a linear rule needs no statistic)."""
        return torch.full((n,), 1.0 / n, dtype=torch.float64)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, weights: Any = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        if kw:
            raise ParameterError(f"Mean got unexpected keyword arguments {sorted(kw)}; want only weights=")
        n = int(x.shape[0])
        if weights is None:
            return x.mean(dim=0), torch.arange(n)
        w = as_weights(weights, n, x.device, x.dtype)
        return (w / w.sum()) @ x, torch.nonzero(w > 0).flatten()


@AGGREGATORS.register("median")
class Median(Aggregator):
    """Coordinate-wise median (Yin et al., ICML 2018); see :func:`coordinate_median`.

    Breakdown point 1/2: tolerates up to ``ceil(n/2) - 1`` non-finite rows (they are dropped first).
    The median keeps no rows as a whole, so ``last_selection`` is ``None``.

    Example:
        >>> import torch, robust
        >>> robust.Median()(torch.tensor([[1.0, 5.0], [2.0, float("nan")], [4.0, 6.0], [3.0, 1e12]])).tolist()
        [3.0, 6.0]
    """

    name = "median"
    statistic = Statistic.RANKS

    def __init__(self) -> None:
        super().__init__(None)

    def weights_from(self, ranks: torch.Tensor, n: int) -> torch.Tensor:
        """``(n, d)`` weights from the coordinate ranks: :func:`robust.selection.median_weights`."""
        return median_weights(ranks)

    def tolerated(self, n: int) -> int:
        return (n - 1) // 2

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        return coordinate_median(x), None


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean with ``f`` trimmed on each side; see :func:`trimmed_mean`.

    Bound: ``n > 2f``.
    """

    name = "trimmed_mean"
    statistic = Statistic.RANKS

    def __init__(self, f: int) -> None:
        super().__init__(f)

    def weights_from(self, ranks: torch.Tensor, n: int) -> torch.Tensor:
        """``(n, d)`` weights from the coordinate ranks: :func:`robust.selection.trimmed_mean_weights`."""
        assert self.f is not None
        self.check_bound(n, self.f)
        return trimmed_mean_weights(ranks, self.f)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n <= 2 * f:
            raise bound_error("TrimmedMean", f, n, "n > 2f")

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        return trimmed_mean(x, f), None


@AGGREGATORS.register("sign_majority")
class SignMajority(Aggregator):
    """Majority vote on signs (signSGD with majority vote, Bernstein et al., ICLR 2019).

    ``out_j = scale * sign(sum_i sign(x_ij))`` (0 on a tie). Each client has one vote per coordinate,
    so f < n/2 voters cannot flip a coordinate on which the honest clients agree by a margin > f.
    Tolerates ``ceil(n/2) - 1`` non-finite rows.
    """

    name = "sign_majority"
    scaling = None  # signs only: nothing is squared, nothing to rescale

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(None)
        if isinstance(scale, bool) or not (
            isinstance(scale, int | float) and np.isfinite(scale) and scale > 0
        ):
            raise ParameterError(f"scale must be a finite float > 0; got scale={scale!r}")
        self.scale = float(scale)

    def tolerated(self, n: int) -> int:
        return (n - 1) // 2

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        if numpy_ok(x):
            votes = columnwise(x, _np_sign_votes)
        else:
            d = int(x.shape[1])
            votes = torch.empty(d, dtype=x.dtype, device=x.device)
            for j in range(0, d, _DEVICE_STEP):
                votes[j : j + _DEVICE_STEP] = torch.sign(x[:, j : j + _DEVICE_STEP]).sum(dim=0)
        return torch.sign(votes).mul_(self.scale), None


@AGGREGATORS.register("cmls")
class CMLS(Aggregator):
    """Coordinate-wise median + linear scalarization (after Errami & Bergou, IJCAI-24).

    The base rule (coordinate-wise median ``m``) marks suspects; instead of discarding them, every row
    is included with a penalty weight, and the output minimizes the scalarized objective
    ``sum_i w_i ||z - x_i||^2``, i.e. ``z = m + sum_i w_i (x_i - m) / sum_i w_i``.

    The paper's exact trade-off weights were not available to us; fedsec's choice (documented, not the
    paper's): with ``r_i = ||x_i - m||`` and ``r_ref`` the ``(n - f)``-th smallest ``r_i``,

    - the ``n - f`` rows nearest to ``m`` (unmarked) get ``w_i = 1``;
    - the ``f`` marked rows get ``w_i = penalty * (r_ref / r_i)^2``.

    A marked row moves the output by at most ``penalty * r_ref^2 / r_i <= penalty * r_ref`` divided by
    ``sum w``, so f arbitrarily large rows have bounded influence. Bound: ``n > 2f`` (the median's).

    ``last_selection`` holds the unmarked rows; ``last_weights`` every row's weight.
    """

    name = "cmls"

    def __init__(self, f: int, penalty: float = 0.5) -> None:
        super().__init__(f)
        if isinstance(penalty, bool) or not (isinstance(penalty, int | float) and 0.0 <= penalty <= 1.0):
            raise ParameterError(f"penalty must be a float in [0, 1]; got penalty={penalty!r}")
        self.penalty = float(penalty)
        self.last_weights: torch.Tensor | None = None

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n <= 2 * f:
            raise bound_error("CMLS", f, n, "n > 2f")

    row_stat = staticmethod(row_sq_norms)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        n = int(x.shape[0])
        m = coordinate_median(x).to(x.device)
        r = row_distances(x, m)
        order = torch.sort(r, stable=True).indices
        keep = order[: n - f]
        r_ref = r[order[n - f - 1]]
        w = torch.ones(n, dtype=torch.float64, device=x.device)
        if f > 0:
            marked = order[n - f :]
            rm = r[marked]
            w[marked] = torch.where(rm > 0, self.penalty * (r_ref / rm) ** 2, torch.ones_like(rm))
        self.last_weights = w.clone()
        wx = (w / w.sum()).to(x.dtype)
        # z = m + sum_i w_i (x_i - m) / sum w  ==  sum_i w_i x_i / sum w  (weights sum to 1).
        out = wx @ x
        return out, torch.sort(keep).values

    def reset(self) -> None:
        super().reset()
        self.last_weights = None


#: Columns per block of :func:`row_distances`' difference pass (3 MiB of float32 at n = 25).
DIST_COLS = 32768


def row_distances(x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """``||x_i - z||`` for every row (``z = None``: the row norms), as float64.

    The differences are taken exactly, a column block at a time into one reused buffer (no ``(n, d)``
    temporary, no Gram-matrix expansion and its cancellation when ``x_i`` is close to ``z``), each
    block's norms accumulated in float64 (~1e-7 relative error in float32 per block). Measured on 2
    cores at n = 25, d = 500,000, float32: 6.4 ms against 9.0 ms for a fused
    ``torch.cdist(..., "donot_use_mm_for_euclid_dist")``. Rows whose distance overflows the dtype
    (float32 entries beyond ~1e19) are recomputed in float64, so huge Byzantine rows get their true,
    finite distance.
    """
    if z is None:
        return row_sq_norms(x).sqrt_()
    if x.dtype not in (torch.float32, torch.float64):
        x, z = x.float(), z.float()
    n, d = int(x.shape[0]), int(x.shape[1])
    buf = torch.empty((n, min(d, DIST_COLS)), dtype=x.dtype, device=x.device)
    acc = torch.zeros(n, dtype=torch.float64, device=x.device)
    for j in range(0, d, DIST_COLS):
        w = min(DIST_COLS, d - j)
        diff = torch.sub(x[:, j : j + w], z[j : j + w], out=buf[:, :w])
        acc += torch.linalg.vector_norm(diff, dim=1).to(torch.float64).square_()
    acc.sqrt_()
    bad = torch.nonzero(~torch.isfinite(acc)).flatten()
    if bad.numel():
        rows = x.index_select(0, bad).to(torch.float64) - z.to(torch.float64)
        acc[bad] = rows.square_().sum(dim=1).sqrt_()
    return acc
