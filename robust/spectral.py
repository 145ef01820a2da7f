"""Divide-and-Conquer (DnC, Shejwalkar & Houmansadr, NDSS 2021)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from robust.base import AGGREGATORS, Aggregator, Selection, Stat, bound_error, check_f, row_sq_norms
from robust.distance import mean_of_rows
from robust.errors import ParameterError
from robust.pre import SeededGenerator

__all__ = ["DnC", "dnc_keep", "sample_columns"]


def sample_columns(d: int, b: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random set of ``b`` distinct column indices in ``[0, d)`` (unsorted, int64).

    Dense case (``4b >= d``): the first ``b`` entries of a random permutation. Sparse case: draw
    indices with replacement until ``b`` distinct ones are seen, then keep a random ``b`` of them; the
    distinct values of i.i.d. uniform draws form a uniform subset of their size, so the result is
    uniform, at ~1/20 of the cost of permuting all d indices for d = 500,000, b = 10,000.
    """
    if not 1 <= b <= d:
        raise ParameterError(f"b must be in [1, d]; got b={b}, d={d}")
    if 4 * b >= d:
        return torch.randperm(d, generator=generator)[:b]
    extra = b * b // d + 64
    seen = torch.unique(torch.randint(d, (b + extra,), generator=generator))
    while seen.numel() < b:
        more = torch.randint(d, (b - int(seen.numel()) + extra,), generator=generator)
        seen = torch.unique(torch.cat([seen, more]))
    return seen[torch.randperm(int(seen.numel()), generator=generator)[:b]]


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run a small LAPACK call on one thread: on a loaded machine a multi-threaded ``eigh`` of a
    100 x 100 matrix was measured ~300x slower than a single-threaded one (threads spin-waiting for
    cores). Note: ``torch.set_num_threads`` is process-wide while this block runs."""
    prev = torch.get_num_threads()
    if prev == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _small_eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if gram.device.type != "cpu":
        return torch.linalg.eigh(gram)
    with _single_thread():
        return torch.linalg.eigh(gram)


def dnc_keep(sub: torch.Tensor, n_keep: int) -> torch.Tensor:
    """One DnC round on the sampled columns ``sub`` (``(n, b)``): center the rows, take the top right
    singular vector ``v`` of the centered matrix, score ``s_i = <x_i - mu, v>^2`` and return the
    boolean mask of the ``n_keep`` lowest scores (ties: lower index)."""
    centered = sub - sub.mean(dim=0)
    # The top right singular vector of an (n, b) matrix with n << b: eigenvector of the (n, n) Gram.
    gram = (centered @ centered.T).to(torch.float64)
    # Scores only order the rows: divide by the largest diagonal entry so eigh works near 1.
    top = float(torch.diagonal(gram).max())
    if 0.0 < top < math.inf:
        gram = gram / top
    evals, evecs = _small_eigh(gram)
    u = evecs[:, -1]  # left singular vector; <x_i - mu, v> = sigma * u_i
    scores = (u * u) * evals[-1].clamp_min(0.0)
    order = torch.sort(scores, stable=True).indices
    mask = torch.zeros(int(sub.shape[0]), dtype=torch.bool, device=sub.device)
    mask[order[:n_keep]] = True
    return mask


@AGGREGATORS.register("dnc")
class DnC(SeededGenerator, Aggregator):
    """Divide-and-Conquer (Shejwalkar & Houmansadr, NDSS 2021, Algorithm 2).

    ``niters`` times: sample ``sub_dim`` coordinates without replacement (:func:`sample_columns`),
    center the ``(n, b)`` submatrix, take its top right singular vector ``v``, score
    ``s_i = <x_i - mu, v>^2`` and keep the ``n - floor(c * f)`` lowest. The output is the mean of the
    rows kept in every iteration (if no row is, the rows kept most often). Peer defaults:
    ``sub_dim = 10000``, ``niters = 5``, ``c = 1``.

    The singular vector comes from the ``(n, n)`` Gram matrix of the centered submatrix
    (``<x_i - mu, v> = sigma u_i`` with ``u`` its top eigenvector), which is exact and cheaper than an
    SVD when ``n << b``. Coordinates are drawn from a ``torch.Generator`` the rule keeps (``seed=None``:
    seeded from libsodium). Bound: ``n > c * f``.
    """

    name = "dnc"

    def __init__(
        self, f: int, sub_dim: int = 10000, niters: int = 5, c: float = 1.0, seed: int | None = None
    ):
        super().__init__(f)
        self.sub_dim = check_f(sub_dim, "sub_dim")
        self.niters = check_f(niters, "niters")
        if self.sub_dim < 1 or self.niters < 1:
            raise ParameterError(f"sub_dim and niters must be >= 1; got sub_dim={sub_dim}, niters={niters}")
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c < 0:
            raise ParameterError(f"c must be a finite number >= 0; got c={c!r}")
        self.c = float(c)
        self._seed_generator(seed)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n - math.floor(self.c * f) < 1:
            raise bound_error("DnC", f, n, f"n > c*f (c={self.c})")

    row_stat = staticmethod(row_sq_norms)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        assert f is not None
        n, d = int(x.shape[0]), int(x.shape[1])
        n_keep = n - math.floor(self.c * f)
        b = min(self.sub_dim, d)
        votes = torch.zeros(n, dtype=torch.int64, device=x.device)
        for _ in range(self.niters):
            cols = sample_columns(d, b, self.generator).to(x.device)
            votes += dnc_keep(x.index_select(1, cols), n_keep).to(torch.int64)
        keep = torch.nonzero(votes == votes.max()).flatten()
        return mean_of_rows(x, keep), keep

    def __repr__(self) -> str:
        return f"DnC(f={self.f}, sub_dim={self.sub_dim}, niters={self.niters}, c={self.c})"
