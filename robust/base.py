"""Common machinery of the robust rules: input checks, non-finite rows, registries, base classes.

Every rule and pre-aggregator goes through :meth:`Aggregator.__call__` / :meth:`PreAggregator.__call__`,
which

1. turns the input into a 2-D floating tensor (numpy arrays zero-copy through ``torch.from_numpy``)
   and rejects empty stacks and wrong shapes with a ``ValueError`` that names the argument;
2. checks the rule's Byzantine bound on the given ``(n, f)``;
3. drops rows that hold a NaN or an Inf *once, here*: they are counted as Byzantine, so the rule runs
   on the ``n - n_bad`` finite rows with ``f' = f - n_bad``; more non-finite rows than the rule
   tolerates raise :class:`robust.NonFiniteError`;
4. maps the rule's selection (indices into the finite rows) back to indices of the given stack in
   ``last_selection``.

Subclasses implement only the mathematics, in ``_aggregate(x, f)`` / ``_transform(x, f)`` on a finite
stack with the effective ``f``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from robust._registry import Registry
from robust.errors import ByzantineBoundError, NonFiniteError

__all__ = [
    "AGGREGATORS",
    "PRE_AGGREGATORS",
    "Aggregator",
    "PreAggregator",
    "as_stack",
    "check_f",
    "make",
    "make_pre",
    "split_finite",
]

Selection = torch.Tensor | None


def as_stack(stack: Any, name: str = "stack") -> torch.Tensor:
    """Return ``stack`` as a 2-D floating ``torch.Tensor`` (numpy input is wrapped without copying).

    Raises ``ValueError`` naming ``name`` for a non-2-D input, an empty stack (no rows or no
    columns) or a non-floating dtype.
    """
    if isinstance(stack, np.ndarray):
        if not np.issubdtype(stack.dtype, np.floating):
            raise ValueError(f"{name} must hold floating values; got dtype {stack.dtype}; want float32/64")
        stack = torch.from_numpy(np.ascontiguousarray(stack))
    if not isinstance(stack, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array; got {type(stack).__name__}")
    if stack.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got shape {tuple(stack.shape)}")
    if stack.shape[0] < 1 or stack.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column; got shape {tuple(stack.shape)}")
    if not stack.is_floating_point():
        raise ValueError(f"{name} must hold floating values; got dtype {stack.dtype}; want a float dtype")
    return stack


def check_f(f: Any, name: str = "f") -> int:
    """Validate a Byzantine count: a non-negative ``int`` (``bool`` refused)."""
    if isinstance(f, bool) or not isinstance(f, int | np.integer):
        raise ValueError(f"{name} must be an int; got {f!r}")
    if f < 0:
        raise ValueError(f"{name} must be >= 0; got {name}={f}")
    return int(f)


def split_finite(stack: torch.Tensor, tolerated: int, who: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop rows holding NaN or Inf.

    Returns ``(finite_rows, kept)`` where ``kept`` holds the indices of the kept rows, or is ``None``
    when every row is finite (no copy is made then). Raises :class:`NonFiniteError` when more than
    ``tolerated`` rows are non-finite or when no row is left.
    """
    # One reduction over the stack; sum() propagates NaN and +/-Inf (Inf - Inf -> NaN).
    row_ok = torch.isfinite(stack.sum(dim=1))
    if bool(row_ok.all()):
        return stack, None
    # sum() can overflow to Inf on huge but finite rows: confirm element-wise on the suspects only.
    suspects = torch.nonzero(~row_ok).flatten()
    bad_sub = ~torch.isfinite(stack.index_select(0, suspects)).all(dim=1)
    bad = suspects[bad_sub]
    n_bad = int(bad.numel())
    if n_bad == 0:
        return stack, None
    n = int(stack.shape[0])
    if n_bad > tolerated or n_bad >= n:
        raise NonFiniteError(
            f"{who}: got {n_bad} non-finite rows of n={n}; want at most {min(tolerated, n - 1)}"
        )
    mask = torch.ones(n, dtype=torch.bool, device=stack.device)
    mask[bad] = False
    kept = torch.nonzero(mask).flatten()
    return stack.index_select(0, kept), kept


def _map_back(sel: Selection, kept: torch.Tensor | None) -> list[int] | None:
    if sel is None:
        return None
    if kept is not None:
        sel = kept[sel.to(kept.device)]
    return [int(i) for i in sel.tolist()]


