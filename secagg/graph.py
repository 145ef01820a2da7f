"""Neighbour graphs: the complete graph of SecAgg and the sparse k-regular graph of SecAgg+.

SecAgg+ (Bell et al., CCS 2020) replaces the complete graph by a random k-regular graph with
k = O(log n): each client masks with, and secret-shares to, its k neighbours only. We build it as they
do from a Harary graph H(n, k) (node i adjacent to i +- 1, ..., i +- k/2 mod n, k even) whose nodes are
relabelled by a uniformly random permutation. The permutation is derived from the round's session id
through the PRG (:mod:`secagg.prg`), so the server and every client compute the same graph locally.

Choice of (k, t) -- our simplified version of Bell et al.'s analysis (their Theorem 3.6 also asks that the
honest surviving subgraph stays connected; we bound the two per-node events with a union bound
instead). With n clients, each dropping with probability ``dropout`` and corrupted with probability
``corrupt`` (independently), a node's secrets are held by itself and its k neighbours, threshold t:

- correctness: a dropped node's mask key must be recoverable from its surviving neighbours,
  ``n * P[Binomial(k, 1 - dropout) < t] <= 2^-eta``;
- privacy: the adversary must not hold t shares of an honest node's secrets,
  ``n * P[Binomial(k + 1, corrupt) >= t] <= 2^-sigma``.

:func:`choose_degree` returns the smallest even k (and a t) meeting both; both tails shrink
exponentially in k, so k grows like log n. When no k < n - 1 works, the graph is complete.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from secagg import prg
from secagg.errors import SecAggError


def _binom_cdf_below(k: int, p: float, t: int) -> float:
    """P[Binomial(k, p) < t]."""
    return math.fsum(math.comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(0, min(t, k + 1)))


@dataclass(frozen=True)
class DegreeChoice:
    k: int
    t: int
    complete: bool


def choose_degree(
    n: int, *, dropout: float = 0.1, corrupt: float = 0.2, sigma: int = 40, eta: int = 30
) -> DegreeChoice:
    """Smallest even degree k and a threshold t meeting the bounds in the module docstring."""
    if n < 2:
        raise SecAggError(f"choose_degree: got n={n}; want n >= 2")
    if not (0 <= dropout < 1 and 0 <= corrupt < 1):
        raise SecAggError(f"choose_degree: got dropout={dropout}, corrupt={corrupt}; want both in [0, 1)")
    for k in range(2, n - 1, 2):
        for t in range(1, k + 2):
            fail = n * _binom_cdf_below(k, 1 - dropout, t)
            if fail > 2.0**-eta:
                break  # larger t only fails more often
            leak = n * (1 - _binom_cdf_below(k + 1, corrupt, t))
            if leak <= 2.0**-sigma:
                return DegreeChoice(k=k, t=t, complete=False)
    return DegreeChoice(k=n - 1, t=n // 2 + 1, complete=True)


@functools.lru_cache(maxsize=32)
def neighbours(n: int, k: int | None, session: bytes) -> tuple[tuple[int, ...], ...]:
    """Sorted neighbour ids of every node (self excluded; cached, immutable).

    ``k=None`` or ``k >= n - 1``: the complete graph.

    Otherwise ``k`` must be even and ``2 <= k < n - 1``: a Harary graph relabelled by a permutation
    derived from ``session``.
    """
    if n < 1:
        raise SecAggError(f"graph: got n={n}; want n >= 1")
    if k is None or k >= n - 1:
        return tuple(tuple(j for j in range(n) if j != i) for i in range(n))
    if k < 2 or k % 2:
        raise SecAggError(f"graph degree: got k={k}; want an even k in [2, n - 1) or None")
    keys = prg.expand(bytes(32), n, bits=64, domain=prg.domain(b"graph", session, n, k))
    perm = np.argsort(keys, kind="stable")  # perm[position] = node id
    adj: list[set[int]] = [set() for _ in range(n)]
    for pos in range(n):
        for off in range(1, k // 2 + 1):
            a, b = int(perm[pos]), int(perm[(pos + off) % n])
            adj[a].add(b)
            adj[b].add(a)
    return tuple(tuple(sorted(s)) for s in adj)
