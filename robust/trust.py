"""Trust-based rules: FLTrust (server root gradient) and the Reputation wrapper (trust across rounds)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from robust.base import AGGREGATORS, Aggregator, Selection, Stat, as_stack, row_sq_norms, take_rows
from robust.coordinate import row_distances
from robust.errors import ParameterError

__all__ = ["FLTrust", "Reputation", "fltrust_weights"]


def fltrust_weights(
    cos: torch.Tensor, norms: torch.Tensor, g0_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLTrust's trust scores and row weights (Cao et al., NDSS 2021) from the cosines and norms.

    ``TS_i = ReLU(cos(x_i, g0))`` (0 when ``||x_i|| = 0``) and
    ``w_i = TS_i ||g0|| / (||x_i|| sum_k TS_k)``, so the output is ``sum_i w_i x_i``; every ``w_i`` is 0
    when every ``TS_i`` is. The plaintext rule and the two-server mechanism (``protocols.prio``, on
    opened inner products and norms) both weight through this function.

    Returns:
        ``(TS, w)``, both ``(n,)`` in the dtype of ``cos``.
    """
    ts = torch.where(norms > 0, cos.clamp_min(0.0), torch.zeros_like(cos))
    total = float(ts.sum())
    if total == 0.0:
        return ts, torch.zeros_like(ts)
    return ts, ts * g0_norm / norms.clamp_min(1e-300) / total


@AGGREGATORS.register("fltrust")
class FLTrust(Aggregator):
    """FLTrust (Cao, Fang, Liu & Gong, NDSS 2021): trust bootstrapped from a server root gradient.

    With ``g0`` the gradient the server computed on its small root data set (``root=`` keyword):
    ``TS_i = ReLU(cos(x_i, g0))``, each row rescaled to ``||g0||``, and
    ``out = sum_i TS_i (||g0|| / ||x_i||) x_i / sum_i TS_i`` (zero when every ``TS_i`` is 0).

    No bound on f (the root gradient is the anchor); at least one finite row is needed.
    ``last_selection`` holds the rows with positive trust; ``last_trust`` the scores.
    """

    name = "fltrust"
    needs_root = True
    scaling = 0  # the output is scaled by ||root||, not by the rows

    def __init__(self) -> None:
        super().__init__(None)
        self.last_trust: torch.Tensor | None = None

    def tolerated(self, n: int) -> int:
        return n - 1

    row_stat = staticmethod(row_sq_norms)

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, root: Any = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        if kw:
            raise ParameterError(f"FLTrust got unexpected keyword arguments {sorted(kw)}; want only root=")
        if root is None:
            raise ParameterError(
                "FLTrust needs the server root gradient: got root=None; want root=<(d,) tensor>"
            )
        if isinstance(root, np.ndarray):
            if not root.dtype.isnative:
                root = root.astype(root.dtype.newbyteorder("="))
            root = torch.from_numpy(root)
        if isinstance(root, torch.Tensor):
            root = root.detach()
        d = int(x.shape[1])
        if not isinstance(root, torch.Tensor) or root.shape != (d,):
            shape = tuple(root.shape) if isinstance(root, torch.Tensor) else type(root).__name__
            raise ParameterError(f"root must be a ({d},) tensor; got {shape}")
        g0 = root.to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(g0).all()):
            raise ParameterError("root must be finite; got NaN/Inf entries")
        zero = torch.zeros(d, dtype=x.dtype, device=x.device)
        g0_norm = float(torch.linalg.vector_norm(g0.to(torch.float64)))
        if g0_norm == 0.0:
            self.last_trust = torch.zeros(int(x.shape[0]), dtype=torch.float64)
            return zero, torch.zeros(0, dtype=torch.int64)
        norms = (row_sq_norms(x) if stat is None else stat).sqrt()
        unit = (g0.to(torch.float64) / g0_norm).to(x.dtype)  # g0_norm may exceed the dtype
        cos = (x @ unit).to(torch.float64) / norms.clamp_min(1e-300)
        ts, w = fltrust_weights(cos, norms, g0_norm)
        self.last_trust = ts.cpu()
        if float(ts.sum()) == 0.0:
            return zero, torch.zeros(0, dtype=torch.int64)
        return w.to(x.dtype) @ x, torch.nonzero(ts > 0).flatten()


