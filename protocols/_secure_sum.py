"""Pieces shared by the masked secure-sum protocols (``"secagg"``, ``"secagg_plus"``, ``"secagg_ddp"``,
``"secagg_normbound"``): argument checks, the public client weights, the simulated dropouts, the threshold
on the complete graph and the release of the survivor-weighted mean.

Weighted mean (weights are public): each client scales its update by ``w_u / max w`` before encoding, the
secure sum returns ``sum_{u in U} (w_u / max w) x_u`` over the survivors U, and the server divides by
``sum_{u in U} w_u / max w``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fedcore import validate
from secagg.driver import PHASES
from secagg.errors import SecAggError
from secagg.graph import DegreeChoice, default_threshold

#: the colluding fraction assumed where a protocol takes no ``corrupt`` argument
DEFAULT_CORRUPT = 0.2


def check_corrupt(corrupt: float) -> None:
    """Refuse an assumed colluding fraction outside [0, 1)."""
    if isinstance(corrupt, bool) or not isinstance(corrupt, int | float) or not 0.0 <= corrupt < 1.0:
        raise SecAggError(f"corrupt: got {corrupt!r}; want a fraction of colluding clients in [0, 1)")


def check_min_survivors(floor: int | None) -> None:
    """Refuse a survivor floor that is neither ``None`` nor an int >= 1."""
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int) or floor < 1):
        raise SecAggError(f"min_survivors: got {floor!r}; want None or an int >= 1")


def complete_plan(n: int, t: int | None, active: bool, corrupt: float) -> DegreeChoice:
    """(t, c) on the complete graph of n clients: c = floor(corrupt n) colluders, t the given one or
    :func:`secagg.graph.default_threshold` (t > n/2, and t > (n + c)/2 when ``active``).

    >>> [complete_plan(10, None, active=a, corrupt=0.2).t for a in (False, True)]
    [6, 7]
    """
    c = math.floor(corrupt * n)
    return DegreeChoice(n - 1, t if t is not None else default_threshold(n, active, c), True, c)


def check_threshold(t: int | None) -> None:
    """Refuse a threshold that is neither ``None`` nor an int >= 1."""
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 1):
        raise SecAggError(f"t: got {t!r}; want None or an int >= 1")


def check_dropout(dropout: float, *, refuse_bool: bool = False) -> None:
    """Refuse a dropout probability outside [0, 1) (and, with ``refuse_bool``, a bool)."""
    if (
        (refuse_bool and isinstance(dropout, bool))
        or not isinstance(dropout, int | float)
        or not 0.0 <= dropout < 1.0
    ):
        raise SecAggError(f"dropout: got {dropout!r}; want a probability in [0, 1)")


def check_stack(stack: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The stack of client updates as a floating tensor of shape (n, d), n >= 2."""
    return validate.as_stack(stack, error=SecAggError, min_rows=2)


def client_weights(weights: torch.Tensor | None, n: int) -> np.ndarray:
    """Public client weights scaled to ``w / max w`` (all ones without ``weights``)."""
    if weights is None:
        return np.ones(n)
    w = validate.as_weights(weights, n, error=SecAggError).numpy()
    return w / w.max()


def simulated_dropouts(
    n: int, dropout: float, active: bool, rng: np.random.Generator | None, phase: str | None = None
) -> dict[int, str]:
    """Each of n clients drops with probability ``dropout`` at a uniformly chosen phase (``rng`` only
    simulates the failures; the consistency check is a phase only in the active variant).

    With ``phase`` (a protocol's ``drop_phase``, set by ``fedsec audit`` for its worst case), exactly
    ``ceil(dropout n)`` clients chosen with ``rng`` drop at that phase."""
    if dropout == 0.0:
        return {}
    g = rng if rng is not None else np.random.default_rng()
    if phase is not None:
        if phase not in PHASES:
            raise SecAggError(f"drop_phase: got {phase!r}; want one of {PHASES}")
        hit = g.choice(n, size=math.ceil(dropout * n), replace=False)
        return {int(i): phase for i in hit}
    phases = [p for p in PHASES if active or p != "consistency_check"]
    hit = np.flatnonzero(g.random(n) < dropout)
    return {int(i): phases[int(g.integers(len(phases)))] for i in hit}


def survivor_mean(
    total: np.ndarray, w: np.ndarray, survivors: Sequence[int], device: torch.device
) -> torch.Tensor:
    """The released mean ``total / sum_{u in survivors} w_u`` as float32 on ``device``."""
    denom = float(w[list(survivors)].sum())
    if denom <= 0:
        raise SecAggError("weights: got zero total weight over the survivors; want > 0")
    return torch.from_numpy((total / denom).astype(np.float32)).to(device)
