"""The public statement of a norm-bound proof: parameters, context and the generator families.

:class:`NormBoundParams` fixes ``(d, b, B)``, the construction (exact per-entry range proof or K
random-projection checks, :mod:`projection`) and every derived size; :class:`ProofContext` what a proof is
bound to besides the statement. The proof itself is :mod:`normproof`, its verification :mod:`verifier`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secagg.normbound import ipa, projection
from secagg.normbound.errors import ParameterError
from secagg.normbound.generators import DEFAULT_LABEL, generators
from secagg.normbound.group import POINT_BYTES, SCALAR_BYTES, L
from secagg.normbound.pedersen import CommitmentKey


@dataclass(frozen=True)
class NormBoundParams:
    """Public parameters of the norm-bound statement.

    Attributes:
        d: vector length (>= 1).
        entry_bits: b; in the exact construction every entry must lie in [-2^(b-1), 2^(b-1));
            2 <= b <= 32.
        bound: B, the bound on the integer squared L2 norm (>= 0).
        label: generator setup label (shared by every client and the server).
        exact: True: range proof on every entry (``d b`` bit wires); False: K random-projection checks
            (:mod:`projection`, ``K bp`` bit wires, soundness error 2^-K); None: whichever has fewer wires.
        checks: K, the number of projection checks (1 to 256; unused when exact).

    Raises:
        ParameterError: out-of-range values, or ``d 4^(b-1) + 2^bs >= l`` (exact) or ``d 4^bp + 2^bs >= l``
            (projections): the norm could wrap mod l.
    """

    d: int
    entry_bits: int
    bound: int
    label: str = DEFAULT_LABEL
    exact: bool | None = None
    checks: int = projection.DEFAULT_CHECKS

    def __post_init__(self) -> None:
        for name in ("d", "entry_bits", "bound"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool):
                raise ParameterError(f"NormBoundParams.{name}: got {v!r}; want an int")
        if self.d < 1:
            raise ParameterError(f"NormBoundParams.d: got {self.d}; want >= 1")
        if not 2 <= self.entry_bits <= 32:
            raise ParameterError(f"NormBoundParams.entry_bits: got {self.entry_bits}; want in [2, 32]")
        if self.bound < 0:
            raise ParameterError(f"NormBoundParams.bound: got {self.bound}; want >= 0")
        if not (self.exact is None or isinstance(self.exact, bool)):
            raise ParameterError(f"NormBoundParams.exact: got {self.exact!r}; want True, False or None")
        if isinstance(self.checks, bool) or not isinstance(self.checks, int) or not 1 <= self.checks <= 256:
            raise ParameterError(f"NormBoundParams.checks: got {self.checks!r}; want an int in [1, 256]")
        worst = self.d * 4 ** (self.group_bits - (1 if self.is_exact else 0)) + 2**self.slack_bits
        if worst >= L:
            raise ParameterError(
                f"NormBoundParams: got d 4^(b-1) + 2^bs = 2^{worst.bit_length() - 1}.. ; want < l ~ 2^252 "
                "(lower entry_bits or the bound)"
            )
        if not isinstance(self.label, str) or not self.label:
            raise ParameterError(f"NormBoundParams.label: got {self.label!r}; want a non-empty str")

    @property
    def slack_bits(self) -> int:
        """bs: bits of the slack B - s (B < 2^bs)."""
        return max(1, int(self.bound).bit_length())

    @property
    def offset(self) -> int:
        """2^(b-1): entries are shifted by it into [0, 2^b)."""
        return 1 << (self.entry_bits - 1)

    @property
    def is_exact(self) -> bool:
        """Whether the exact construction is used (``exact=None``: the one with fewer bit wires)."""
        if self.exact is None:
            return self.d * self.entry_bits <= self.checks * projection.bits(self.d, self.bound)
        return self.exact

    @property
    def groups(self) -> int:
        """Range-proven values: the d entries (exact) or the K projections."""
        return self.d if self.is_exact else self.checks

    @property
    def group_bits(self) -> int:
        """Bits per range-proven value: b (exact) or bp = bitlen(2 isqrt(d B))."""
        return self.entry_bits if self.is_exact else projection.bits(self.d, self.bound)

    @property
    def group_offset(self) -> int:
        """Shift of each range-proven value into [0, 2^bits): 2^(b-1) (exact) or T = isqrt(d B)."""
        return self.offset if self.is_exact else projection.offset(self.d, self.bound)

    @property
    def n_bits(self) -> int:
        """N = groups bits + bs (d b + bs exact)."""
        return self.groups * self.group_bits + self.slack_bits

    @property
    def n(self) -> int:
        """Length of the inner-product vectors, N + d."""
        return self.n_bits + self.d

    @property
    def key(self) -> CommitmentKey:
        """The commitment key of the updates (shared with the secure-aggregation check)."""
        return CommitmentKey(self.d, self.label)

    @property
    def proof_size(self) -> int:
        """Serialized proof size in bytes."""
        return 1 + 4 * POINT_BYTES + 3 * SCALAR_BYTES + ipa.IPAProof.size(self.n)

    def setup(self) -> None:
        """Derive (or load from the disk cache) every generator family of the proofs, e.g. before
        forking workers that then share them."""
        _gens(self)

    def scalar_mults(self) -> dict[str, int]:
        """Scalar multiplications each step makes at most (the floor the benchmark compares with; a zero
        or unit scalar, probability ~1/l, is skipped). ``commit`` uses additions for the small entries."""
        n = self.n
        k = ipa.rounds(n)
        fold = 0
        lr = 0
        m = n
        for _ in range(k):
            half = (m + 1) // 2
            hi = m - half
            lr += 2 * (2 * hi + 1)  # L and R: <a, G>, <b, H'> and the U term
            if half > 1:  # G' = G_lo + x G_hi; H* likewise (the y^-i scaling is carried as scalars)
                fold += 2 * hi
            m = half
        # prove: S (2n + 1), alpha h, T1 and T2 (4), w_U U, then the inner-product argument; the x part
        # of A and the bits use additions only. verify: one MSM over every generator and proof point.
        return {"commit": 1, "prove": 2 * n + 1 + 1 + 4 + 1 + fold + lr, "verify": 2 * n + 2 * k + 10}


@dataclass(frozen=True)
class ProofContext:
    """What a proof is bound to besides the statement: session id, round number and client id."""

    session: bytes
    round: int
    client: int

    def __post_init__(self) -> None:
        if not isinstance(self.session, bytes) or not 1 <= len(self.session) <= 64:
            raise ParameterError(f"ProofContext.session: got {self.session!r}; want 1 to 64 bytes")
        for name in ("round", "client"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32:
                raise ParameterError(f"ProofContext.{name}: got {v!r}; want an int in [0, 2^32)")


@dataclass(frozen=True)
class _Gens:
    G_N: list[bytes]
    H_N: list[bytes]
    G: list[bytes]
    H_d: list[bytes]
    h: bytes
    g: bytes
    U: bytes


def _gens(params: NormBoundParams) -> _Gens:
    key = params.key
    lab = params.label
    return _Gens(
        G_N=generators(lab, "bits/G", params.n_bits),
        H_N=generators(lab, "bits/H", params.n_bits),
        G=key.G,
        H_d=generators(lab, "update/H", params.d),
        h=key.h,
        g=generators(lab, "value/g", 1)[0],
        U=generators(lab, "ipa/U", 1)[0],
    )
