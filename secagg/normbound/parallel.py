"""One proof (or one verification) on several cores: multi-scalar multiplications and generator folds
split over a small process pool.

Both are sums or maps over independent terms, so a split changes nothing in the result:

    sum_i k_i P_i = sum_j (sum_{i in chunk j} k_i P_i)          (msm)
    G'_i = G_lo,i + c_i G_hi,i   for each i                       (fold)

and the group law is exact, so every chunking gives the same encodings as one process (the tests compare
bytes). Points travel as their 32-byte encodings and scalars as Python ints; the chunks of one call are in
flight together (several MSMs of a round, or the folds of G and H, in one batch) and a call returns only
when all are back, so the transcript sees the same values in the same order.

:class:`Workers` holds one pool for the duration of a proof and is reused across its rounds. Pools do not
nest: :func:`default_workers` is 1 inside a child process (a proof made in the protocol's per-client pool
uses its own process only) and ``os.cpu_count()`` otherwise. The pool starts with the first call of
:data:`START_MIN` terms or more; calls below :data:`PARALLEL_MIN` terms run in the calling process (the
transfer and the pool's start cost more than they save).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from types import TracebackType
from typing import TypeVar

from secagg.normbound.errors import ParameterError
from secagg.normbound.group import L, add, msm, smul, sum_points

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN = 512
"""Terms of one call below which it runs in the calling process (512 scalar multiplications take about
0.1 s; shipping them to a started pool costs a few ms, and the IPA's late rounds together hold about n
of a proof's 8n scalar multiplications)."""
START_MIN = 4096
"""Terms of one call from which a pool is started (a fork costs tens of ms; smaller proofs stay in the
calling process throughout)."""
CHUNKS_PER_WORKER = 3
"""Chunks per worker and call: a worker slowed by other load takes fewer of them."""


def default_workers() -> int:
    """Processes for one proof: ``os.cpu_count()``, or 1 inside a child process (no nested pools)."""
    if multiprocessing.parent_process() is not None:
        return 1
    return os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """``workers`` validated (``None``: :func:`default_workers`); raise :class:`ParameterError`."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers: got {workers!r}; want None or an int >= 1")
    return workers


def fold_points(lo: Sequence[bytes], hi: Sequence[bytes], coeffs: Sequence[int]) -> list[bytes]:
    """``[lo_i + c_i hi_i]`` for ``i < len(hi)`` (a coefficient 1 costs an addition only)."""
    return [add(p, q if c % L == 1 else smul(c, q)) for p, q, c in zip(lo, hi, coeffs)]


def _msm_job(scalars: list[int], points: list[bytes]) -> bytes:
    return msm(scalars, points)


def _fold_job(lo: list[bytes], hi: list[bytes], coeffs: list[int]) -> list[bytes]:
    return fold_points(lo, hi, coeffs)


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(n, i + step)) for i in range(0, n, step)]


class Workers:
    """A pool of ``count`` processes for one proof or verification (a context manager).

    With ``count == 1`` nothing is started and every call runs in the calling process.
    """

    def __init__(self, count: int | None = None) -> None:
        self.count = check_workers(count)
        self._pool: Executor | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool's processes (if any were started)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _parts(self, n: int) -> int:
        if self.count < 2 or n < PARALLEL_MIN or (self._pool is None and n < START_MIN):
            return 1
        return max(1, min(self.count * CHUNKS_PER_WORKER, n // (PARALLEL_MIN // 2)))

    def _executor(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.count)
        return self._pool

    def map(self, fn: Callable[[T], R], items: Sequence[T], min_total: int) -> list[R]:
        """``[fn(item) for item in items]``, one item per task when there are several items and the work
        (``min_total`` terms in all) is worth a pool; ``fn`` must be a module-level function."""
        if self.count < 2 or len(items) < 2 or min_total < START_MIN:
            return [fn(item) for item in items]
        return list(self._executor().map(fn, items))

    def msms(self, jobs: Sequence[tuple[Sequence[int], Sequence[bytes]]]) -> list[bytes]:
        """``[msm(scalars, points) for scalars, points in jobs]``, every chunk of every job in flight
        together."""
        for scalars, points in jobs:
            if len(scalars) != len(points):
                raise ValueError(
                    f"msm: got {len(scalars)} scalars and {len(points)} points; want equal lengths"
                )
        if sum(self._parts(len(s)) for s, _ in jobs) <= len(jobs):
            return [msm(s, p) for s, p in jobs]
        ex = self._executor()
        futures = [
            [ex.submit(_msm_job, list(s[a:b]), list(p[a:b])) for a, b in _bounds(len(s), self._parts(len(s)))]
            for s, p in jobs
        ]
        return [sum_points(f.result() for f in fs) for fs in futures]

    def msm(self, scalars: Sequence[int], points: Sequence[bytes]) -> bytes:
        """sum_i scalars[i] * points[i]."""
        return self.msms([(scalars, points)])[0]

    def folds(
        self, jobs: Sequence[tuple[Sequence[bytes], Sequence[bytes], Sequence[int]]]
    ) -> list[list[bytes]]:
        """``[fold_points(lo, hi, coeffs) for lo, hi, coeffs in jobs]``, all chunks in flight together."""
        if sum(self._parts(len(c)) for _, _, c in jobs) <= len(jobs):
            return [fold_points(lo, hi, c) for lo, hi, c in jobs]
        ex = self._executor()
        futures = [
            [
                ex.submit(_fold_job, list(lo[a:b]), list(hi[a:b]), list(c[a:b]))
                for a, b in _bounds(len(c), self._parts(len(c)))
            ]
            for lo, hi, c in jobs
        ]
        return [[p for f in fs for p in f.result()] for fs in futures]