class Reputation(Aggregator):
    """Per-client trust across rounds, wrapped around any rule (composition, not inheritance).

    Each call:

    1. Rows of clients whose trust is below ``threshold`` are withheld from the wrapped rule (unless
       that would break the rule's Byzantine bound; then every row is used).
    2. The wrapped rule aggregates the rest; its output is the output.
    3. Evidence for every row (withheld ones too, so trust can recover):
       ``e_i = 1`` if ``||x_i - out|| <= radius * median_j ||x_j - out||`` (median over the rows
       given to the rule), else 0; non-finite rows get 0.
    4. ``trust_id <- decay * trust_id + (1 - decay) * e_i`` (new clients start at ``initial``).

    Clients are the row indices, or the ``ids=`` keyword (one hashable id per row) when the
    participating clients change between rounds. ``last_selection``: the rows the rule used, mapped
    through the rule's own selection when it has one.
    """

    name = "reputation"

    def __init__(
        self,
        rule: Aggregator,
        decay: float = 0.9,
        threshold: float = 0.5,
        radius: float = 2.0,
        initial: float = 1.0,
    ) -> None:
        if not isinstance(rule, Aggregator) or isinstance(rule, Reputation):
            raise ParameterError(f"rule must be a robust aggregator (not a Reputation); got {rule!r}")
        super().__init__(rule.f)
        for name, val, lo, hi in (
            ("decay", decay, 0.0, 1.0),
            ("threshold", threshold, 0.0, 1.0),
            ("initial", initial, 0.0, 1.0),
        ):
            if isinstance(val, bool) or not isinstance(val, int | float) or not lo <= val <= hi:
                raise ParameterError(f"{name} must be a number in [{lo}, {hi}]; got {name}={val!r}")
        if (
            isinstance(radius, bool)
            or not isinstance(radius, int | float)
            or not math.isfinite(radius)
            or radius <= 0
        ):
            raise ParameterError(f"radius must be a finite number > 0; got radius={radius!r}")
        self.rule = rule
        self.needs_root = rule.needs_root
        self.decay, self.threshold = float(decay), float(threshold)
        self.radius, self.initial = float(radius), float(initial)
        self.trust: dict[Any, float] = {}

    def __call__(self, stack: Any, ids: Any = None, **kw: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        if ids is None:
            ids = list(range(n))
        else:
            ids = list(ids.tolist() if isinstance(ids, torch.Tensor | np.ndarray) else ids)
            if len(ids) != n or len(set(ids)) != n:
                raise ParameterError(
                    f"ids must be {n} distinct client ids; got {len(ids)} ({len(set(ids))} distinct)"
                )
        self.rule.check_bound(n, self.rule.f)
        trusted = [i for i in range(n) if self.trust.get(ids[i], self.initial) >= self.threshold]
        if len(trusted) < n:
            try:
                self.rule.check_bound(len(trusted), self.rule.f)
            except ValueError:
                trusted = list(range(n))
        rows = torch.tensor(trusted, dtype=torch.int64, device=x.device)
        sub = x if len(trusted) == n else take_rows(x, rows)
        out = self.rule(sub, **kw)
        inner = self.rule.last_selection
        used = trusted if inner is None else [trusted[i] for i in inner]
        self.last_selection = sorted(used)
        self._update(x, out, trusted, ids)
        return out

    def _update(self, x: torch.Tensor, out: torch.Tensor, trusted: list[int], ids: list[Any]) -> None:
        r = row_distances(x, out.to(x.device))
        finite = torch.isfinite(r)
        ref_rows = torch.tensor([i for i in trusted if bool(finite[i])], dtype=torch.int64)
        ref = float(r[ref_rows].median()) if ref_rows.numel() else 0.0
        ok = (finite & (r <= self.radius * ref)).tolist()
        for i, cid in enumerate(ids):
            old = self.trust.get(cid, self.initial)
            self.trust[cid] = self.decay * old + (1.0 - self.decay) * (1.0 if ok[i] else 0.0)

    def reset(self) -> None:
        super().reset()
        self.trust = {}
        self.rule.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"trust": dict(self.trust), "rule": self.rule.state_dict()}

    def __repr__(self) -> str:
        return f"Reputation({self.rule!r}, decay={self.decay}, threshold={self.threshold})"
