"""Distance-based rules: Krum, Multi-Krum and Bulyan.

Each rule is two steps: a selection computed by the pure functions of :mod:`robust.selection` from the
``(n, n)`` squared-distance matrix (the same functions the encrypted-domain protocols call on
decrypted distances), then its application to the stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robust._network import apply_network, select_network
from robust.base import (
    AGGREGATORS,
    Aggregator,
    Selection,
    Stat,
    bound_error,
    check_f,
    gram,
    numpy_ok,
    take_rows,
)
from robust.coordinate import columnwise, coordinate_median
from robust.errors import ParameterError
from robust.selection import (
    bulyan_select,
    krum_select,
    pairwise_sq_distances,
    selection_weights,
    sq_distances_from_gram,
)
from robust.statistics import Statistic

__all__ = ["Bulyan", "Krum", "MultiKrum", "bulyan_coordinate_phase", "mean_of_rows"]


def _distances(x: torch.Tensor, gram: Stat) -> torch.Tensor:
    """Squared distances from the Gram matrix computed with the non-finite check (or afresh)."""
    return pairwise_sq_distances(x) if gram is None else sq_distances_from_gram(gram)


def mean_of_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of the given rows as one ``(n,) @ (n, d)`` product (no copy of the selected rows)."""
    return selection_weights(rows, int(x.shape[0]), x.dtype, x.device) @ x


@AGGREGATORS.register("krum")
class Krum(Aggregator):
    """Krum (Blanchard et al., NeurIPS 2017): output the row with the lowest score
    ``s_i = sum_{j in N_i} ||x_i - x_j||^2``, ``N_i`` the ``n - f - 2`` nearest other rows.

    Bound: ``n > 2f + 2``. ByzFL scores with the ``n - f - 1`` nearest others; fedsec follows the paper.
    Selection: :func:`robust.selection.krum_select`.

    Example:
        >>> import torch, robust
        >>> x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [0.05, 0.05], [9.0, 9.0]])
        >>> agg = robust.Krum(f=1)
        >>> agg(x).tolist(), agg.last_selection
        ([0.05000000074505806, 0.05000000074505806], [4])
    """

    name = "krum"
    statistic = Statistic.DISTANCES

    def __init__(self, f: int) -> None:
        super().__init__(f)

    def _m(self, n: int) -> int:
        return 1

    def weights_from(self, dist: torch.Tensor, n: int) -> torch.Tensor:
        """Selection weights from the ``(n, n)`` squared distances (:mod:`robust.statistics`):
        ``1 / m`` on the ``m`` rows :func:`robust.selection.krum_select` picks."""
        assert self.f is not None
        self.check_bound(n, self.f)
        return selection_weights(krum_select(dist, self.f, self._m(n)), n)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n <= 2 * f + 2:
            raise bound_error(type(self).__name__, f, n, "n > 2f + 2")

    row_stat = staticmethod(gram)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        sel = krum_select(_distances(x, stat), f, 1)
        return x[int(sel[0])].clone(), sel


@AGGREGATORS.register("multi_krum")
class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al., NeurIPS 2017): the mean of the ``m`` rows with the lowest Krum
    scores (``m = n - f`` by default, ``1 <= m <= n - f``). Bound: ``n > 2f + 2``."""

    name = "multi_krum"

    def __init__(self, f: int, m: int | None = None) -> None:
        super().__init__(f)
        if m is not None:
            m = check_f(m, "m")
            if m < 1:
                raise ParameterError(f"m must be >= 1 or None; got m={m}")
        self.m = m

    def _m(self, n: int, f: int | None = None) -> int:
        f = self.f if f is None else f
        assert f is not None
        return n - f if self.m is None else min(self.m, n - f)

    def check_bound(self, n: int, f: int | None) -> None:
        super().check_bound(n, f)
        assert f is not None
        if self.m is not None and self.m > n - f:
            raise ParameterError(f"m must be <= n - f; got m={self.m}, n={n}, f={f}")

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        n = int(x.shape[0])
        sel = krum_select(_distances(x, stat), f, self._m(n, f))
        return mean_of_rows(x, sel), torch.sort(sel).values

    def __repr__(self) -> str:
        return f"MultiKrum(f={self.f}, m={self.m})"


def _window_ranks(theta: int, beta: int) -> range:
    """The ranks :func:`_nearest_window_mean` reads: the median's and the pairs around it."""
    h = theta // 2
    return range(max(0, h - beta + theta % 2), min(theta, h + beta))


