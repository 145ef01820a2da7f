"""Robust rules on the shares of ``protocols.prio``: what the two servers open, and the weights.

Every rule here releases a linear combination ``sum_i v_i x_i`` of the accepted updates, so each
server applies the same public integer weights ``v`` to its own shares (an exact product mod p,
:func:`secagg.vdaf.gram.field_matmul`) and only the combination is unshared. The weights come from
statistics the servers open, computed by the very functions the plaintext rules call:

- **Distance-based** (``"krum"``, ``"multi_krum"``, ``"bulyan"``, and ``pre="nnm"`` before any of them
  or before the mean): the Gram matrix ``G = X X^T`` of the accepted updates is opened from one square
  correlation dealt by a third party (:mod:`secagg.vdaf.gram`); the squared distances follow
  (:func:`robust.selection.sq_distances_from_gram`). NNM (Allouah et al., AISTATS 2023) is linear:
  its mixing matrix ``M = K / (m - f)`` (:func:`robust.selection.nnm_mixing`, ``K`` 0/1) is computed
  from the distances, the mixed rows' Gram is ``M G M^T`` (no new opening), and the rule then selects
  on the mixed rows; the release is ``c^T K X / sum(c^T K)`` with ``c`` the rule's 0/1 selection
  (:func:`robust.selection.krum_select`, :func:`robust.selection.bulyan_select`). Bulyan's second
  phase (a coordinate-wise median window) needs comparisons on d entries: the release is the mean of
  Bulyan's selection. Leakage: the squared distances of the accepted updates.
- **Linear scores against a public reference** (``"fltrust"``, Cao et al., NDSS 2021): each server
  computes its share of ``<x_i, g0>`` (``g0`` the public root update, fixed-point encoded) and holds a
  share of ``||x_i||^2`` already (the norm PINE proved, linear in the norm bits); both are opened and
  :func:`robust.trust.fltrust_weights` gives ``w_i``, quantized to ``v_i = round(w_i 2^s)``
  (``s = WEIGHT_BITS``; error at most ``2^-s-1 sum_i ||x_i||``). Leakage: each accepted update's
  inner product with ``g0`` and its squared norm (hence its cosine). No dealer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import robust
from robust.selection import bulyan_select, krum_select, nnm_mixing, sq_distances_from_gram
from robust.trust import fltrust_weights
from secagg.vdaf.errors import VdafError, VdafParameterError
from secagg.vdaf.field import Vec
from secagg.vdaf.gram import deal_square, expand_helper, field_matmul, gram_share, masked_share, signed

if TYPE_CHECKING:
    from protocols.prio import PrioServer
    from protocols.prio_wire import PrioWire
    from secagg.vdaf.pine_vdaf import Pine

SELECTIONS = (None, "krum", "multi_krum", "bulyan", "fltrust")
WEIGHT_BITS = 30


def check_rule(select: str | None, pre: str | None) -> None:
    """Refuse what the shares cannot do, with the reason."""
    if select not in SELECTIONS:
        raise VdafError(
            f"select: got {select!r}; want one of {SELECTIONS} (coordinate-wise median and trimmed mean "
            "need secure comparisons over d entries: not offered on shares)"
        )
    if pre not in (None, "nnm"):
        raise VdafError(f"pre: got {pre!r}; want None or 'nnm' (the only linear pre-aggregator)")
    if pre == "nnm" and select == "fltrust":
        raise VdafError("pre='nnm' with select='fltrust': got both; want one (FLTrust needs no mixing)")


def stacked(srv: PrioServer, accepted: list[int]) -> Vec:
    """This server's ``(m, d)`` shares of the accepted updates."""
    return np.stack([srv.states[i].out_share for i in accepted])


def open_gram(
    pine: Pine, accepted: list[int], leader: PrioServer, helper: PrioServer, meter: PrioWire
) -> torch.Tensor:
    """The opened Gram matrix of the accepted updates (real units): a dealer's square correlation,
    ``E = X - A`` opened, then ``G`` (:mod:`secagg.vdaf.gram`)."""
    f, m, d = pine.field, len(accepted), pine.params.dimension
    with meter.time("dealer", "select"):
        corr0, seed = deal_square(f, m, d)
    meter.send("dealer", "leader", "select", f.encode_vec(corr0.a) + f.encode_vec(corr0.c))
    meter.send("dealer", "helper", "select", seed)
    shares = []
    for srv, corr in ((leader, corr0), (helper, None)):
        with meter.time(srv.name, "select"):
            corr = corr or expand_helper(f, seed, m, d)
            shares.append((corr, masked_share(f, stacked(srv, accepted), corr)))
    e0 = meter.send("leader", "helper", "select", f.encode_vec(shares[0][1]))
    e1 = meter.send("helper", "leader", "select", f.encode_vec(shares[1][1]))
    e = f.add(f.decode_vec(e0), f.decode_vec(e1)).reshape(m, d)
    g0 = gram_share(f, 0, e, shares[0][0])
    g1 = f.decode_vec(
        meter.send("helper", "leader", "select", f.encode_vec(gram_share(f, 1, e, shares[1][0])))
    )
    meter.send("leader", "helper", "select", f.encode_vec(g0))
    return torch.as_tensor(signed(f, f.add(g0, g1.reshape(m, m))) / 4.0**pine.params.num_frac_bits)


