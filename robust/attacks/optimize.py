"""Optimised attacks of Shejwalkar & Houmansadr (NDSS 2021): Min-Max and Min-Sum.

Both send ``byz = mu - lambda * p`` from every Byzantine client, with ``mu`` the mean of the reference
gradients ``g_1..g_m`` (the attacker's own gradients, or the honest ones when omniscient) and ``p`` a
perturbation direction, and choose the largest ``lambda`` that keeps ``byz`` as close to the reference
as its members are to each other:

* Min-Max: ``max_i ||byz - g_i||^2 <= max_{i,j} ||g_i - g_j||^2``;
* Min-Sum: ``sum_i ||byz - g_i||^2 <= min_i sum_j ||g_i - g_j||^2``.

Writing ``delta_i = g_i - mu``, ``||byz - g_i||^2 = a_i + 2 lambda b_i + lambda^2 c`` with
``a_i = ||delta_i||^2``, ``b_i = <delta_i, p>``, ``c = ||p||^2``; these scalars are computed once from
the stack (one pass, plus one ``(m, m)`` Gram matrix for the threshold), so each step of the search costs
O(m) and no ``(d,)`` tensor is rebuilt per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from robust.attacks.base import ATTACKS, Attack, AttackContext, coord_std, reference
from robust.errors import ParameterError
from robust.selection import pairwise_sq_distances

PERTURBATIONS = ("unit", "std", "sign")


def perturbation(ref: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, p)`` for the reference ``(m, d)``: its mean and the perturbation direction of NDSS 2021.

    ``kind``: ``"unit"`` ``p = mu / ||mu||`` (zero if ``mu = 0``), ``"std"`` the per-coordinate standard
    deviation, ``"sign"`` ``sign(mu)``. The malicious update is ``mu - lambda * p``.
    """
    if kind not in PERTURBATIONS:
        raise ParameterError(f"perturbation must be one of {PERTURBATIONS}; got {kind!r}")
    mu = ref.mean(dim=0)
    if kind == "unit":
        norm = mu.norm()
        p = mu / norm if float(norm) > 0 else torch.zeros_like(mu)
    elif kind == "std":
        p = coord_std(ref)
    else:
        p = torch.sign(mu)
    return mu, p


def distance_coefficients(
    ref: torch.Tensor, mu: torch.Tensor, p: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``(a, b, c, dist)`` for the search, from one pass over the centered reference rows.

    ``||mu - lambda p - g_i||^2 = a_i + 2 lambda b_i + lambda^2 c`` with ``a_i = ||g_i - mu||^2``,
    ``b_i = <g_i - mu, p>``, ``c = ||p||^2``; ``dist`` is the ``(m, m)`` matrix ``||g_i - g_j||^2``,
    computed on the centered rows (distances are translation-invariant; centering avoids the Gram
    matrix's cancellation). All float64 numpy.
    """
    delta = ref - mu
    a = torch.linalg.vector_norm(delta, dim=1).double().square()
    b = delta @ p
    c = float(torch.linalg.vector_norm(p).double().square())
    dist = pairwise_sq_distances(delta)
    return a.cpu().numpy(), b.double().cpu().numpy(), c, dist.double().cpu().numpy()


def min_max_threshold(dist: np.ndarray) -> float:
    """Min-Max's bound ``max_{i,j} ||g_i - g_j||^2`` from the ``(m, m)`` squared distances."""
    return float(dist.max())


def min_sum_threshold(dist: np.ndarray) -> float:
    """Min-Sum's bound ``min_i sum_j ||g_i - g_j||^2`` from the ``(m, m)`` squared distances."""
    return float(dist.sum(axis=1).min())


def ndss_search(feasible: Callable[[float], bool], start: float = 10.0, tol: float = 1e-5) -> float:
    """Largest feasible lambda by the NDSS 2021 halving search, with an upward bracket first.

    NDSS: ``lambda = 10``; at each step move by half the previous step, up if ``feasible(lambda)``
    (remembering it as the last success) and down otherwise; stop when the step falls below ``tol``.
    That search never goes beyond 20; fedsec first doubles ``start`` while ``feasible(2 * start)``
    (so the feasible boundary lies below ``2 * start``), then runs the same halving search. Assumes the
    feasible set is an interval ``[0, lambda*]`` (true for both constraints: they are convex quadratics
    in lambda that hold at 0). Returns 0.0 if no tried lambda is feasible.
    """
    if not start > 0 or not tol > 0:
        raise ParameterError(f"start and tol must be > 0; got start={start}, tol={tol}")
    hi = float(start)
    for _ in range(2048):  # bounded: lambda overflows to inf, which is infeasible
        if not feasible(2.0 * hi):
            break
        hi *= 2.0
    lam, step, succ = hi, hi, 0.0
    while step >= tol:
        if feasible(lam):
            succ = lam
            lam += step / 2.0
        else:
            lam -= step / 2.0
        step /= 2.0
    return succ


@dataclass
class _NdssAttack(Attack):
    """Shared body of Min-Max and Min-Sum; subclasses define the constraint."""

    p: str = "unit"
    omniscient: bool = False
    last_lambda: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.p not in PERTURBATIONS:
            raise ParameterError(f"{type(self).__name__} p must be one of {PERTURBATIONS}; got p={self.p!r}")
        if not isinstance(self.omniscient, bool):
            raise ParameterError(f"omniscient must be a bool; got {type(self.omniscient).__name__}")

    def _feasible(self, dist: np.ndarray, a: np.ndarray, b: np.ndarray, c: float) -> Callable[[float], bool]:
        raise NotImplementedError

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        ref = reference(own, honest)
        mu, p = perturbation(ref, self.p)
        a, b, c, dist = distance_coefficients(ref, mu, p)
        lam = 0.0 if c == 0.0 else ndss_search(self._feasible(dist, a, b, c))
        self.last_lambda = lam
        byz = mu - lam * p
        return byz.unsqueeze(0).expand(ctx.f, -1).clone()


@dataclass
class MinMax(_NdssAttack):
    """Min-Max (Shejwalkar & Houmansadr, NDSS 2021): the largest lambda with
    ``max_i ||mu - lambda p - g_i||^2 <= max_{i,j} ||g_i - g_j||^2``.

    Args:
        p: perturbation, ``"unit"`` (``mu/||mu||``), ``"std"`` or ``"sign"``.
        omniscient: reference = honest gradients (True) or the Byzantine clients' own (False, the
            paper's "agnostic" variant).

    The lambda found is recorded as ``last_lambda``. No strength parameter: the search sets it.
    """

    name: ClassVar[str] = "min_max"

    def _feasible(self, dist: np.ndarray, a: np.ndarray, b: np.ndarray, c: float) -> Callable[[float], bool]:
        thr = min_max_threshold(dist)
        return lambda lam: bool(np.max(a + 2.0 * lam * b + lam * lam * c) <= thr)


@dataclass
class MinSum(_NdssAttack):
    """Min-Sum (Shejwalkar & Houmansadr, NDSS 2021): the largest lambda with
    ``sum_i ||mu - lambda p - g_i||^2 <= min_i sum_j ||g_i - g_j||^2``.

    Same arguments and ``last_lambda`` as :class:`MinMax`.
    """

    name: ClassVar[str] = "min_sum"

    def _feasible(self, dist: np.ndarray, a: np.ndarray, b: np.ndarray, c: float) -> Callable[[float], bool]:
        thr = min_sum_threshold(dist)
        return lambda lam: bool(np.sum(a + 2.0 * lam * b + lam * lam * c) <= thr)


for _cls in (MinMax, MinSum):
    ATTACKS.register(_cls.name)(_cls)
