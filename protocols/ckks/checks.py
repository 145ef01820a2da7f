"""Range checks on everything the CKKS key holder decrypts, and the error that names Byzantine clients.

Why. A Byzantine client may skip its own ``value_range`` check and encrypt any vector under the public
context (or a ciphertext under a foreign key, which decrypts to noise of size about ``q_0 / 2^s``). The
key holder cannot see the updates, but it sees every value it decrypts: each must lie in the range that
honest inputs and the CKKS error imply, else the clients that contributed to it are named and excluded
(:class:`ByzantineInputError` when exclusion is impossible). Never a silently wrong aggregate.

Tolerances (``s`` = scale bits, ``B`` = ``value_range``, ``d`` = dimension, ``err(v)`` =
:func:`decryption_error_bound`, ``2^(21 - s) v + 2^(24 - s)``, for a value of magnitude ``v`` after
one multiplication):

* squared norm ``||x_i||^2`` (``ckks_norm_clip``): in ``[-err(d B^2), d B^2 + err(d B^2)]``;
* squared distance ``||x_i - x_j||^2`` (Krum): in ``[-err(4 d B^2), 4 d B^2 + err(4 d B^2)]``;
* blinded value ``a_j x_ij + b_j`` (order statistics; ``a_j in [1, 256)``, ``|b_j| <= a_j B``):
  ``|y| <= 512 B + err(512 B)`` in every slot, padding included;
* the aggregate, before the key holder floods and releases it: ``|v| <= bound + err(bound) +
  8 sigma`` in every slot (``bound`` per protocol: ``n B`` for the mean's sum, ``m B`` for the Krum sum,
  ``B`` for median / trimmed mean) and, for ``ckks_norm_clip``, ``||agg||_2 <= C (1 + 8 sigma' +
  2^(21 - s)) + 2^(24 - s) / C + sqrt(slots) err(B)`` (:func:`clip_norm_tolerance`).

What a range check cannot catch. Decryption is modulo ``q_0``: a value ``v`` reads as ``v`` mod
``2^(bits(q_0) - s)``. A client that knows what it will be squared into can craft a wrap (an update of
norm ``2^((bits(q_0) - s) / 2)``, 1,024 at the default, whose squared norm decrypts as 0.25). Such a
wrap passes the squared-norm and distance checks; it is caught only if it drives the *aggregate* out of
range. Blinded values are safe from it: the client does not know the server's fresh ``a_j, b_j``, so a
wrapped coordinate lands in the window with probability about ``512 B / 2^(bits(q_0) - s)`` (2^-10 at
the default) per coordinate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from protocols.ckks.params import CKKSParams
from secagg.errors import MalformedMessage, ProtocolAbort

#: Flooding noise is checked to ``FLOOD_SIGMAS`` standard deviations (a Gaussian exceeds 8 sigma with
#: probability below 1.3e-15 per value).
FLOOD_SIGMAS = 8.0


class ByzantineInputError(ProtocolAbort):
    """A client's input is outside what honest inputs can produce and the round cannot exclude it.

    Attributes:
        culprits: the clients named (indices into the round's stack); empty when the value that left
            its range is a sum over clients (the aggregate) and no single client can be named.
    """

    def __init__(self, message: str, culprits: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.culprits = tuple(sorted(int(i) for i in culprits))


class MalformedUpload(ByzantineInputError, MalformedMessage):
    """A client's signed upload does not parse or validate; the client is named."""


def decryption_error_bound(params: CKKSParams, value: Any) -> Any:
    """Bound on ``|v~ - v|`` for a value ``v`` of magnitude ``value`` decrypted after one multiplication.

    ``|v~ - v| <= 2^(21 - s) * value + 2^(24 - s)`` with ``s`` the scale bits (``~1.9e-6 v + 1.5e-5`` at
    ``s = 40``). Two terms: (i) a relative error, because rescaling divides by the prime ``q_1`` while
    TenSEAL keeps the nominal scale ``2^s`` (SEAL picks ``q_1 = 1 mod 2N`` near ``2^s``, so
    ``|q_1 / 2^s - 1|`` is about ``2^-(s - 20)`` at most); (ii) an absolute floor from encryption,
    relinearization and rotation noise read at precision ``2^-s``. Measured at N = 8192, s = 40 for
    squared distances: ``1.34e-7 D`` and a floor of ``~5e-7`` for d up to 61,706 (margins ~14x, ~30x).
    ``value`` may be a float or an array (elementwise).
    """
    s = params.global_scale_bits
    return 2.0 ** (21 - s) * value + 2.0 ** (24 - s)


def bad_values(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Boolean mask of the values outside ``[lo, hi]`` or not finite."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(v) | (v < lo) | (v > hi)


def sq_norm_culprits(sq: np.ndarray, params: CKKSParams, d: int) -> list[int]:
    """Clients whose decrypted ``||x_i||^2`` is outside ``[-err(d B^2), d B^2 + err(d B^2)]``."""
    top = d * params.value_range**2
    tol = decryption_error_bound(params, top)
    return [int(i) for i in np.flatnonzero(bad_values(sq, -tol, top + tol))]


def blinded_culprits(y: np.ndarray, params: CKKSParams) -> list[int]:
    """Rows (clients) with a blinded value ``|y| > 512 B + err(512 B)`` in any slot, padding included."""
    top = 512.0 * params.value_range
    tol = decryption_error_bound(params, top)
    rows = bad_values(np.asarray(y).reshape(len(y), -1), -top - tol, top + tol).any(axis=1)
    return [int(i) for i in np.flatnonzero(rows)]


def pair_culprits(bad: np.ndarray, f: int) -> tuple[list[int], list[int]]:
    """Name the clients behind out-of-range pairwise values: ``(culprits, ambiguous)``.

    ``bad`` is a symmetric ``(n, n)`` boolean matrix; at most ``f`` clients are Byzantine. An honest
    pair never decrypts out of range, so an honest client's bad pairs are all with Byzantine clients:
    it has at most ``f_r`` of them, ``f_r`` the Byzantine clients not yet named. Hence a client with
    more than ``f_r`` bad pairs is Byzantine: name the one with the most, remove its pairs, lower
    ``f_r`` by one, repeat while bad pairs remain. Every client named is Byzantine (given at most ``f``);
    when bad pairs remain and no client has more than ``f_r`` (e.g. a single bad pair ``(i, j)``), their
    clients are returned in ``ambiguous`` and the caller aborts.
    """
    b = np.array(bad, dtype=bool)
    np.fill_diagonal(b, False)
    b |= b.T
    culprits: list[int] = []
    f_r = f
    while b.any():
        counts = b.sum(axis=1)
        i = int(np.argmax(counts))
        if counts[i] <= f_r:
            return culprits, [int(j) for j in np.flatnonzero(counts)]
        culprits.append(i)
        b[i, :] = False
        b[:, i] = False
        f_r = max(f_r - 1, 0)
    return sorted(culprits), []


def distance_culprits(
    values: np.ndarray, pairs: Sequence[tuple[int, int]], params: CKKSParams, n: int, d: int, f: int
) -> list[int]:
    """Clients named by out-of-range squared distances (window ``[-err(4dB^2), 4dB^2 + err(4dB^2)]``).

    Raises :class:`ByzantineInputError` listing the candidates when the bad pairs do not single out
    their clients (:func:`pair_culprits`).
    """
    top = 4.0 * d * params.value_range**2
    tol = decryption_error_bound(params, top)
    bad_mask = bad_values(values, -tol, top + tol)
    bad = np.zeros((n, n), dtype=bool)
    for k in np.flatnonzero(bad_mask):
        i, j = pairs[int(k)]
        bad[i, j] = bad[j, i] = True
    culprits, ambiguous = pair_culprits(bad, f)
    if ambiguous:
        raise ByzantineInputError(
            f"key_holder: decrypted distances out of [{-tol:.3g}, {top + tol:.6g}] for clients "
            f"{ambiguous} that cannot be told apart; want distances in range (an input outside "
            "value_range or a ciphertext under another key)",
            ambiguous,
        )
    return culprits


def check_aggregate(flat: np.ndarray, params: CKKSParams, bound: float, what: str) -> None:
    """Raise :class:`ByzantineInputError` unless every decrypted aggregate slot has ``|v| <= bound + tol``.

    ``tol = err(bound) + 8 sigma`` (``sigma`` = ``flood_std``, for factors or weights flooded before
    encryption). Padding slots are checked too: honest padding is 0.
    """
    tol = decryption_error_bound(params, bound) + FLOOD_SIGMAS * params.flood_std
    bad = bad_values(flat, -bound - tol, bound + tol)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ByzantineInputError(
            f"key_holder: {what}: decrypted aggregate slot {k} is {float(flat[k]):.6g}; want |v| <= "
            f"{bound + tol:.6g} (some client's input left value_range or was encrypted under another key;"
            " the aggregate does not say which)"
        )


def clip_norm_tolerance(params: CKKSParams, clip: float, size: int) -> float:
    """Slack on ``||agg||_2 <= C`` for ``ckks_norm_clip`` (see the module docstring).

    Factors are flooded with relative noise ``sigma' = flood_std / B`` (``8 sigma'``); the clip factor
    ``C / sqrt(D~)`` read from a squared norm with error ``err(D)`` is off by a relative ``2^(21-s)`` and
    an absolute ``2^(24 - s) / C``; each of the ``size`` slots carries a decryption error ``err(B)``.
    """
    s = params.global_scale_bits
    rel = FLOOD_SIGMAS * params.flood_std / params.value_range + 2.0 ** (21 - s)
    slot_err = decryption_error_bound(params, params.value_range)
    return clip * rel + 2.0 ** (24 - s) / clip + float(np.sqrt(size)) * slot_err


def check_clip_norm(flat: np.ndarray, params: CKKSParams, clip: float) -> None:
    """Raise :class:`ByzantineInputError` if the decrypted ``ckks_norm_clip`` aggregate has
    ``||agg||_2 > C + clip_norm_tolerance`` (every honest clipped update has norm <= C, and the weights
    sum to 1). This is what the protocol enforces against a crafted wrap of ``q_0``; the per-client
    clip is not enforced against it."""
    norm = float(np.linalg.norm(np.nan_to_num(flat, nan=np.inf)))
    hi = clip + clip_norm_tolerance(params, clip, len(flat))
    if not norm <= hi:
        raise ByzantineInputError(
            f"key_holder: ckks_norm_clip: decrypted aggregate has L2 norm {norm:.6g}; want <= {hi:.6g} "
            "(clip plus tolerance; a client's update was not clipped: a crafted wrap of q_0 or a "
            "ciphertext under another key)"
        )
