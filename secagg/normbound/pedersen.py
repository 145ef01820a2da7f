"""Pedersen vector commitments on Ed25519.

For a key of dimension d with generators ``G_1..G_d`` and ``h`` (all from :mod:`generators`, no known
discrete-log relations), the commitment to an integer vector ``x`` with blinding scalar ``r`` is

    C = sum_i x_i G_i + r h          (x_i and r taken modulo l).

Hiding: perfect when ``r`` is uniform mod l. Binding: computational, under the discrete-log assumption
in the prime-order subgroup (Pedersen, CRYPTO 1991). Additively homomorphic:
``C(x, r) + C(x', r') = C(x + x', r + r')``, which is what lets a server check a securely aggregated sum
against the product (here: sum) of the clients' commitments.

Committing to small integers (fixed-point updates) uses point additions only (:func:`group.msm_small`).

>>> key = CommitmentKey(d=2)
>>> c1 = key.commit(np.array([1, -2]), 5); c2 = key.commit(np.array([3, 4]), 7)
>>> key.opens(add(c1, c2), np.array([4, 2]), 12)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.normbound.errors import ParameterError
from secagg.normbound.generators import DEFAULT_LABEL, generators
from secagg.normbound.group import IDENTITY, add, msm, msm_small, smul, sum_points

__all__ = ["CommitmentKey", "add", "sum_points"]

#: Family names of the update generators and of the blinding generator.
UPDATE_FAMILY = "update/G"
BLIND_FAMILY = "blind/h"


@dataclass(frozen=True)
class CommitmentKey:
    """Public commitment key of dimension ``d`` under the setup ``label``.

    Attributes:
        d: vector length (>= 1).
        label: setup label; different labels give independent keys.
    """

    d: int
    label: str = DEFAULT_LABEL

    def __post_init__(self) -> None:
        if not isinstance(self.d, int) or isinstance(self.d, bool) or self.d < 1:
            raise ParameterError(f"CommitmentKey.d: got {self.d!r}; want an int >= 1")
        if not isinstance(self.label, str) or not self.label:
            raise ParameterError(f"CommitmentKey.label: got {self.label!r}; want a non-empty str")

    @property
    def G(self) -> list[bytes]:
        """The d update generators."""
        return generators(self.label, UPDATE_FAMILY, self.d)

    @property
    def h(self) -> bytes:
        """The blinding generator."""
        return generators(self.label, BLIND_FAMILY, 1)[0]

    def _vector(self, x: np.ndarray | Sequence[int]) -> np.ndarray:
        v = np.asarray(x)
        if v.shape != (self.d,):
            raise ParameterError(f"commit: got a vector of shape {v.shape}; want ({self.d},)")
        if v.dtype.kind not in "iu" and v.dtype != object:
            raise ParameterError(f"commit: got dtype {v.dtype}; want integers")
        return v

    def commit(self, x: np.ndarray | Sequence[int], r: int) -> bytes:
        """C = <x, G> + r h."""
        v = self._vector(x)
        if v.dtype == object:
            body = msm([int(t) for t in v], self.G)
        else:
            body = msm_small(v.astype(np.int64), self.G)
        return add(body, smul(r, self.h))

    def opens(self, c: bytes, x: np.ndarray | Sequence[int], r: int) -> bool:
        """Whether ``c`` is the commitment to ``x`` with blinding ``r``."""
        return self.commit(x, r) == c


def combine(commitments: Sequence[bytes]) -> bytes:
    """The commitment to the sum: the group sum of ``commitments`` (identity for none)."""
    return sum_points(commitments) if commitments else IDENTITY
