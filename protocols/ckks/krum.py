"""``ckks_krum`` and ``ckks_multi_krum``: Krum selection on encrypted updates.

Round:
1. upload: clients encrypt their updates (one ciphertext per chunk of ``N/2`` coordinates).
2. distances: for every pair ``i < j`` the server computes ``E(||x_i - x_j||^2)`` -- squared
   differences summed over all chunks first (in degree-2 form: one relinearization and one rescale per
   pair), then one rotation-sum per pair (:class:`protocols.ckks.distances.DistanceEvaluator`) --
   and sends the ``n (n - 1) / 2`` ciphertexts to the key holder.
3. select: the key holder decrypts the distance matrix only and runs
   :func:`robust.selection.krum_select` -- the very function ``robust.Krum`` / ``robust.MultiKrum``
   call on plaintext distances -- and returns the selected indices.
4. aggregate: the server adds the selected ciphertexts.
5. decrypt: the key holder decrypts the sum only and releases it noise-flooded
   (:mod:`protocols.ckks.flooding`); the server divides by ``m``.

Leakage:
    key_holder: the ``(n, n)`` matrix of pairwise squared distances -- stated plainly, this fixes the
        cloud of updates up to a rigid motion (classical multidimensional scaling recovers it), so the
        key holder knows the updates' whole relative geometry but no coordinate -- and the aggregate
        (for Krum, ``m = 1``, the aggregate *is* the selected client's update, as Krum's output is).
    server: the selection (which clients entered), and the aggregate (flooded). The selection is a
        discrete function of the key holder's decryptions and is released as is (see flooding.py).

Selection equality: the key holder sees ``D~ = D + E`` with ``|E_ij| <= e(D_ij)``,
``e = distance_error_bound`` (``2^(21-s) D + 2^(24-s)``). A Krum score sums ``n - f - 2`` distances, so
whenever (a) every gap between distances that decides a nearest-neighbour set exceeds ``2 e(D_max)`` and
(b) the gap between the sorted plaintext scores at the selection cut exceeds
``2 (n - f - 2) e(D_max)``, the encrypted selection equals the plaintext one.

Byzantine clients can encrypt values outside ``value_range`` (a range proof is another protocol). A
decrypted distance outside ``[-err(4 d B^2), 4 d B^2 + err(4 d B^2)]`` (:mod:`protocols.ckks.checks`)
holds at least one Byzantine client; the clients behind the bad pairs are named
(:func:`protocols.ckks.checks.pair_culprits`) and excluded from the selection, each counting against
``f``; when the bad pairs cannot single them out the round aborts with
:class:`protocols.ckks.checks.ByzantineInputError` naming the candidates. The key holder also checks
the selected sum, ``|v| <= m B + tol`` in every slot, before releasing it: a crafted wrap of ``q_0``
that slips a far row into the selection is refused there when it drives a coordinate out of range, and
is otherwise bounded by it (stated plainly: not excluded). The server learns nothing more than the
selection (the excluded clients are simply not in it).
"""

from __future__ import annotations

import functools
import multiprocessing
import warnings
from typing import Any

import numpy as np
import torch

from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.ckks.checks import (
    ByzantineInputError,
    check_aggregate,
    decryption_error_bound,
    distance_culprits,
)
from protocols.ckks.distances import DistanceEvaluator
from protocols.ckks.driver import CKKSRound
from protocols.ckks.messages import Kind, array_part, parse_array
from protocols.ckks.params import CKKSParameterError, CKKSParams
from protocols.ckks.parties import CKKSKeyHolder, CKKSServer, Update
from robust.errors import ByzantineBoundError
from robust.selection import krum_select
from secagg.errors import MalformedMessage


def distance_error_bound(params: CKKSParams, dist: float) -> float:
    """Bound on ``|D~ - D|`` for a decrypted squared distance ``D`` of two in-range updates:
    :func:`protocols.ckks.checks.decryption_error_bound` (``2^(21 - s) D + 2^(24 - s)``);
    ``tests/protocols/test_ckks_protocols.py`` checks it."""
    return decryption_error_bound(params, dist)


