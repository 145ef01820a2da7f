"""Pre-aggregators ``(n, d) -> (m, d)``: NNM, Bucketing, Clip and ARC."""

from __future__ import annotations

import math
from typing import Any

import torch

from fedcore import l2_clip_factors
from robust._rng import make_generator, resolve_seed
from robust.base import (
    PRE_AGGREGATORS,
    PreAggregator,
    Stat,
    bound_error,
    check_f,
    gram,
    identity_sources,
    new_like,
    row_sq_norms,
)
from robust.errors import ParameterError
from robust.selection import nnm_mixing, pairwise_sq_distances, sq_distances_from_gram
from robust.statistics import Statistic

__all__ = ["ARC", "NNM", "Bucketing", "Clip", "arc_threshold", "clip_rows"]


class SeededGenerator:
    """Mixin of the rules that keep a ``torch.Generator`` (Bucketing's permutation, DnC's coordinates):
    seeded once from ``seed`` (``None``: from libsodium, see :mod:`robust._rng`), re-seeded by
    :meth:`reset`, its state reported by :meth:`state_dict`. List it before the rule's base class."""

    seed: int
    generator: torch.Generator

    def _seed_generator(self, seed: int | None) -> None:
        self.seed = resolve_seed(seed)
        self.generator = make_generator(self.seed)

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]  # the rule base class, next in the MRO
        self.generator = make_generator(self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}


