"""Norm-based rules: GeometricMedian (smoothed Weiszfeld) and CenteredClipping (stateful)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from robust.base import AGGREGATORS, Aggregator, Selection, Stat, check_f, row_sq_norms
from robust.coordinate import coordinate_median, row_distances
from robust.errors import ParameterError
from robust.statistics import Statistic

__all__ = ["CenteredClipping", "GeometricMedian", "weiszfeld"]


def _positive(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ParameterError(f"{name} must be a finite number > 0; got {name}={value!r}")
    return float(value)


def weiszfeld(
    x: torch.Tensor, tol: float = 1e-5, max_iter: int = 100, nu: float = 1e-6
) -> tuple[torch.Tensor, int, bool]:
    """Geometric median ``argmin_z sum_i ||z - x_i||`` by smoothed Weiszfeld iterations.

    ``beta_i = 1 / max(nu, ||z_t - x_i||)``, ``z_{t+1} = sum_i beta_i x_i / sum_i beta_i`` (Pillutla,
    Kakade & Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022, Algorithm 2 with
    uniform client weights), started at the coordinate-wise median. (The paper starts at the mean,
    which one huge row drags arbitrarily far: from a row of 1e200 among ten of norm ~1, 100
    iterations from the mean still left the estimate at 1e99; from the median it converges as usual.)

    Stopping rule (the stated tolerance): ``||z_{t+1} - z_t|| <= tol * median_i ||z_t - x_i||`` -- the
    step relative to the spread of the rows around the estimate. Unlike a relative change of the
    objective, this stays meaningful when f rows are ~1e12 and dominate the objective.

    Distances are computed from the differences block by block in float64 (no Gram-style expansion,
    which loses the honest rows to cancellation when f rows are ~1e12); an iteration is two passes
    over the stack.

    Returns:
        ``(z, iterations, converged)``.
    """
    z = coordinate_median(x).to(device=x.device, dtype=x.dtype)
    for it in range(1, max_iter + 1):
        r = row_distances(x, z)
        beta = 1.0 / r.clamp_min(nu)
        w = (beta / beta.sum()).to(x.dtype)
        z_new = w @ x
        step = float(torch.dist(z_new, z))
        scale = float(r.median())
        z = z_new
        if step <= tol * scale or step == 0.0:
            return z, it, True
    return z, max_iter, False


@AGGREGATORS.register("geometric_median")
class GeometricMedian(Aggregator):
    """Geometric median (RFA, Pillutla et al.) by smoothed Weiszfeld run to a tolerance; see
    :func:`weiszfeld` for the iteration and the stopping rule (default: step <= 1e-5 times the median
    distance of the rows to the estimate, at most 100 iterations; a warning is raised if not reached).

    Breakdown point 1/2: tolerates ``ceil(n/2) - 1`` non-finite rows. ``last_iterations`` and
    ``last_converged`` describe the last call.
    """

    name = "geometric_median"

    def __init__(self, tol: float = 1e-5, max_iter: int = 100, nu: float = 1e-6) -> None:
        super().__init__(None)
        self.tol = _positive(tol, "tol")
        self.nu = _positive(nu, "nu")
        self.max_iter = check_f(max_iter, "max_iter")
        if self.max_iter < 1:
            raise ParameterError(f"max_iter must be >= 1; got max_iter={max_iter}")
        self.last_iterations = 0
        self.last_converged = True

    def tolerated(self, n: int) -> int:
        return (n - 1) // 2

    row_stat = staticmethod(row_sq_norms)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        nu = math.ldexp(self.nu, -self.range_shift)  # nu is a distance: it scales with the stack
        z, self.last_iterations, self.last_converged = weiszfeld(x, self.tol, self.max_iter, nu)
        if not self.last_converged:
            warnings.warn(
                f"GeometricMedian did not reach tol={self.tol} in max_iter={self.max_iter} iterations",
                RuntimeWarning,
                stacklevel=5,
            )
        return z, None

    def __repr__(self) -> str:
        return f"GeometricMedian(tol={self.tol}, max_iter={self.max_iter}, nu={self.nu})"


@AGGREGATORS.register("centered_clipping")
class CenteredClipping(Aggregator):
    """Centered clipping (Karimireddy, He & Jaggi, ICML 2021), stateful.

    ``iters`` times: ``v <- v + (1/n) sum_i min(1, tau / ||x_i - v||) (x_i - v)``. The center ``v``
    starts at 0 and is carried across calls (the previous aggregate), as in the authors' code;
    ``reset()`` forgets it. Defaults ``tau = 10``, ``iters = 1`` (the non-IID code uses L = 1..3).

    Each row moves the center by at most ``tau / n`` per iteration, whatever its value. Tolerates
    ``ceil(n/2) - 1`` non-finite rows.

    Example:
        >>> import torch, robust
        >>> cc = robust.CenteredClipping(tau=1.0)
        >>> cc(torch.tensor([[0.5], [0.5], [1e9]])).tolist()  # (0.5 + 0.5 + 1) / 3
        [0.6666666865348816]
        >>> cc.state_dict()["center"].tolist(), cc.reset(), cc.center
        ([0.6666666865348816], None, None)
    """

    name = "centered_clipping"
    scaling = None  # tau is an absolute radius: never rescaled
    #: norms of the differences to the (public) center, one set per iteration
    statistic = Statistic.NORMS

    def __init__(self, tau: float = 10.0, iters: int = 1) -> None:
        super().__init__(None)
        self.tau = _positive(tau, "tau")
        self.iters = check_f(iters, "iters")
        if self.iters < 1:
            raise ParameterError(f"iters must be >= 1; got iters={iters}")
        self.center: torch.Tensor | None = None

    def tolerated(self, n: int) -> int:
        return (n - 1) // 2

    def row_stat(self, x: torch.Tensor) -> Stat:
        # The first iteration's distances ||x_i - v|| (the row norms while v = 0), computed in the
        # non-finite check's pass: a row's distance is finite exactly when the row is.
        if self.center is None:
            return row_distances(x)
        if self.center.shape != (int(x.shape[1]),):
            return None  # _aggregate reports the mismatch
        return row_distances(x, self.center.to(device=x.device, dtype=x.dtype))

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        n, d = int(x.shape[0]), int(x.shape[1])
        if self.center is None:
            v = torch.zeros(d, dtype=x.dtype, device=x.device)
        else:
            if self.center.shape != (d,):
                raise ParameterError(
                    f"stack has d={d} but the carried center has shape {tuple(self.center.shape)}; "
                    "call reset() when the model changes"
                )
            v = self.center.to(device=x.device, dtype=x.dtype)
        r = stat
        for _ in range(self.iters):
            if r is None:
                r = row_distances(x, v)
            s = torch.where(r > self.tau, self.tau / r, torch.ones_like(r))
            # v + (1/n) sum_i s_i (x_i - v) = v (1 - sum(s)/n) + (s/n) @ x
            v = v * (1.0 - float(s.sum()) / n) + (s / n).to(x.dtype) @ x
            r = None
        self.center = v.clone()
        return v, None

    def reset(self) -> None:
        super().reset()
        self.center = None

    def state_dict(self) -> dict[str, Any]:
        return {"center": None if self.center is None else self.center.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        c = state.get("center")
        if c is not None and (not isinstance(c, torch.Tensor) or c.ndim != 1):
            raise ParameterError(f"center must be a 1-D tensor or None; got {type(c).__name__}")
        self.center = None if c is None else c.clone()

    def __repr__(self) -> str:
        return f"CenteredClipping(tau={self.tau}, iters={self.iters})"
