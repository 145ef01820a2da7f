"""``ckks_median`` and ``ckks_trimmed_mean``: coordinate-wise order statistics on encrypted updates.

Round:
1. upload: clients encrypt their updates.
2. blind: the server draws, for every coordinate ``j``, a fresh positive affine map
   ``t_j(v) = a_j v + b_j`` (``a_j = 2^(8u)``, ``b_j = a_j B (2v' - 1)``, ``u, v' ~ U[0, 1)`` from
   libsodium; fresh per coordinate and per round, the same for all clients of that coordinate) and
   sends ``E(t_j(x_ij))`` for every client and coordinate to the key holder (one plaintext product and
   one plaintext addition per ciphertext).
3. weights: the key holder decrypts the blinded values ``Y``, computes ranks with
   :func:`robust.selection.coordinate_ranks` and the selection weights with
   :func:`robust.selection.median_weights` / :func:`robust.selection.trimmed_mean_weights` -- the
   functions the plaintext rules use -- and returns the weights *encrypted*, one ciphertext per client
   and chunk.
4. aggregate: the server computes ``sum_i E(W_i) * E(x_i)`` chunkwise (one ciphertext product each).
5. decrypt: the key holder decrypts the aggregate only and releases it noise-flooded
   (:mod:`protocols.ckks.flooding`).

Leakage (stated plainly):
    key_holder: the blinded matrix ``Y = a x + b`` (per column an unknown positive affine image of that
        coordinate across clients). From it the key holder learns, for every coordinate, the full rank
        pattern (which client holds which rank -- so who is extreme where) and every ratio of gaps
        ``(x_ij - x_kj) / (x_lj - x_kj)``; it learns the location and scale of a column only through
        the blinding distribution (scale hidden up to a factor in [1, 256), offset up to +-a_j B). It
        also learns the aggregate; with ``Y`` this fixes one point of each column's map, not its scale.
    server: the aggregate, and which clients were excluded (the weights reach it encrypted).
    Non-collusion: the key holder colludes with no client. A client that shares its own row ``x_i``
        with the key holder fixes, per coordinate, one point of the map; with the gap ratios and a
        second known point (the released aggregate, or a second colluding client) the map is solved
        and every client's value follows exactly (``x_kj = x_ij + (y_kj - y_ij) / a_j``, ``a_j`` from
        two known points). With one client and the aggregate that is the case for every coordinate
        whose aggregate is not that client's own value (the median: all but about ``1/n`` of them).
        ``tests/protocols/test_ckks_byzantine.py`` plays that collusion against this record.
Masks are never reused: a reused ``(a_j, b_j)`` across rounds would let the key holder relate two
rounds' columns (the PEFL / ShieldFL failure NOTES.md recalls), so every call draws new ones. If the
server and key holder collude, everything is revealed (the stated non-collusion assumption).

Considered, not built: a variant revealing less. Ranks alone need encrypted comparisons (a polynomial
approximation of sign, depth ~10 or more per comparison, ``n (n - 1) / 2`` of them per coordinate),
out of reach of the depth-1 parameters used here. A cheaper middle ground is a random monotone cubic
blinding ``y = a x + c x^3 + b`` (``a, c > 0``; depth 2, i.e. ``coeff_mod_bit_sizes = (60, 40, 40,
60)`` at N = 8192): ranks survive, gap ratios are no longer exact, and one colluding client plus the
aggregate give two points of a three-parameter map, not enough to solve it (gaps still leak up to
that unknown distortion). Measured (``benchmarks/ckks_blinding.py``, shared 2-core machine, medians of
9): the server's blinding per ciphertext 15.2 ms affine against 62.4 ms cubic (4.1x), i.e. about
+19 s of server time per round at n = 25, d = 61,706 (400 ciphertexts); decryption unchanged
(0.55 ms); fresh uploads grow from 100 to 140 modulus bits (1.4x). Not built here.

Byzantine clients (:mod:`protocols.ckks.checks`): a blinded value ``|y| > 512 B + err(512 B)`` in any
slot (padding included) names its client, who is excluded: the server is told who (an ``EXCLUDED``
message) and leaves its ciphertext out of the sum, and the rule runs on the remaining rows, every
excluded client counting against ``f`` (``f' = max(f - excluded, 0)``). A client does not know the
fresh ``a_j, b_j``, so an input outside ``value_range`` by a factor above 1,024 is caught in every
coordinate, and a crafted wrap of ``q_0`` passes a coordinate with probability about 2^-10. The
aggregate (before release) must satisfy ``|v| <= B + tol`` in every slot, which the median and the
trimmed mean of in-range honest majorities always meet; else :class:`ByzantineInputError`.

CKKS noise can swap the ranks of values closer than about ``2^-(s-14)`` (``s`` = scale bits); the
selected value then differs from the plaintext one by at most that gap, so the aggregate still matches
the plaintext rule within the stated tolerance.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.ckks.checks import ByzantineInputError, blinded_culprits, check_aggregate
from protocols.ckks.driver import CKKSRound
from protocols.ckks.messages import Kind
from protocols.ckks.params import CKKSParameterError, CKKSParams
from robust.errors import ByzantineBoundError
from robust.selection import coordinate_ranks, median_weights, trimmed_mean_weights

PER_COORDINATE = (
    "which client holds which rank, every gap ratio (x_ij - x_kj) / (x_lj - x_kj); location and scale "
    "only up to the blinding a_j in [1, 256), |b_j| <= a_j B"
)
WITH_ONE_COLLUDER = (
    "every client's value, in every coordinate where the aggregate differs from the colluder's value "
    "(the map y = a_j x + b_j is fixed by two known points); excluded by the non-collusion assumption"
)


class _OrderStatBase(CKKSRound):
    rotations = False
    depth = 1

    def max_magnitude(self, n: int, d: int) -> float:
        # |a x + b| <= 2^8 B + 2^8 B; the aggregate is a convex combination of the inputs.
        return 512.0 * self.params.value_range + float(n) * self.params.value_range

    def _weights(self, ranks: torch.Tensor, excluded: int) -> torch.Tensor:
        raise NotImplementedError

    def _check_bound(self, n: int, excluded: int = 0) -> None:
        return None

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x, kh, server = self._begin_unweighted(stack, weights, "an unweighted order statistic")
        n, d = x.shape
        self._check_bound(n)
        k = self.params.n_chunks(d)
        lower = len(self.params.coeff_mod_bit_sizes) - 2
        updates = self._upload(server, x)
        with self.meter.time("server", "blind"):
            blinded, _a, _b = server.blind(updates, d)
            msg = server.seal(Kind.BLINDED, blinded)
        del blinded, _a, _b  # the server's masks die with the round
        msg = self.send("server", "key_holder", "blind", msg)
        with self.meter.time("key_holder", "weights"):
            y = kh.decrypt_chunks(msg, Kind.BLINDED, n * k, lower).reshape(n, k * self.params.slots)
            culprits = blinded_culprits(y, self.params)
        kept = self._exclude(kh, server, culprits, n, "weights") if culprits else list(range(n))
        with self.meter.time("key_holder", "weights"):
            self._check_bound(len(kept), len(culprits))
            ranks = coordinate_ranks(torch.as_tensor(y[kept]))
            w = self._weights(ranks, len(culprits)).to(torch.float64).numpy()
            reply = kh.seal(Kind.WEIGHTS, kh.encrypt_rows(w))
        reply = self.send("key_holder", "server", "weights", reply)
        with self.meter.time("server", "aggregate"):
            enc_w = server.load_from_key_holder(reply, Kind.WEIGHTS, len(kept) * k)
            ups = [updates[i] for i in kept]
            agg = server.encrypted_weighted_sum(ups, [enc_w[i * k : (i + 1) * k] for i in range(len(kept))])
        check = functools.partial(
            check_aggregate, params=self.params, bound=self.params.value_range, what=self.name
        )
        out = torch.as_tensor(self._decrypt_aggregate(kh, server, agg, d, check), dtype=torch.float32)
        # Evaluation only (computed by the harness from the key holder's state, never sent to the server):
        accepted = sorted(kept[int(i)] for i in np.flatnonzero((w[:, :d] > 0).any(axis=1)))
        full_ranks = torch.full((n, d), -1, dtype=ranks.dtype)
        full_ranks[kept] = ranks[:, :d]
        leak = Leakage(
            {
                "server": {"aggregate": out, "excluded": list(self.excluded)},
                "key_holder": {
                    "blinded_updates": torch.as_tensor(y[:, :d]),
                    "ranks": full_ranks,
                    "aggregate": out,
                    "per_coordinate": PER_COORDINATE,
                    "with_one_colluding_client": WITH_ONE_COLLUDER,
                },
            }
        )
        return RoundResult(aggregate=out, accepted=accepted, meter=self.meter, leakage=leak)


@PROTOCOLS.register("ckks_median")
class CKKSMedian(_OrderStatBase):
    """Coordinate-wise median (Yin et al., ICML 2018) on encrypted updates; even ``n`` averages the two
    middle values (as ``robust.Median``). See the module docstring for the round and its leakage.

    Args:
        params: a :class:`CKKSParams` (or dict).
    """

    name = "ckks_median"

    def __init__(self, params: CKKSParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)

    def _weights(self, ranks: torch.Tensor, excluded: int) -> torch.Tensor:
        return median_weights(ranks)


@PROTOCOLS.register("ckks_trimmed_mean")
class CKKSTrimmedMean(_OrderStatBase):
    """Coordinate-wise trimmed mean dropping the ``f`` largest and ``f`` smallest values of every
    coordinate (requires ``n > 2f``). See the module docstring for the round and its leakage.

    Args:
        f: values trimmed on each side.
        params: a :class:`CKKSParams` (or dict).
    """

    name = "ckks_trimmed_mean"

    def __init__(self, f: int, params: CKKSParams | dict[str, Any] | None = None) -> None:
        if not isinstance(f, int) or isinstance(f, bool) or f < 0:
            raise CKKSParameterError(f"got f={f!r}; want an integer >= 0")
        super().__init__(params)
        self.f = f

    def _check_bound(self, n: int, excluded: int = 0) -> None:
        f = max(self.f - excluded, 0)
        if n <= 2 * f:
            if excluded:
                raise ByzantineInputError(
                    f"{self.name}: {n} clients left after excluding {excluded}, f' = {f}; want n > 2f'",
                    self.excluded,
                )
            raise ByzantineBoundError(f"got f={self.f}, n={n}; want n > 2f")

    def _weights(self, ranks: torch.Tensor, excluded: int) -> torch.Tensor:
        # Every excluded client counts against f: at most f - excluded Byzantine clients remain.
        return trimmed_mean_weights(ranks, max(self.f - excluded, 0))