def clip_rows(
    x: torch.Tensor, norms: torch.Tensor, c: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``x_i * min(1, c / ||x_i||)`` for every row, given the row norms (float64); into ``out`` if given."""
    scale = l2_clip_factors(norms, c)
    return torch.mul(x, scale.to(x.dtype).unsqueeze(1), out=new_like(x) if out is None else out)


@PRE_AGGREGATORS.register("nnm")
class NNM(PreAggregator):
    """Nearest-Neighbour Mixing (Allouah et al., AISTATS 2023): row ``i`` becomes the mean of its
    ``n - f`` nearest rows (itself included) -- ``M @ X`` with ``M`` from
    :func:`robust.selection.nnm_mixing`. Bound: ``n > 2f``. Rows keep their identity."""

    name = "nnm"
    statistic = Statistic.DISTANCES

    def __init__(self, f: int) -> None:
        super().__init__(f)

    def matrix_from(self, dist: torch.Tensor, n: int) -> torch.Tensor:
        """The ``(n, n)`` mixing matrix from squared distances (:func:`robust.selection.nnm_mixing`)."""
        assert self.f is not None
        self.check_bound(n, self.f)
        return nnm_mixing(dist, self.f)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n <= 2 * f:
            raise bound_error("NNM", f, n, "n > 2f")

    row_stat = staticmethod(gram)

    def _transform(
        self, x: torch.Tensor, f: int | None, stat: Stat = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        assert f is not None
        dist = pairwise_sq_distances(x) if stat is None else sq_distances_from_gram(stat)
        mix = nnm_mixing(dist, f)
        return torch.matmul(mix.to(x.dtype), x, out=self.output.like(x)), identity_sources(int(x.shape[0]))


@PRE_AGGREGATORS.register("bucketing")
class Bucketing(SeededGenerator, PreAggregator):
    """Bucketing (Karimireddy, He & Jaggi, ICLR 2022): shuffle the rows with a random permutation and
    output the means of consecutive buckets of ``s`` rows (``ceil(n / s)`` buckets, the last one
    smaller when ``s`` does not divide ``n``). With f Byzantine rows at most f buckets are affected.

    The permutation comes from a ``torch.Generator`` the object keeps (``seed=None``: seeded from
    libsodium so clients cannot predict it). ``last_sources`` lists each bucket's rows.

    Example:
        >>> import torch, robust
        >>> b = robust.Bucketing(s=2, seed=0)
        >>> out = b(torch.arange(5.0).unsqueeze(1))
        >>> out.shape, [len(rows) for rows in b.last_sources]
        (torch.Size([3, 1]), [2, 2, 1])
    """

    name = "bucketing"
    #: the permutation is the server's public randomness: the map needs nothing from the updates
    statistic = Statistic.LINEAR

    def __init__(self, s: int = 2, seed: int | None = None) -> None:
        super().__init__(None)
        self.s = check_f(s, "s")
        if self.s < 1:
            raise ParameterError(f"s must be >= 1; got s={s}")
        self._seed_generator(seed)

    row_stat = staticmethod(row_sq_norms)

    def out_rows(self, n: int) -> int:
        return math.ceil(n / self.s)

    def tolerated(self, n: int) -> int | None:
        return None

    def _transform(
        self, x: torch.Tensor, f: int | None, stat: Stat = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        avg, buckets = self._draw(int(x.shape[0]))
        return torch.matmul(avg.to(x.device, x.dtype), x, out=self.output.like(x, len(buckets))), buckets

    def _draw(self, n: int) -> tuple[torch.Tensor, list[list[int]]]:
        """A fresh permutation: the ``(ceil(n/s), n)`` bucket-averaging matrix and the buckets."""
        perm = torch.randperm(n, generator=self.generator).tolist()
        buckets = [sorted(perm[i : i + self.s]) for i in range(0, n, self.s)]
        avg = torch.zeros(len(buckets), n, dtype=torch.float64)
        for b, rows in enumerate(buckets):
            avg[b, rows] = 1.0 / len(rows)
        return avg, buckets

    def matrix_from(self, stat: None, n: int) -> torch.Tensor:
        """The bucket-averaging matrix of a fresh permutation (it advances the generator as a call
        does; ``last_sources`` is set to the buckets)."""
        avg, self.last_sources = self._draw(n)
        return avg

    def __repr__(self) -> str:
        return f"Bucketing(s={self.s})"


@PRE_AGGREGATORS.register("clip")
class Clip(PreAggregator):
    """Static L2 clipping: ``x_i <- x_i * min(1, c / ||x_i||)``. Rows keep their identity."""

    name = "clip"
    scaling = None  # c is an absolute radius: never rescaled
    statistic = Statistic.NORMS

    def __init__(self, c: float) -> None:
        super().__init__(None)
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
            raise ParameterError(f"c must be a finite number > 0; got c={c!r}")
        self.c = float(c)

    def tolerated(self, n: int) -> int | None:
        return None

    row_stat = staticmethod(row_sq_norms)

    def _transform(
        self, x: torch.Tensor, f: int | None, stat: Stat = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        norms = (row_sq_norms(x) if stat is None else stat).sqrt()
        return clip_rows(x, norms, self.c, self.output.like(x)), identity_sources(int(x.shape[0]))

    def matrix_from(self, sq_norms: torch.Tensor, n: int) -> torch.Tensor:
        """``diag(min(1, c / ||x_i||))`` from the squared row norms."""
        return torch.diag(l2_clip_factors(sq_norms.to(torch.float64).clamp_min(0.0).sqrt(), self.c))

    def __repr__(self) -> str:
        return f"Clip(c={self.c})"


def arc_threshold(norms: torch.Tensor, f: int) -> float | None:
    """ARC's clipping threshold: with ``k = floor(2 (f / n) (n - f))``, the ``(k + 1)``-th largest norm
    (``None`` when ``k = 0``: nothing is clipped)."""
    n = int(norms.numel())
    k = math.floor(2 * f * (n - f) / n)
    if k == 0:
        return None
    return float(torch.sort(norms, descending=True).values[min(k, n - 1)])


@PRE_AGGREGATORS.register("arc")
class ARC(PreAggregator):
    """Adaptive Robust Clipping (Allouah et al., NeurIPS 2024): clip every row to the ``(k + 1)``-th
    largest norm, ``k = floor(2 (f / n) (n - f))`` -- the k largest rows are clipped, no norm
    threshold is tuned. Bound: ``n > 2f``. Rows keep their identity."""

    name = "arc"
    statistic = Statistic.NORMS

    def __init__(self, f: int) -> None:
        super().__init__(f)

    def check_bound(self, n: int, f: int | None) -> None:
        assert f is not None
        if n <= 2 * f:
            raise bound_error("ARC", f, n, "n > 2f")

    row_stat = staticmethod(row_sq_norms)

    def _transform(
        self, x: torch.Tensor, f: int | None, stat: Stat = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        assert f is not None
        norms = (row_sq_norms(x) if stat is None else stat).sqrt()
        c = arc_threshold(norms, f)
        buf = self.output.like(x)
        out = buf.copy_(x) if c is None else clip_rows(x, norms, c, buf)
        return out, identity_sources(int(x.shape[0]))

    def matrix_from(self, sq_norms: torch.Tensor, n: int) -> torch.Tensor:
        """``diag(min(1, c / ||x_i||))`` with ARC's threshold ``c`` (:func:`arc_threshold`)."""
        assert self.f is not None
        self.check_bound(n, self.f)
        norms = sq_norms.to(torch.float64).clamp_min(0.0).sqrt()
        c = arc_threshold(norms, self.f)
        return torch.eye(n, dtype=torch.float64) if c is None else torch.diag(l2_clip_factors(norms, c))