def pair_index(n: int) -> list[tuple[int, int]]:
    """The pairs ``i < j`` in the order the server sends their distances."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def distance_matrix(values: np.ndarray, n: int) -> np.ndarray:
    """Symmetric ``(n, n)`` matrix from the upper-triangle values in :func:`pair_index` order."""
    dist = np.zeros((n, n), dtype=np.float64)
    iu = np.triu_indices(n, k=1)
    dist[iu] = values
    return dist + dist.T


_FORKED: dict[str, Any] = {}


def _distance_job(pairs: list[tuple[int, int]]) -> list[bytes]:
    ev, raw = _FORKED["evaluator"], _FORKED["raw"]
    return [ev.sq_distance(raw[i], raw[j]) for i, j in pairs]


def pairwise_distance_parts(
    evaluator: DistanceEvaluator, updates: list[Update], workers: int = 1
) -> list[bytes]:
    """Serialized ``E(||x_i - x_j||^2)`` for every pair ``i < j`` (in :func:`pair_index` order).

    Each pair costs one relinearization and one rescale in all (:class:`DistanceEvaluator`; the
    chunkwise :func:`protocols.ckks.parties.sq_distance` pays them once per chunk and is kept as the
    reference the tests compare with). With ``workers > 1`` the pairs are split over forked server
    processes (they inherit the loaded ciphertexts and the evaluation keys; only the serialized
    distances travel back). TenSEAL's own thread pool does not help here: every operation touches a
    single ciphertext.
    """
    raw = [evaluator.raw(u) for u in updates]
    pairs = pair_index(len(updates))
    if workers == 1 or len(pairs) < 2:
        return [evaluator.sq_distance(raw[i], raw[j]) for i, j in pairs]
    if "fork" not in multiprocessing.get_all_start_methods():
        warnings.warn(
            "server workers need the 'fork' start method; computing distances serially", stacklevel=2
        )
        return pairwise_distance_parts(evaluator, updates, 1)
    shards = [pairs[w::workers] for w in range(workers)]
    _FORKED.update(evaluator=evaluator, raw=raw)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_distance_job, shards)
    finally:
        _FORKED.clear()
    out: list[bytes] = [b""] * len(pairs)
    for w, res in enumerate(results):
        out[w::workers] = res
    return out


class _KrumBase(CKKSRound):
    rotations = True
    depth = 1

    def __init__(
        self, f: int, m: int | None, params: CKKSParams | dict[str, Any] | None, workers: int
    ) -> None:
        if not isinstance(f, int) or isinstance(f, bool) or f < 0:
            raise CKKSParameterError(f"got f={f!r}; want an integer >= 0")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise CKKSParameterError(f"got workers={workers!r}; want an integer >= 1")
        self.workers = workers
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise CKKSParameterError(f"got m={m!r}; want an integer >= 1 or None")
        super().__init__(params)
        self.f = f
        self.m = m

    def max_magnitude(self, n: int, d: int) -> float:
        return 4.0 * d * self.params.value_range**2 + float(n) * self.params.value_range

    def _m(self, n: int, f: int | None = None) -> int:
        """Clients averaged at ``n`` clients and ``f`` tolerated (``f = self.f`` when ``None``)."""
        raise NotImplementedError

    def _check_bound(self, n: int) -> int:
        if n <= 2 * self.f + 2:
            raise ByzantineBoundError(f"got f={self.f}, n={n}; want n > 2f + 2")
        m = self._m(n)
        if m > n - self.f:
            raise CKKSParameterError(f"got m={m}, n={n}, f={self.f}; want m <= n - f")
        return m

    def _select(self, kh: CKKSKeyHolder, msg: bytes, n: int, d: int, m: int) -> tuple[bytes, np.ndarray]:
        """Key holder: decrypt the distances, name and exclude out-of-range clients, run the selection.

        Every excluded client counts against ``f``: the selection runs on the kept clients with
        ``f' = max(f - excluded, 0)`` (and ``m' = n' - f'`` for the default Multi-Krum), which must
        still satisfy ``n' > 2 f' + 2`` and ``m' <= n' - f'``, else :class:`ByzantineInputError`."""
        vals = kh.decrypt_scalars(msg, Kind.DISTANCES, n * (n - 1) // 2)
        culprits = distance_culprits(vals, pair_index(n), self.params, n, d, self.f)
        self.excluded = culprits
        kept = [i for i in range(n) if i not in set(culprits)]
        dist = distance_matrix(np.maximum(np.nan_to_num(vals, nan=0.0), 0.0), n)
        f = max(self.f - len(culprits), 0)
        m_kept = self._m(len(kept), f) if culprits else m
        if len(kept) <= 2 * f + 2 or m_kept > len(kept) - f:
            raise ByzantineInputError(
                f"{self.name}: {len(kept)} clients left after excluding {culprits}, f' = {f}, m = {m_kept}; "
                "want n' > 2f' + 2 and m <= n' - f'",
                culprits,
            )
        sub = dist[np.ix_(kept, kept)]
        sel = np.array(kept)[krum_select(torch.as_tensor(sub), f, m_kept).numpy()]
        return kh.seal(Kind.SELECTION, [array_part(sel, "int64")]), dist

    @staticmethod
    def _read_selection(server: CKKSServer, msg: bytes, n: int, m: int) -> np.ndarray:
        (part,) = server.open_from_key_holder(msg, Kind.SELECTION, 1)
        sel = parse_array(part, "int64", m, "selection")
        if len(set(sel.tolist())) != m or (sel < 0).any() or (sel >= n).any():
            raise MalformedMessage(f"got selection {sel.tolist()}; want {m} distinct indices in [0, {n})")
        return sel

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x, kh, server = self._begin_unweighted(stack, weights, "Krum averages the selected rows")
        n, d = x.shape
        m = self._check_bound(n)
        updates = self._upload(server, x)
        with self.meter.time("server", "distances"):
            parts = pairwise_distance_parts(server.distance_evaluator(), updates, self.workers)
            msg = server.identity.seal(Kind.DISTANCES, parts)
        msg = self.send("server", "key_holder", "distances", msg)
        with self.meter.time("key_holder", "select"):
            reply, dist = self._select(kh, msg, n, d, m)
        reply = self.send("key_holder", "server", "select", reply)
        with self.meter.time("server", "aggregate"):
            if self.excluded:
                m = self._m(n - len(self.excluded), max(self.f - len(self.excluded), 0))
            sel = self._read_selection(server, reply, n, m)
            agg = server.weighted_sum([updates[int(i)] for i in sel], None)
        bound = m * self.params.value_range  # the sum of m in-range rows
        check = functools.partial(check_aggregate, params=self.params, bound=bound, what=self.name)
        out = torch.as_tensor(self._decrypt_aggregate(kh, server, agg, d, check) / m, dtype=torch.float32)
        accepted = sorted(int(i) for i in sel)
        leak = Leakage(
            {
                "server": {"selection": accepted, "aggregate": out},
                "key_holder": {
                    "pairwise_sq_distances": torch.as_tensor(dist),
                    "aggregate": out,
                    "excluded": list(self.excluded),
                },
            }
        )
        return RoundResult(aggregate=out, accepted=accepted, meter=self.meter, leakage=leak)


@PROTOCOLS.register("ckks_krum")
class CKKSKrum(_KrumBase):
    """Krum (Blanchard et al., NeurIPS 2017) on encrypted updates; see the module docstring.

    Args:
        f: Byzantine clients tolerated; requires ``n > 2f + 2``.
        params: a :class:`CKKSParams` (or dict).
        workers: server processes computing the pairwise distances (fork; 1 = in process).
    """

    name = "ckks_krum"

    def __init__(self, f: int, params: CKKSParams | dict[str, Any] | None = None, workers: int = 1) -> None:
        super().__init__(f, None, params, workers)

    def _m(self, n: int, f: int | None = None) -> int:
        return 1


@PROTOCOLS.register("ckks_multi_krum")
class CKKSMultiKrum(_KrumBase):
    """Multi-Krum on encrypted updates: the mean of the ``m`` best-scored clients (``m = n - f`` by
    default, as ``robust.MultiKrum``); see the module docstring.

    Args:
        f: Byzantine clients tolerated; requires ``n > 2f + 2``.
        m: clients averaged, ``1 <= m <= n - f``; ``None`` for ``n - f``.
        params: a :class:`CKKSParams` (or dict).
        workers: server processes computing the pairwise distances (fork; 1 = in process).
    """

    name = "ckks_multi_krum"

    def __init__(
        self,
        f: int,
        m: int | None = None,
        params: CKKSParams | dict[str, Any] | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(f, m, params, workers)

    def _m(self, n: int, f: int | None = None) -> int:
        return n - (self.f if f is None else f) if self.m is None else self.m
