"""Common machinery of the robust rules: input checks, non-finite rows, registries, base classes.

Every rule and pre-aggregator goes through :meth:`Aggregator.__call__` / :meth:`PreAggregator.__call__`,
which

1. turns the input into a 2-D floating tensor (numpy arrays zero-copy through ``torch.from_numpy``;
   non-native byte order converted; a tensor that requires grad is detached: rules are not
   differentiable and their output carries no gradient) and rejects empty stacks, wrong shapes and
   dtypes with a :class:`robust.errors.StackError` that names the argument;
2. checks the rule's Byzantine bound on the given ``(n, f)``;
3. drops rows that hold a NaN or an Inf *once, here*: they are counted as Byzantine, so the rule runs
   on the ``n - n_bad`` finite rows with ``f' = f - n_bad``; more non-finite rows than the rule
   tolerates raise :class:`robust.NonFiniteError`;
4. runs the rule in a safe range (:mod:`robust._range`): a finite stack whose squares would
   overflow is promoted to float64 and rescaled by a power of two, so the output is finite; a
   result that still is not raises :class:`robust.errors.NonFiniteResultError`;
5. maps the rule's selection (indices into the finite rows) back to indices of the given stack in
   ``last_selection``.

Subclasses implement only the mathematics, in ``_aggregate(x, f, stat)`` / ``_transform(x, f, stat)``
on a finite stack with the effective ``f``. ``stat`` is what the subclass's ``row_stat`` computed in
the same pass as the non-finite check (row norms, the Gram matrix ...), restricted to the finite rows,
or ``None`` when the caller (a Pipeline's later stages) has none: then the subclass computes it.
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any, ClassVar

import numpy as np
import torch

from fedcore import validate
from robust._range import run_in_range
from robust._registry import Registry
from robust.errors import ByzantineBoundError, NonFiniteError, ParameterError, StackError

__all__ = [
    "AGGREGATORS",
    "PRE_AGGREGATORS",
    "Aggregator",
    "PreAggregator",
    "as_stack",
    "check_f",
    "finite_split_with_stat",
    "make",
    "make_pre",
    "new_like",
    "row_sq_norms",
    "split_finite",
    "take_rows",
]

Selection = torch.Tensor | None
Stat = torch.Tensor | None


def row_sq_norms(x: torch.Tensor) -> torch.Tensor:
    """``||x_i||^2`` per row, float64 (float32 norms that overflow are recomputed in float64)."""
    sq = torch.linalg.vector_norm(x, dim=1).to(torch.float64).square_()
    bad = torch.nonzero(~torch.isfinite(sq)).flatten()
    if bad.numel():
        sq[bad] = x.index_select(0, bad).to(torch.float64).square_().sum(dim=1)
    return sq


def gram(x: torch.Tensor) -> torch.Tensor:
    """``x x^T``: the pairwise inner products of the rows; its diagonal doubles as the non-finite check."""
    return x @ x.T


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def numpy_ok(x: torch.Tensor) -> bool:
    """Whether ``x`` may be handed to numpy: a CPU float32/float64 tensor outside autograd."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad


#: Alignment of the arrays robust allocates for numpy: a cache line, one AVX-512 vector.
ALIGN = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``numpy.empty`` whose data starts on an :data:`ALIGN`-byte boundary.

    numpy's large arrays come from ``mmap`` through glibc and start 16 bytes into a page, so the
    vector loads and stores of every row split cache lines; measured on 2 cores (n = 25,
    d = 500,000, float32): NNM's mixing product took 13.5 ms into such an array and 10.2 ms into an
    aligned one (a copy, 7.7 against 4.9 ms). numpy still asks the kernel for huge pages on the
    underlying allocation."""
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes].view(dt).reshape(shape)


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x[rows]`` as a new tensor. On the CPU through ``numpy.take`` (measured ~6x faster than
    ``torch.index_select(0, ...)`` on a (25, 500000) float32 stack, whose output also lands on huge
    pages)."""
    if numpy_ok(x):
        idx = rows.cpu().numpy()
        n = int(x.shape[0])
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"rows must index the {n} rows; got {idx.tolist()}")
        out = aligned_empty((len(idx), int(x.shape[1])), _NUMPY_DTYPES[x.dtype])
        # mode="wrap" (indices checked above) writes into `out` directly; "raise" would buffer it.
        return torch.from_numpy(np.take(x.detach().numpy(), idx, axis=0, out=out, mode="wrap"))
    return x.index_select(0, rows.to(x.device))


