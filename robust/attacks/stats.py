"""Statistical attacks: closed-form transforms of the gradients the attacker knows.

``none`` (honest behaviour), ALIE, IPM, sign flip, Gaussian noise, scaling (model replacement) and Mimic.
Every transform is one tensor expression over the ``(f, d)`` or ``(n - f, d)`` stack; no loop over clients.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import ClassVar

import torch

from robust.attacks.base import ATTACKS, Attack, AttackContext, check_strength, coord_std, reference
from robust.errors import ParameterError


def _rows(vec: torch.Tensor, f: int) -> torch.Tensor:
    """``f`` identical rows equal to ``vec`` (a real, writable tensor, not an expanded view)."""
    return vec.unsqueeze(0).expand(f, -1).clone()


@dataclass
class NoAttack(Attack):
    """Honest behaviour: the Byzantine clients send the gradients they computed (``byz = own``)."""

    name: ClassVar[str] = "none"

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        return own.clone()


def alie_z_max(n: int, f: int) -> float:
    """The z of "A Little Is Enough" (Baruch et al., NeurIPS 2019, Sec. 3).

    ``s = floor(n / 2 + 1) - f`` is the number of honest clients the attacker needs on its side for a
    majority; ``z_max = Phi^-1((n - f - s) / (n - f))`` with ``Phi`` the standard normal CDF, the largest
    z such that ``s`` honest clients are, in expectation, farther from the mean than ``mean - z * std``.

    Requires ``0 <= f`` and ``(n - f - s) / (n - f)`` strictly inside (0, 1), i.e. ``n >= 3`` and a
    Byzantine minority ``f <= floor(n / 2)``.

    >>> round(alie_z_max(25, 5), 4)
    0.2533
    """
    for name, v in (("n", n), ("f", f)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParameterError(f"{name} must be an int; got {type(v).__name__}")
    if f < 0 or n < 1 or f >= n:
        raise ParameterError(f"got n={n}, f={f}; want n >= 1 and 0 <= f < n")
    s = math.floor(n / 2 + 1) - f
    p = (n - f - s) / (n - f)
    if not 0.0 < p < 1.0:
        raise ParameterError(
            f"got n={n}, f={f} (quantile {p}); want n >= 3 and f <= floor(n/2) so that 0 < (n-f-s)/(n-f) < 1"
        )
    return NormalDist().inv_cdf(p)


@dataclass
class ALIE(Attack):
    """A Little Is Enough (Baruch et al., NeurIPS 2019).

    Every Byzantine row is ``mu - z * sigma`` with ``mu`` and ``sigma`` the per-coordinate mean and
    (Bessel-corrected) standard deviation of the reference gradients: the Byzantine clients' own honest
    gradients by default (the stress-testing paper's non-omniscient setting), the honest clients'
    gradients when ``omniscient=True`` (the original paper).

    ``z=None`` uses :func:`alie_z_max` of ``(ctx.n, ctx.f)``. The stress-testing paper sweeps
    ``z in {0, 0.5, 2.5, 5, 8, 10}`` and calibrates ``z = 8``.

    Sign convention: fedsec follows epfml's code (``mu - z * sigma``); Blades uses ``mu + z * sigma``.
    Both are the same attack up to the sign of z; with a single reference row sigma is 0 and the
    attack sends the mean.
    """

    z: float | None = None
    omniscient: bool = False

    name: ClassVar[str] = "alie"
    strength: ClassVar[str | None] = "z"
    default_grid: ClassVar[tuple[float, ...]] = (0.0, 0.5, 2.5, 5.0, 8.0, 10.0)

    def __post_init__(self) -> None:
        if self.z is not None:
            if isinstance(self.z, bool) or not isinstance(self.z, numbers.Real) or not math.isfinite(self.z):
                raise ParameterError(f"ALIE z must be a finite number or None; got z={self.z!r}")

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        ref = reference(own, honest)
        z = alie_z_max(ctx.n, ctx.f) if self.z is None else float(self.z)
        return _rows(ref.mean(dim=0) - z * coord_std(ref), ctx.f)


@dataclass
class IPM(Attack):
    """Inner-Product Manipulation (Xie et al., UAI 2020).

    Every Byzantine row is ``-eps * mu`` with ``mu`` the mean of the reference gradients (own by
    default; honest when ``omniscient=True``, as in the paper). Small eps (0.1, the common IID default)
    keeps the inner product with the true gradient negative once averaged; the stress-testing paper
    sweeps ``eps in {0, 0.5, 2.5, 5, 8, 10}`` and calibrates ``eps = 2.5``.
    """

    eps: float = 0.1
    omniscient: bool = False

    name: ClassVar[str] = "ipm"
    strength: ClassVar[str | None] = "eps"
    default_grid: ClassVar[tuple[float, ...]] = (0.0, 0.5, 2.5, 5.0, 8.0, 10.0)

    def __post_init__(self) -> None:
        check_strength("eps", self.eps)

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        ref = reference(own, honest)
        return _rows(ref.mean(dim=0) * (-float(self.eps)), ctx.f)


@dataclass
class SignFlip(Attack):
    """Sign flipping: each Byzantine client sends the negation of its own honest gradient (``-own_i``)."""

    name: ClassVar[str] = "sign_flip"

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        return -own


@dataclass
class Gaussian(Attack):
    """Gaussian noise: each Byzantine row is drawn independently from ``N(0, sigma^2 I)``.

    Zero-mean, as in Blanchard et al. (2017)'s Gaussian Byzantine workers and ByzFL's ``GaussianAttack``.
    Draws from ``ctx.generator`` (on the generator's device, then moved to ``own``'s device).
    """

    sigma: float = 1.0

    name: ClassVar[str] = "gaussian"
    strength: ClassVar[str | None] = "sigma"
    default_grid: ClassVar[tuple[float, ...]] = (0.1, 1.0, 10.0, 100.0, 1000.0)

    def __post_init__(self) -> None:
        check_strength("sigma", self.sigma)

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        g = ctx.generator
        dev = own.device if g is None else g.device
        noise = torch.randn(own.shape, generator=g, device=dev, dtype=own.dtype)
        return noise.to(own.device).mul_(float(self.sigma))


@dataclass
class Scaling(Attack):
    """Scaled update / model replacement (Bagdasaryan et al., AISTATS 2020): ``byz_i = factor * own_i``.

    The paper boosts one attacker's update by ``gamma = n / eta`` so that it replaces the averaged model
    (eta is the server learning rate). ``factor=None`` uses ``n / f``: with f colluding attackers and
    plain averaging, the aggregate becomes their mean update plus ``1/n`` times the honest sum.
    """

    factor: float | None = None

    name: ClassVar[str] = "scaling"
    strength: ClassVar[str | None] = "factor"
    default_grid: ClassVar[tuple[float, ...]] = (1.0, 2.0, 5.0, 10.0, 25.0, 100.0)

    def __post_init__(self) -> None:
        check_strength("factor", self.factor, allow_none=True)

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        factor = ctx.n / ctx.f if self.factor is None else float(self.factor)
        return own * factor


@dataclass
class Mimic(Attack):
    """Mimic (Karimireddy, He and Jaggi, ICLR 2022): every Byzantine row copies one honest gradient.

    Omniscient. Over-representing one honest client biases heterogeneous (non-IID) training toward its
    data while every Byzantine row looks perfectly honest.

    Which client: ``target`` fixes an index into the honest rows; ``target=None`` (default) uses the
    paper's heuristic, the honest client that lies farthest along the direction of largest variance:
    ``i* = argmax_i |<g_i - mu, v>|`` with ``v`` the top principal direction of the centered honest
    gradients. fedsec evaluates it on the current round (through the ``(m, m)`` Gram matrix: the
    projections are ``sigma_1 * u_1``, so ``i* = argmax |u_1|``, ties to the lowest index); the authors'
    code estimates ``v`` over warm-up rounds and then keeps the target fixed — pass ``target`` for that.
    The chosen index is recorded as ``last_target``.
    """

    target: int | None = None
    last_target: int | None = field(default=None, init=False, repr=False, compare=False)

    omniscient = True
    name: ClassVar[str] = "mimic"

    def __post_init__(self) -> None:
        if self.target is not None:
            if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 0:
                raise ParameterError(f"Mimic target must be an int >= 0 or None; got target={self.target!r}")

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        assert honest is not None  # guaranteed by Attack.__call__ for omniscient attacks
        m = honest.shape[0]
        if self.target is not None:
            if self.target >= m:
                raise ParameterError(
                    f"Mimic target must index the n - f = {m} honest rows; got target={self.target}"
                )
            idx = self.target
        else:
            idx = mimic_target(honest)
        self.last_target = idx
        return _rows(honest[idx], ctx.f)


def mimic_target(honest: torch.Tensor) -> int:
    """Index of the honest row with the largest absolute projection on the top principal direction.

    Computed from the centered ``(m, m)`` Gram matrix in float64: its top eigenvector ``u_1`` gives the
    projections ``sigma_1 * u_1``. Ties (and an all-equal stack) go to the lowest index.
    """
    centered = honest - honest.mean(dim=0, keepdim=True)
    gram = (centered @ centered.T).double()
    _, vecs = torch.linalg.eigh(gram)
    score = vecs[:, -1].abs()
    best = score.max()
    # lowest index among (numerically) tied maxima
    tied = torch.nonzero(score >= best - 1e-12 * max(float(best), 1.0)).flatten()
    return int(tied[0])


for _cls in (NoAttack, ALIE, IPM, SignFlip, Gaussian, Scaling, Mimic):
    ATTACKS.register(_cls.name)(_cls)
