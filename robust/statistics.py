"""What a rule needs from the updates, and the map from that statistic to the aggregate.

Every rule and pre-aggregator declares, in its class attribute ``statistic``, the least a party must
learn about the stack to compute it:

========================  ======================================================  ==================
:class:`Statistic`        what it is                                              rules
========================  ======================================================  ==================
``LINEAR``                nothing: fixed public weights, only ``sum_i w_i x_i``    Mean, Bucketing
``NORMS``                 ``||x_i||^2`` per row                                    Clip, ARC,
                                                                                  CenteredClipping
``DISTANCES``             ``D_ij = ||x_i - x_j||^2``                               Krum, Multi-Krum,
                                                                                  NNM
``RANKS``                 per-coordinate ranks ``R_ij``                            Median,
                                                                                  TrimmedMean
``RAW``                   the rows themselves                                      all others
========================  ======================================================  ==================

A rule whose statistic is not ``RAW`` also maps the statistic to **selection weights** ``W`` with
``weights_from(stat, n)``: the aggregate is ``sum_i W_i x_i`` (``W`` of shape ``(n,)``) or, for
coordinate rules, ``sum_i W_ij x_ij`` (``W`` of shape ``(n, d)``). ``weights_from`` calls the same
functions of :mod:`robust.selection` as the rule's plaintext ``__call__``, so a confidentiality
mechanism that computes only the statistic (the CKKS key holder decrypting distances) and the
plaintext rule share one implementation. Linear pre-aggregators expose ``matrix_from(stat, n)``,
the ``(m, n)`` matrix ``A`` of their map ``X -> A X``.
"""

from __future__ import annotations

import enum
from typing import Any

import torch

from robust.base import row_sq_norms
from robust.selection import coordinate_ranks, pairwise_sq_distances, sq_distances_from_gram

__all__ = [
    "Statistic",
    "apply_weights",
    "carried_distances",
    "compute",
    "label",
    "needs",
    "pipeline_parts",
    "weights",
]


class Statistic(enum.Enum):
    """The statistic of the updates a rule needs (see the module docstring)."""

    LINEAR = "a linear combination"
    NORMS = "row norms"
    DISTANCES = "pairwise distances"
    RANKS = "coordinate ranks"
    RAW = "the raw rows"


def pipeline_parts(rule: Any) -> tuple[list[Any], Any]:
    """``(pre-aggregators, final rule)`` of a :class:`robust.Pipeline`; ``([], rule)`` otherwise."""
    pre = getattr(rule, "pre", None)
    inner = getattr(rule, "rule", None)
    if isinstance(pre, list) and inner is not None:
        return list(pre), inner
    return [], rule


def needs(rule: Any) -> frozenset[Statistic]:
    """The statistics ``rule`` needs: its declared one, the union over a pipeline's stages;
    ``{RAW}`` for any object that declares nothing (a safe default: only the clear sees raw rows)."""
    pre, final = pipeline_parts(rule)
    out = {getattr(final, "statistic", Statistic.RAW)}
    out.update(getattr(p, "statistic", Statistic.RAW) for p in pre)
    return frozenset(out)


def label(rule: Any) -> str:
    """A rule's name for tables: ``"multi_krum"``, a pipeline as ``"trimmed_mean(nnm)"``."""
    pre, final = pipeline_parts(rule)
    name = str(getattr(final, "name", type(final).__name__))
    for p in pre:
        name += f"({getattr(p, 'name', type(p).__name__)})"
    return name


def compute(stat: Statistic, x: torch.Tensor) -> torch.Tensor | None:
    """The statistic in the clear (the reference a mechanism's decrypted statistic is compared with):
    ``None`` for ``LINEAR``; squared norms (float64) for ``NORMS``; squared distances for
    ``DISTANCES``; ranks for ``RANKS``."""
    if stat is Statistic.LINEAR:
        return None
    if stat is Statistic.NORMS:
        return row_sq_norms(x)
    if stat is Statistic.DISTANCES:
        return pairwise_sq_distances(x)
    if stat is Statistic.RANKS:
        return coordinate_ranks(x)
    raise ValueError(f"got statistic {stat}; want one that is not RAW (a RAW rule has no weights)")


def apply_weights(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i x_i`` for ``(n,)`` weights, ``sum_i w_ij x_ij`` per column for ``(n, d)`` weights."""
    w = w.to(device=x.device, dtype=x.dtype)
    if w.ndim == 1:
        return w @ x
    return (w * x).sum(dim=0)


def carried_distances(dist: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Squared distances between the rows of ``A X`` from those of ``X`` alone.

    Distances fix the centered Gram matrix ``B = -1/2 J D J`` (``J = I - 11^T / n``; classical
    multidimensional scaling, Torgerson 1952). When every row of ``A`` sums to the same value (an
    averaging map: NNM's mixing, bucketing), translating ``X`` translates ``A X``, so the rows of
    ``A X`` have the Gram ``A B A^T`` up to a translation and ``D'_kl = G'_kk + G'_ll - 2 G'_kl``.
    This is how a linear pre-aggregator composes with a distance-based rule when a party holds only
    ``D``. Raises ``ValueError`` for an ``A`` whose row sums differ (e.g. clipping's diagonal: then
    distances do not determine ``D'``).
    """
    sums = a.to(torch.float64).sum(dim=1)
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-12):
        raise ValueError(f"got a map whose row sums differ ({sums.tolist()}); want equal row sums")
    n = int(dist.shape[0])
    d64 = dist.to(torch.float64)
    j = torch.eye(n, dtype=torch.float64) - 1.0 / n
    b = -0.5 * j @ d64 @ j
    a64 = a.to(torch.float64)
    return sq_distances_from_gram(a64 @ b @ a64.T)


def weights(rule: Any, stat: torch.Tensor | None, n: int) -> torch.Tensor:
    """Selection weights of ``rule`` on ``n`` rows from the one statistic it needs.

    A plain rule: ``rule.weights_from(stat, n)``. A pipeline ``rule(A_k ... A_1 X)`` of linear
    pre-aggregators: ``w = w_rule A_k ... A_1`` (``(n,)`` weights over the input rows), where every
    stage's statistic is derived from ``stat``: distances are carried through the maps by
    :func:`carried_distances`; norms only serve a first-and-only norm stage before a linear rule
    (``Clip`` then ``Mean``). Raises ``ValueError`` ("got ...; want ...") for a pipeline whose stages
    need statistics that cannot be derived from one (ranks of mixed rows, norms after mixing).
    """
    pre, final = pipeline_parts(rule)
    kinds = needs(rule) - {Statistic.LINEAR}
    if Statistic.RAW in kinds or len(kinds) > 1 or (pre and Statistic.RANKS in kinds):
        raise ValueError(
            f"got {label(rule)}, which needs {sorted(k.value for k in needs(rule))}; want a rule whose "
            "stages need one statistic, carried through linear maps (not ranks or raw rows)"
        )
    if Statistic.NORMS in kinds and (
        len(pre) > 1 or getattr(final, "statistic", None) is not Statistic.LINEAR
    ):
        raise ValueError(f"got {label(rule)}; want norms only in a single stage before a linear rule")
    a = torch.eye(n, dtype=torch.float64)
    cur = stat
    for p in pre:
        m = p.matrix_from(cur, int(a.shape[0])).to(torch.float64)
        a = m @ a
        if cur is not None and getattr(p, "statistic", None) is not Statistic.NORMS:
            cur = carried_distances(stat, a) if stat is not None else None
    w = final.weights_from(cur, int(a.shape[0])).to(torch.float64)
    return w @ a if w.ndim == 1 else w