def new_like(x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """An uninitialised ``(rows, d)`` tensor like ``x``. On the CPU it is allocated by numpy, which
    asks the kernel for transparent huge pages: a fresh 50 MB output then costs a fraction of the page
    faults a plain ``torch.empty`` takes (and :func:`aligned_empty` keeps its rows cache-aligned)."""
    shape = (int(x.shape[0]) if rows is None else rows, int(x.shape[1]))
    if numpy_ok(x):
        return torch.from_numpy(aligned_empty(shape, _NUMPY_DTYPES[x.dtype]))
    return torch.empty(shape, dtype=x.dtype, device=x.device)


class OutputBuffer:
    """A pre-aggregator's ``(rows, d)`` output memory, handed out again once nothing uses it.

    Writing a 50 MB output into fresh memory pays the page faults on every call: NNM's mixing product
    measured 26 ms into a fresh array and 12 ms into a warm one (n = 25, d = 500,000, float32, two
    threads). On the CPU the output is a numpy array wrapped by ``torch.from_numpy``, which holds one
    reference to the array per tensor storage for as long as any tensor or view of it lives; so when
    the array's reference count shows no storage, no result handed out earlier can see it changed,
    and it is reused. Otherwise (and on other devices) the output is fresh, as with :func:`new_like`.
    Copies of the owner (``copy.deepcopy``, pickling) start with an empty buffer.
    """

    _FREE = 3  # references to a free array: self._array, the local name, getrefcount's argument

    def __init__(self) -> None:
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def like(self, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """An uninitialised ``(rows, d)`` tensor like ``x`` (see the class docstring)."""
        if not numpy_ok(x):
            return new_like(x, rows)
        dt = _NUMPY_DTYPES[x.dtype]
        shape = (int(x.shape[0]) if rows is None else rows, int(x.shape[1]))
        with self._lock:
            arr = self._array
            if arr is None or arr.shape != shape or arr.dtype != dt or sys.getrefcount(arr) > self._FREE:
                arr = aligned_empty(shape, dt)
                self._array = arr
            return torch.from_numpy(arr)

    def __deepcopy__(self, memo: dict[int, Any]) -> OutputBuffer:
        return OutputBuffer()

    def __reduce__(self) -> tuple[type[OutputBuffer], tuple[()]]:
        return (OutputBuffer, ())


def as_stack(stack: Any, name: str = "stack") -> torch.Tensor:
    """Return ``stack`` as a 2-D floating ``torch.Tensor`` (:func:`fedcore.validate.as_stack`; numpy
    input is wrapped without copying, a ``requires_grad`` tensor detached). Raises
    :class:`StackError` (a ``ValueError``) naming ``name`` for another type, a non-2-D input, an
    empty stack (no rows or no columns) or a non-floating dtype.
    """
    return validate.as_stack(stack, error=StackError, name=name)


def check_f(f: Any, name: str = "f") -> int:
    """Validate a Byzantine count: a non-negative ``int`` (``bool`` refused)."""
    if isinstance(f, bool) or not isinstance(f, int | np.integer):
        raise ParameterError(f"{name} must be an int; got {f!r}")
    if f < 0:
        raise ParameterError(f"{name} must be >= 0; got {name}={f}")
    return int(f)


def split_finite(
    stack: torch.Tensor, tolerated: int, who: str, check: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop rows holding NaN or Inf.

    ``check`` is any per-row reduction that is non-finite for a row holding NaN/Inf (default: the row
    sums, one pass over the stack); a rule that needs such a reduction anyway (row norms, the Gram
    diagonal) passes its own and saves that pass. Suspect rows are confirmed element-wise, so a finite
    row whose reduction merely overflowed is kept.

    Returns ``(finite_rows, kept)`` where ``kept`` holds the indices of the kept rows, or is ``None``
    when every row is finite (no copy is made then). Raises :class:`NonFiniteError` when more than
    ``tolerated`` rows are non-finite or when no row is left.
    """
    row_ok = torch.isfinite(stack.sum(dim=1) if check is None else check)
    if bool(row_ok.all()):
        return stack, None
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
    return take_rows(stack, kept), kept


def finite_split_with_stat(
    x: torch.Tensor, stat: torch.Tensor | None, tolerated: int, who: str
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`split_finite` driven by a row statistic (``(n,)`` per-row values or an ``(n, n)``
    Gram-like matrix, checked on its diagonal); returns the statistic restricted to the kept rows."""
    check = None if stat is None else (torch.diagonal(stat) if stat.ndim == 2 else stat)
    x, kept = split_finite(x, tolerated, who, check)
    if kept is not None and stat is not None:
        k = kept.to(stat.device)
        stat = stat.index_select(0, k)
        if stat.ndim == 2:
            stat = stat.index_select(1, k)
    return x, kept, stat


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
    #: How the output scales with the stack: 1 positively homogeneous (``rule(c x) = c rule(x)``),
    #: 0 scale-invariant, ``None`` neither (never rescaled; see :mod:`robust._range`).
    scaling: ClassVar[int | None] = 1
    #: During ``_aggregate``: the stack was multiplied by ``2^-range_shift`` (absolute constants of a
    #: rule, such as a smoothing distance, scale with it).
    range_shift: int = 0

    def __init__(self, f: int | None = None) -> None:
        self.f: int | None = None if f is None else check_f(f)
        self.last_selection: list[int] | None = None

    # -- hooks for subclasses -------------------------------------------------------------------
    def check_bound(self, n: int, f: int | None) -> None:
        """Raise :class:`ByzantineBoundError` if the rule cannot tolerate ``f`` of ``n`` rows."""

    def tolerated(self, n: int) -> int:
        """How many non-finite rows the rule can drop (default: ``f``, or 0 without ``f``)."""
        return 0 if self.f is None else self.f

    def row_stat(self, x: torch.Tensor) -> Stat:
        """A per-row statistic computed in the non-finite check's pass and handed to ``_aggregate``
        (default ``None``: the check uses the row sums). Rules that need norms or distances declare
        ``row_stat = staticmethod(row_sq_norms)`` or ``staticmethod(gram)``, so that one pass does the
        non-finite check, the range bound and the rule's first statistic."""
        return None

    def _aggregate(
        self, x: torch.Tensor, f: int | None, stat: Stat = None, **kw: Any
    ) -> tuple[torch.Tensor, Selection]:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------------
    def __call__(self, stack: Any, **kw: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        self.check_bound(n, self.f)
        x, kept, stat = finite_split_with_stat(x, self.row_stat(x), self.tolerated(n), self.name)
        n_bad = 0 if kept is None else n - int(kept.numel())
        f_eff = None if self.f is None else max(self.f - n_bad, 0)

        def run(xs: torch.Tensor, st: Stat, k: int) -> tuple[torch.Tensor, Selection]:
            self.range_shift = k
            return self._aggregate(xs, f_eff, st, **kw)

        out, sel = run_in_range(x, stat, self.scaling, self.name, run)
        self.last_selection = _map_back(sel, kept)
        return out

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
    #: See :attr:`Aggregator.scaling`.
    scaling: ClassVar[int | None] = 1

    def __init__(self, f: int | None = None) -> None:
        self.f: int | None = None if f is None else check_f(f)
        self.last_sources: list[list[int]] | None = None
        #: Output memory reused across calls once earlier outputs are released (:class:`OutputBuffer`).
        self.output = OutputBuffer()

    def check_bound(self, n: int, f: int | None) -> None:
        """Raise :class:`ByzantineBoundError` if the transform cannot use ``f`` of ``n`` rows."""

    def tolerated(self, n: int) -> int | None:
        """Non-finite rows this transform can drop (``None``: no constraint of its own)."""
        return self.f

    def out_rows(self, n: int) -> int:
        """Number of rows the transform outputs for ``n`` input rows."""
        return n

    def row_stat(self, x: torch.Tensor) -> Stat:
        """See :meth:`Aggregator.row_stat`."""
        return None

    def _transform(
        self, x: torch.Tensor, f: int | None, stat: Stat = None
    ) -> tuple[torch.Tensor, list[list[int]]]:
        raise NotImplementedError

    def __call__(self, stack: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        self.check_bound(n, self.f)
        tol = self.tolerated(n)
        x, kept, stat = finite_split_with_stat(x, self.row_stat(x), 0 if tol is None else tol, self.name)
        n_bad = 0 if kept is None else n - int(kept.numel())
        f_eff = None if self.f is None else max(self.f - n_bad, 0)
        out, sources = run_in_range(
            x, stat, self.scaling, self.name, lambda xs, st, k: self._transform(xs, f_eff, st), check=False
        )
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
    """Validate per-row weights: shape ``(n,)``, finite, non-negative, positive sum
    (:func:`fedcore.validate.as_weights`, raising :class:`StackError`)."""
    return validate.as_weights(w, n, error=StackError, name=name, device=device, dtype=dtype)