def distance_weights(select: str | None, pre: str | None, f: int, gram: torch.Tensor) -> np.ndarray:
    """Integer weights ``v = c^T K`` over the accepted rows (``K`` = identity without NNM)."""
    m = int(gram.shape[0])
    dist = sq_distances_from_gram(gram)
    counts = torch.eye(m, dtype=gram.dtype)
    if pre == "nnm":
        robust.NNM(f).check_bound(m, f)
        mix = nnm_mixing(dist, f)
        counts = torch.round(mix * (m - f))
        dist = sq_distances_from_gram(mix @ gram @ mix.T)
    chosen = torch.ones(m, dtype=gram.dtype)
    if select in ("krum", "multi_krum"):
        keep = 1 if select == "krum" else m - f
        chosen = torch.zeros(m, dtype=gram.dtype).index_fill_(0, krum_select(dist, f, keep), 1.0)
    elif select == "bulyan":
        chosen = torch.zeros(m, dtype=gram.dtype).index_fill_(0, bulyan_select(dist, f), 1.0)
    return np.rint((chosen @ counts).numpy()).astype(np.int64)


def open_scores(
    pine: Pine,
    accepted: list[int],
    leader: PrioServer,
    helper: PrioServer,
    meter: PrioWire,
    root: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Opened ``<x_i, g0>`` and ``||x_i||^2`` (real units, ``g0`` rounded to f fractional bits)."""
    f, pp = pine.field, pine.params
    r_enc = np.rint(np.ldexp(root, pp.num_frac_bits))
    if float(np.linalg.norm(r_enc)) * pp.bound_enc >= f.MODULUS / 4:
        got = float(np.linalg.norm(root))
        raise VdafParameterError(f"root: got norm {got:.3g}; want inner products with it < p / 4")
    r_field = f.arr([int(v) % f.MODULUS for v in r_enc]).reshape(-1, 1)
    opened = []
    for srv, peer in ((leader, "helper"), (helper, "leader")):
        with meter.time(srv.name, "select"):
            inner = field_matmul(f, stacked(srv, accepted), r_field).reshape(-1)
            norms = np.concatenate([srv.states[i].sq_norm_share.reshape(-1) for i in accepted])
            share = np.concatenate([inner, norms])
        opened.append(f.decode_vec(meter.send(srv.name, peer, "select", f.encode_vec(share))))
    total = signed(f, f.add(opened[0], opened[1])) / 4.0**pp.num_frac_bits
    m = len(accepted)
    return total[:m], total[m:]


def fltrust_int_weights(
    inner: np.ndarray, sq_norms: np.ndarray, root: np.ndarray, frac_bits: int
) -> np.ndarray:
    """``v_i = round(w_i 2^WEIGHT_BITS)`` with FLTrust's ``w_i`` (:func:`robust.trust.fltrust_weights`)."""
    g0 = np.rint(np.ldexp(root, frac_bits)) / 2**frac_bits
    g0_norm = float(np.linalg.norm(g0))
    if g0_norm == 0.0:
        return np.zeros(len(inner), dtype=np.int64)
    norms = torch.as_tensor(np.sqrt(sq_norms))
    _, w = fltrust_weights(torch.as_tensor(inner) / g0_norm / norms.clamp_min(1e-300), norms, g0_norm)
    return np.rint(np.ldexp(w.numpy(), WEIGHT_BITS)).astype(np.int64)


def weighted_share(pine: Pine, srv: PrioServer, accepted: list[int], v: np.ndarray) -> Vec:
    """This server's share of ``sum_i v_i x_i`` (``v >= 0`` integers, zero rows skipped)."""
    f = pine.field
    keep = [k for k in range(len(accepted)) if v[k] != 0]
    if not keep:
        return f.zeros(pine.params.dimension)
    rows = stacked(srv, [accepted[k] for k in keep])
    return field_matmul(f, f.arr([int(v[k]) for k in keep]).reshape(1, -1), rows).reshape(-1)


def rule_release(
    rule: Any,
    pine: Pine,
    accepted: list[int],
    leader: PrioServer,
    helper: PrioServer,
    meter: PrioWire,
    root: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The rule's integer weights over ``accepted`` and what the servers opened for them; refused when
    ``sum_i v_i max_j |x_ij|`` (encoded) could reach p / 2, where the signed decoding would wrap."""
    pp = pine.params
    if rule.select == "fltrust":
        inner, sq = open_scores(pine, accepted, leader, helper, meter, root)
        v = fltrust_int_weights(inner, sq, root, pp.num_frac_bits)
        seen: dict[str, Any] = {"root_inner_products": torch.as_tensor(inner)}
        seen["sq_norms"] = torch.as_tensor(sq)
        reach = float(np.dot(v, np.sqrt(sq))) * 2**pp.num_frac_bits
    else:
        gram = open_gram(pine, accepted, leader, helper, meter)
        v = distance_weights(rule.select, rule.pre, rule.f, gram)
        seen = {"sq_distances": sq_distances_from_gram(gram)}
        reach = float(np.sum(v)) * pp.bound_enc
    if reach >= pine.field.MODULUS / 2:
        raise VdafParameterError(f"weights: got sum_i v_i |x_i| = {reach:.3g}; want < p / 2")
    return v, seen