class Aggregator:
    """Base class of a robust rule: ``agg(stack) -> (d,)`` tensor on the stack's device and dtype.

    Attributes:
        f: Byzantine rows tolerated, or ``None`` for rules without that parameter.
        last_selection: after each call, the rows (indices into the given stack) that entered the
            output, or ``None`` when the rule does not select rows.
        needs_root: ``True`` for rules that need the server's root gradient (``root=`` keyword).
    """

    needs_root: bool = False
    name: ClassVar[str] = "aggregator"

    def __init__(self, f: int | None = None) -> None:
        self.f: int | None = None if f is None else check_f(f)
        self.last_selection: list[int] | None = None

    # -- hooks for subclasses -------------------------------------------------------------------
    def check_bound(self, n: int, f: int | None) -> None:
        """Raise :class:`ByzantineBoundError` if the rule cannot tolerate ``f`` of ``n`` rows."""

    def tolerated(self, n: int) -> int:
        """How many non-finite rows the rule can drop (default: ``f``, or 0 without ``f``)."""
        return 0 if self.f is None else self.f

    def _aggregate(self, x: torch.Tensor, f: int | None, **kw: Any) -> tuple[torch.Tensor, Selection]:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------------
    def __call__(self, stack: Any, **kw: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        self.check_bound(n, self.f)
        x, kept = split_finite(x, self.tolerated(n), self.name)
        n_bad = 0 if kept is None else n - int(kept.numel())
        f_eff = None if self.f is None else max(self.f - n_bad, 0)
        if kept is not None:
            kw = self._subset_kwargs(kw, kept)
        out, sel = self._aggregate(x, f_eff, **kw)
        self.last_selection = _map_back(sel, kept)
        return out

    def _subset_kwargs(self, kw: dict[str, Any], kept: torch.Tensor) -> dict[str, Any]:
        """Restrict per-row keyword arguments (e.g. ``weights``) to the kept rows."""
        return kw

    def reset(self) -> None:
        """Forget state carried across rounds (no-op for stateless rules)."""
        self.last_selection = None

    def state_dict(self) -> dict[str, Any]:
        """State carried across rounds (empty for stateless rules)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(f={self.f})" if self.f is not None else f"{type(self).__name__}()"


class PreAggregator:
    """Base class of a pre-aggregator ``(n, d) -> (m, d)``.

    Attributes:
        f: Byzantine rows assumed (``None`` when the transform does not use it).
        last_sources: after each call, for every output row the input rows it stands for (identity
            for row-wise maps such as clipping or NNM; the bucket members for bucketing). A Pipeline
            uses it to map the final rule's selection back to the input rows.
    """

    name: ClassVar[str] = "pre_aggregator"

    def __init__(self, f: int | None = None) -> None:
        self.f: int | None = None if f is None else check_f(f)
        self.last_sources: list[list[int]] | None = None

    def check_bound(self, n: int, f: int | None) -> None:
        """Raise :class:`ByzantineBoundError` if the transform cannot use ``f`` of ``n`` rows."""

    def tolerated(self, n: int) -> int | None:
        """Non-finite rows this transform can drop (``None``: no constraint of its own)."""
        return self.f

    def out_rows(self, n: int) -> int:
        """Number of rows the transform outputs for ``n`` input rows."""
        return n

    def _transform(self, x: torch.Tensor, f: int | None) -> tuple[torch.Tensor, list[list[int]]]:
        raise NotImplementedError

    def __call__(self, stack: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        self.check_bound(n, self.f)
        tol = self.tolerated(n)
        x, kept = split_finite(x, 0 if tol is None else tol, self.name)
        n_bad = 0 if kept is None else n - int(kept.numel())
        f_eff = None if self.f is None else max(self.f - n_bad, 0)
        out, sources = self._transform(x, f_eff)
        if kept is not None:
            k = kept.tolist()
            sources = [[k[i] for i in s] for s in sources]
        self.last_sources = sources
        return out

    def reset(self) -> None:
        """Forget state (random generators are re-seeded)."""
        self.last_sources = None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(f={self.f})" if self.f is not None else f"{type(self).__name__}()"


def identity_sources(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]


def bound_error(rule: str, f: int, n: int, want: str) -> ByzantineBoundError:
    return ByzantineBoundError(f"got f={f}, n={n}; {rule} needs {want}")


AGGREGATORS: Registry[Aggregator] = Registry("aggregator")
PRE_AGGREGATORS: Registry[PreAggregator] = Registry("pre-aggregator")


def make(name: str, **kw: Any) -> Aggregator:
    """Build a registered rule by name: ``robust.make("trimmed_mean", f=5)``."""
    return AGGREGATORS.make(name, **kw)


def make_pre(name: str, **kw: Any) -> PreAggregator:
    """Build a registered pre-aggregator by name: ``robust.make_pre("nnm", f=5)``."""
    return PRE_AGGREGATORS.make(name, **kw)


def as_weights(
    w: Any, n: int, device: torch.device, dtype: torch.dtype, name: str = "weights"
) -> torch.Tensor:
    """Validate per-row weights: shape ``(n,)``, finite, non-negative, positive sum."""
    if isinstance(w, np.ndarray):
        w = torch.from_numpy(w)
    if isinstance(w, Sequence):
        w = torch.tensor(list(w), dtype=dtype)
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, array or sequence; got {type(w).__name__}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got shape {tuple(w.shape)}")
    w = w.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0; got {w.tolist()}")
    if float(w.sum()) <= 0.0:
        raise ValueError(f"{name} must have a positive sum; got sum {float(w.sum())}")
    return w
