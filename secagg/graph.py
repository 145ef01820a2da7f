"""Neighbour graphs and thresholds: the complete graph of SecAgg and the sparse k-regular graph of SecAgg+.

SecAgg+ (Bell et al., CCS 2020) replaces the complete graph by a random k-regular graph with
k = O(log n): each client masks with, and secret-shares to, its k neighbours only. We build it as they
do from a Harary graph H(n, k) (node i adjacent to i +- 1, ..., i +- k/2 mod n, k even) whose nodes are
relabelled by a uniformly random permutation. The permutation is derived from the round's session id
through the PRG (:mod:`secagg.prg`), so the server and every client compute the same graph locally, and
every client recomputes its own neighbourhood and refuses keys of anybody else.

**Who fixes the graph.** Bell et al.'s analysis assumes the graph is random and independent of which
clients are corrupted (in their semi-malicious setting it is generated honestly, not chosen by the
adversary). Here it is a function of the session id in :class:`secagg.RoundConfig`, fixed before any
key is advertised, so a server cannot re-draw it after it has seen the keys. The party that fixes the
session must not choose it adaptively to the corruption (derive it from public randomness, or from a
transcript the server does not control); a server that could grind sessions could search for a graph
that surrounds a target with its colluders.

**Thresholds against a malicious server** (:func:`min_threshold`). Client v's two secrets -- its
self-mask seed b_v and its mask key s_v -- are t-of-m Shamir-shared among its m share holders (v and
its k neighbours; m = n on the complete graph). Each honest holder answers one unmasking request and
reveals, for v, a share of b_v or a share of s_v, never both. A malicious server that tells different
holders different survivor lists (v "survived" to some, "dropped" to others) collects a_b shares of
b_v and a_s shares of s_v from disjoint honest holders, plus both shares from each of the c corrupted
holders that collude with it. It learns v's input iff ``a_b + c >= t`` and ``a_s + c >= t`` with
``a_b + a_s <= m - c``, i.e. iff ``2 (t - c) <= m - c``. Hence the active variant needs

    t > (m + c) / 2,

(Bonawitz et al. 2017's t > 2n/3 with c = n/3 is the complete-graph case), and every variant needs
t > c (c colluders alone must not reconstruct). :func:`tolerated_corrupt` inverts the condition: the
largest c a given (m, t) withstands. Consistency signatures (the active variant's ConsistencyCheck) are
counted only from a client's own share holders; they make honest neighbours agree on one list, but the
guarantee above is the counting argument, which holds whatever lists the server hands out.

**Choice of (k, t)** -- our simplified version of Bell et al.'s analysis (their Theorem 3.6 also asks
that the honest surviving subgraph stays connected; we bound the two per-node events with a union bound
instead). With n clients, each dropping with probability ``dropout`` and corrupted with probability
``corrupt`` (independently), a node's secrets are held by m = k + 1 clients, threshold t:

- correctness: a dropped node's mask key must be recoverable from its surviving neighbours,
  ``n * P[Binomial(k, 1 - dropout) < t] <= 2^-eta``;
- privacy: the corrupted holders of some node must not exceed what (m, t) tolerates,
  ``n * P[Binomial(k + 1, corrupt) > tolerated_corrupt(k + 1, t, active)] <= 2^-sigma``.

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


def min_threshold(holders: int, corrupt: int, active: bool) -> int:
    """Smallest Shamir threshold that withstands ``corrupt`` colluding holders among ``holders``:
    ``floor((holders + corrupt) / 2) + 1`` against a malicious server (active), ``corrupt + 1`` against
    an honest-but-curious one (passive); see the module docstring.

    >>> min_threshold(10, 3, active=True), min_threshold(10, 3, active=False)
    (7, 4)
    """
    return (holders + corrupt) // 2 + 1 if active else corrupt + 1


def tolerated_corrupt(holders: int, t: int, active: bool) -> int:
    """Largest number of colluding share holders a threshold t withstands (negative: none, not even 0).

    >>> tolerated_corrupt(10, 7, active=True), tolerated_corrupt(10, 7, active=False)
    (3, 6)
    """
    return 2 * t - holders - 1 if active else t - 1


def default_threshold(holders: int, active: bool, corrupt: int = 0) -> int:
    """The default t: a majority of the holders (so that survivors of either half cannot both be
    answered), raised to :func:`min_threshold` for ``corrupt`` colluders.

    >>> default_threshold(10, active=False), default_threshold(10, active=True, corrupt=3)
    (6, 7)
    """
    return min(holders, max(holders // 2 + 1, min_threshold(holders, corrupt, active)))


@dataclass(frozen=True)
class DegreeChoice:
    """A neighbour degree k, threshold t and the colluders c that (k + 1, t) tolerates."""

    k: int
    t: int
    complete: bool
    corrupt: int = 0


def choose_degree(
    n: int,
    *,
    dropout: float = 0.1,
    corrupt: float = 0.2,
    sigma: int = 40,
    eta: int = 30,
    active: bool = False,
) -> DegreeChoice:
    """Smallest even degree k and a threshold t meeting the bounds in the module docstring.

    ``corrupt`` is a fraction here; the complete-graph fallback assumes ``floor(corrupt n)`` colluders.
    """
    if n < 2:
        raise SecAggError(f"choose_degree: got n={n}; want n >= 2")
    if not (0 <= dropout < 1 and 0 <= corrupt < 1):
        raise SecAggError(f"choose_degree: got dropout={dropout}, corrupt={corrupt}; want both in [0, 1)")
    for k in range(2, n - 1, 2):
        for t in range(1, k + 2):
            fail = n * _binom_cdf_below(k, 1 - dropout, t)
            if fail > 2.0**-eta:
                break  # larger t only fails more often
            c = tolerated_corrupt(k + 1, t, active)
            leak = n * (1 - _binom_cdf_below(k + 1, corrupt, c + 1)) if c >= 0 else float(n)
            if leak <= 2.0**-sigma:
                return DegreeChoice(k=k, t=t, complete=False, corrupt=c)
    c = math.floor(corrupt * n)
    t = default_threshold(n, active, c)
    if tolerated_corrupt(n, t, active) < c:
        raise SecAggError(
            f"choose_degree: got n={n} with corrupt={corrupt} (c={c} colluders); want fewer colluders: "
            f"no threshold t <= n withstands them ({'active: t > (n + c)/2' if active else 't > c'})"
        )
    return DegreeChoice(k=n - 1, t=t, complete=True, corrupt=tolerated_corrupt(n, t, active))


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