def _nearest_window_mean(s: Any, theta: int, beta: int) -> np.ndarray:
    """Per column, the mean of the ``beta`` of ``theta`` sorted values nearest to their median.

    ``s[r]`` is the row of rank ``r`` (``s`` may be an ``(theta, c)`` array or a mapping holding the
    ranks of :func:`_window_ranks`). The ``beta`` nearest values form a window of consecutive ranks
    that holds the median rank ``h = theta // 2`` (odd ``theta``; for even ``theta`` one of ``h - 1``,
    ``h``). A window of ``beta`` ranks around it holds exactly one rank of every pair
    ``(h - i, h + beta - i)``, ``i = 1 .. beta - 1`` (odd) or ``1 .. beta`` (even): the lower one
    iff it is no farther from the median ``m`` (``m - s[h-i] <= s[h+beta-i] - m``; ties go to the
    lower rank, as a stable sort by distance would). So the sum is ``s[h]`` (odd) plus one pick per
    pair: five ufunc calls per pair, no index arithmetic.
    """
    h = theta // 2
    odd = theta % 2 == 1
    m = s[h] if odd else s[h - 1] * 0.5 + s[h] * 0.5
    acc = np.array(s[h]) if odd else np.zeros_like(m)
    for i in range(1, beta if odd else beta + 1):
        lo, hi = h - i, h + beta - i
        if lo < 0:
            acc += s[hi]
        elif hi >= theta:
            acc += s[lo]
        else:
            acc += np.where(np.subtract(m, s[lo]) <= np.subtract(s[hi], m), s[lo], s[hi])
    acc /= beta
    return acc


def _np_bulyan(theta: int, beta: int) -> Any:
    ranks = _window_ranks(theta, beta)
    net = select_network(theta, ranks)

    def kernel(block: np.ndarray) -> np.ndarray:
        return _nearest_window_mean(dict(zip(ranks, apply_network(block, net))), theta, beta)

    return kernel


def bulyan_coordinate_phase(sel: torch.Tensor, beta: int) -> torch.Tensor:
    """Second phase of Bulyan: per coordinate, the mean of the ``beta`` values closest to the
    coordinate-wise median of the selected rows ``sel`` (``(theta, d)``)."""
    theta = int(sel.shape[0])
    if not 1 <= beta <= theta:
        raise ParameterError(f"beta must be in [1, theta]; got beta={beta}, theta={theta}")
    if numpy_ok(sel):
        return columnwise(sel, _np_bulyan(theta, beta))
    med = coordinate_median(sel)
    idx = (sel - med).abs().topk(beta, dim=0, largest=False).indices
    return sel.gather(0, idx).mean(dim=0)


@AGGREGATORS.register("bulyan")
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al., ICML 2018) on top of Krum. Bound: ``n >= 4f + 3``.

    1. Selection (:func:`robust.selection.bulyan_select`): ``theta = n - 2f`` rows by recursive Krum.
    2. Per coordinate, the mean of the ``beta = theta - 2f`` selected values closest to the
       coordinate-wise median of the selection.
    """

    name = "bulyan"

    def __init__(self, f: int) -> None:
        super().__init__(f)

    row_stat = staticmethod(gram)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n < 4 * f + 3:
            raise bound_error("Bulyan", f, n, "n >= 4f + 3")

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        n = int(x.shape[0])
        sel = bulyan_select(_distances(x, stat), f)
        rows = take_rows(x, sel)
        out = bulyan_coordinate_phase(rows, n - 4 * f)
        return out.to(x.device), torch.sort(sel).values
