"""Faults: updates a broken or malicious client may send that a rule must survive.

``LargeNorm`` sends huge but finite vectors; ``NonFinite`` sends NaN or infinite entries. Robust rules
must exclude non-finite rows (counting them as Byzantine) and bound the influence of huge ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from robust.attacks.base import ATTACKS, Attack, AttackContext, check_strength
from robust.errors import ParameterError


@dataclass
class LargeNorm(Attack):
    """Each Byzantine row is its own gradient reversed and rescaled to L2 norm ``norm``.

    ``byz_i = -norm * own_i / ||own_i||`` (a zero row uses the direction ``-(1, ..., 1) / sqrt(d)``).
    The default ``1e12`` stays finite in float32, including its squared norm (1e24 < 3.4e38), so a rule
    sees a finite outlier rather than an overflow.
    """

    norm: float = 1e12

    name: ClassVar[str] = "large_norm"
    strength: ClassVar[str | None] = "norm"
    default_grid: ClassVar[tuple[float, ...]] = (1e2, 1e4, 1e6, 1e9, 1e12)

    def __post_init__(self) -> None:
        check_strength("norm", self.norm)

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        d = own.shape[1]
        norms = torch.linalg.vector_norm(own, dim=1, keepdim=True)
        zero = norms == 0
        scale = torch.where(zero, torch.zeros_like(norms), -float(self.norm) / norms.clamp_min(1e-30))
        out = own * scale
        out[zero.squeeze(1)] = -float(self.norm) / math.sqrt(d)
        return out


_KINDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass
class NonFinite(Attack):
    """Each Byzantine row carries non-finite entries: NaN, +Inf or -Inf (``kind``).

    ``partial=False`` fills the whole row; ``partial=True`` replaces only the first coordinate of the
    client's own gradient (a single bad entry that a row-norm check would still catch but a careless
    coordinate-wise rule might propagate).
    """

    kind: str = "nan"
    partial: bool = False

    name: ClassVar[str] = "non_finite"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ParameterError(f"NonFinite kind must be one of {sorted(_KINDS)}; got kind={self.kind!r}")
        if not isinstance(self.partial, bool):
            raise ParameterError(f"NonFinite partial must be a bool; got {type(self.partial).__name__}")

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        value = _KINDS[self.kind]
        if not self.partial:
            return torch.full_like(own, value)
        out = own.clone()
        out[:, 0] = value
        return out


for _cls in (LargeNorm, NonFinite):
    ATTACKS.register(_cls.name)(_cls)
