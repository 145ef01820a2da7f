"""Validation of the two inputs every aggregation takes: the stack of updates and the client weights.

One implementation; each layer passes its own typed error class (``robust.StackError``,
``secagg.SecAggError`` ...), so a caller still catches the errors of the layer it called. Messages
say "got X; want Y" and name the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def as_stack(
    stack: Any, *, error: type[Exception] = ValueError, name: str = "stack", min_rows: int = 1
) -> torch.Tensor:
    """``stack`` as a 2-D floating ``torch.Tensor`` of at least ``min_rows`` rows and one column.

    numpy input is wrapped without copying (one copy for a non-native byte order); a tensor with
    ``requires_grad=True`` is detached. Raises ``error`` for another type, a non-2-D input, too few
    rows, no column, or a non-floating dtype.

    >>> as_stack(np.zeros((2, 3))).shape
    torch.Size([2, 3])
    """
    if isinstance(stack, np.ndarray):
        if not np.issubdtype(stack.dtype, np.floating) or stack.dtype.itemsize > 8:
            raise error(f"{name} must hold floating values; got dtype {stack.dtype}; want float16/32/64")
        if not stack.dtype.isnative:
            stack = stack.astype(stack.dtype.newbyteorder("="))
        stack = torch.from_numpy(np.ascontiguousarray(stack))
    if not isinstance(stack, torch.Tensor):
        raise error(f"{name} must be a torch.Tensor or numpy array; got {type(stack).__name__}")
    if stack.requires_grad:
        stack = stack.detach()
    if stack.ndim != 2:
        raise error(f"{name} must be 2-D (n, d); got shape {tuple(stack.shape)}")
    if stack.shape[0] < min_rows or stack.shape[1] < 1:
        rows = {0: "", 1: "at least one row and "}.get(min_rows, f"at least {min_rows} rows and ")
        raise error(f"{name} must have {rows}one column (d >= 1); got shape {tuple(stack.shape)}")
    if not stack.is_floating_point():
        raise error(f"{name} must hold floating values; got dtype {stack.dtype}; want a float dtype")
    return stack


def as_weights(
    w: Any,
    n: int,
    *,
    error: type[Exception] = ValueError,
    name: str = "weights",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Per-row weights: shape ``(n,)``, finite, non-negative, positive sum; as ``dtype`` on ``device``.

    >>> as_weights([1, 3], 2).tolist()
    [1.0, 3.0]
    """
    if isinstance(w, np.ndarray):
        w = torch.from_numpy(w)
    if isinstance(w, Sequence):
        w = torch.tensor(list(w), dtype=dtype)
    if not isinstance(w, torch.Tensor):
        raise error(f"{name} must be a tensor, array or sequence; got {type(w).__name__}")
    if w.shape != (n,):
        raise error(f"{name} must have shape ({n},); got shape {tuple(w.shape)}")
    w = w.detach().to(device=device, dtype=dtype)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise error(f"{name} must be finite and >= 0; got {w.tolist()}")
    if float(w.sum()) <= 0.0:
        raise error(f"{name} must have a positive sum; got sum {float(w.sum())}")
    return w
