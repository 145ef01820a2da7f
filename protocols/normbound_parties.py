"""The parties of ``secagg_normbound`` (see :mod:`protocols.secagg_normbound` for the round, its
guarantees and its leakage): the frozen configuration, the client that encodes, commits and proves,
the server that verifies proofs and checks the link between the commitments and the unmasked sum, and
the fixed-point and blinding helpers both use.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from secagg.channel import reason_of
from secagg.encoding import FixedPoint
from secagg.errors import ProtocolAbort, SecAggError
from secagg.normbound import (
    LinkCheckFailed,
    MalformedProof,
    NormBoundParams,
    ProofContext,
    WitnessError,
    combine,
    forge_proof,
    prove,
    verify_batch,
)
from secagg.normbound.generators import DEFAULT_LABEL
from secagg.normbound.group import L, decode_point, random_scalar

BLIND_BITS = 253  # r < l < 2^253


@dataclass(frozen=True)
class NormBoundConfig:
    """Configuration of :class:`SecAggNormBound` (validated on construction).

    Attributes:
        bound: L2 bound on a client's float update (> 0); proven on the encoding as ``floor((bound s)^2)``.
        clip: per-coordinate clip of the encoding (default ``bound``: no update within the L2 bound is
            changed by it); it fixes the entry bits ``b = bitlen(ceil(clip s)) + 1`` of the range proof.
        frac_bits: fixed-point fractional bits f, ``s = 2^f``.
        bits: ring Z_{2^bits} of the masking protocol (<= 62).
        t: Shamir threshold; ``None``: ``m // 2 + 1`` of the m accepted clients, raised to
            ``(m + c) // 2 + 1`` with c = ``floor(0.2 m)`` colluders when ``active``.
        active: consistency check with signatures on the survivor list.
        dropout: probability that an accepted client drops during masking (simulated with ``rng``).
        verify_fraction: fraction of clients whose proof the server checks, in (0, 1].
        label: generator setup label.
        blame: after a failed link check, name and exclude the clients responsible (identifiable abort)
            instead of aborting.
        workers: processes that make the clients' proofs in the simulation; ``None``: one per CPU core
            when d >= 2,000 (below, the pool costs more than it saves), 1: in-process.
    """

    bound: float
    clip: float | None = None
    frac_bits: int = 8
    bits: int = 48
    t: int | None = None
    active: bool = False
    dropout: float = 0.0
    verify_fraction: float = 1.0
    label: str = DEFAULT_LABEL
    blame: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("bound", "clip"):
            v = getattr(self, name)
            if v is None and name == "clip":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise SecAggError(f"{name}: got {v!r}; want a finite float > 0")
        if (
            isinstance(self.frac_bits, bool)
            or not isinstance(self.frac_bits, int)
            or not 0 <= self.frac_bits <= 24
        ):
            raise SecAggError(f"frac_bits: got {self.frac_bits!r}; want an int in [0, 24]")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 16 <= self.bits <= 62:
            raise SecAggError(f"bits: got {self.bits!r}; want an int in [16, 62]")
        if self.t is not None and (isinstance(self.t, bool) or not isinstance(self.t, int) or self.t < 1):
            raise SecAggError(f"t: got {self.t!r}; want None or an int >= 1")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise SecAggError(f"dropout: got {self.dropout!r}; want a probability in [0, 1)")
        vf = self.verify_fraction
        if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0.0 < vf <= 1.0:
            raise SecAggError(f"verify_fraction: got {vf!r}; want a float in (0, 1]")
        wk = self.workers
        if wk is not None and (isinstance(wk, bool) or not isinstance(wk, int) or wk < 1):
            raise SecAggError(f"workers: got {wk!r}; want None or an int >= 1")
        if self.entry_bits > 32:
            raise SecAggError(
                f"entry bits: got {self.entry_bits} from clip={self.entry_clip}, "
                f"frac_bits={self.frac_bits}; want <= 32 (lower frac_bits or clip)"
            )

    @property
    def entry_clip(self) -> float:
        return float(self.bound if self.clip is None else self.clip)

    @property
    def encoding(self) -> FixedPoint:
        return FixedPoint(bits=self.bits, clip=self.entry_clip, frac_bits=self.frac_bits)

    @property
    def scale(self) -> float:
        return 2.0**self.frac_bits

    @property
    def entry_bits(self) -> int:
        """b = bitlen(ceil(clip 2^f)) + 1: every encoded entry lies in [-2^(b-1), 2^(b-1))."""
        return math.ceil(self.entry_clip * self.scale).bit_length() + 1

    @property
    def int_bound(self) -> int:
        """B = floor((bound 2^f)^2), the proven bound on the encoded squared norm."""
        return math.floor((self.bound * self.scale) ** 2)

    def params(self, d: int) -> NormBoundParams:
        return NormBoundParams(d=d, entry_bits=self.entry_bits, bound=self.int_bound, label=self.label)

    def limb_bits(self, n: int) -> int:
        """w: bits per limb of the blinding factor, so that n limbs sum below 2^(bits-1)."""
        w = min(32, self.bits - 2 - int(n).bit_length())
        if w < 8:
            raise SecAggError(f"bits: got {self.bits} for n={n}; want >= {10 + int(n).bit_length()}")
        return w


def detection_probability(clients: int, checked: int, cheaters: int) -> float:
    """P(at least one of ``cheaters`` is among ``checked`` clients drawn uniformly without replacement
    from ``clients``) = 1 - C(clients - cheaters, checked) / C(clients, checked)."""
    if not 0 <= cheaters <= clients or not 0 <= checked <= clients:
        raise SecAggError(
            f"detection_probability: got clients={clients}, checked={checked}, cheaters={cheaters}; "
            "want 0 <= checked, cheaters <= clients"
        )
    return 1.0 - math.comb(clients - cheaters, checked) / math.comb(clients, checked)


def blinding_limbs(r: int, w: int) -> np.ndarray:
    """r (< 2^253) as ceil(253 / w) little-endian limbs of w bits (uint64)."""
    k = -(-BLIND_BITS // w)
    return np.array([(r >> (w * j)) & ((1 << w) - 1) for j in range(k)], dtype=np.uint64)


def blinding_from_limb_sums(sums: np.ndarray, w: int) -> int:
    """sum_j sums_j 2^(w j) mod l (exact: the limb sums are integers, not ring residues)."""
    return sum(int(s) << (w * j) for j, s in enumerate(sums)) % L


def encode_within_bound(cfg: NormBoundConfig, u: np.ndarray, n: int, tries: int = 4) -> np.ndarray:
    """Integer encoding ``q`` of ``u`` (see step 1 of the module docstring); ``||q||^2 <= B`` whenever
    ``||u|| <= bound``."""
    fp = cfg.encoding
    B = cfg.int_bound
    for _ in range(tries):
        q = fp.to_signed(fp.encode(u, n_summands=n))
        if int(np.dot(q, q)) <= B:
            return q
    m = fp.max_abs(cfg.frac_bits)
    return np.clip(np.trunc(np.clip(u, -cfg.entry_clip, cfg.entry_clip) * cfg.scale), -m, m).astype(np.int64)


def make_commit_message(params: NormBoundParams, q: np.ndarray, context: ProofContext) -> tuple[int, bytes]:
    """``(r, C || proof)`` for a fresh blinding r: the client's work, as a pure function that a
    process pool can run (a forged proof when ``q`` violates the statement)."""
    q = np.asarray(q, dtype=np.int64)
    r = random_scalar()
    C = params.key.commit(q, r)
    try:
        proof = prove(params, q, r, C, context)
    except WitnessError:
        proof = forge_proof(params, q, r, C, context)
    return r, C + proof.to_bytes()


def _timed_commit(job: tuple[NormBoundParams, np.ndarray, ProofContext]) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    r, message = make_commit_message(*job)
    return r, message, time.perf_counter() - t0


class NormBoundClient:
    """Client side: commitment and proof, then the ring vector it masks."""

    def __init__(self, cid: int, params: NormBoundParams, context: ProofContext) -> None:
        self.cid, self.params, self.context = cid, params, context
        self._q: np.ndarray | None = None
        self._r = 0
        self.masked_q = np.zeros(0, dtype=np.int64)

    def commit_message(self, q: np.ndarray) -> bytes:
        """``C || proof``; a client whose ``q`` violates the statement sends a forged proof instead."""
        r, message = make_commit_message(self.params, q, self.context)
        self.adopt(q, r)
        return message

    def adopt(self, q: np.ndarray, r: int) -> None:
        """Take ``(q, r)`` of a commitment message made elsewhere (the simulation's process pool)."""
        self._q = np.asarray(q, dtype=np.int64)
        self._r = r

    def masked_input(self, fp: FixedPoint, w: int, substitute: np.ndarray | None = None) -> np.ndarray:
        """Ring vector ``[q mod 2^bits ; limbs(r)]``; ``substitute`` masks another vector (fault)."""
        if self._q is None:
            raise SecAggError("masked_input: got no commitment yet; want commit_message first")
        q = self._q if substitute is None else np.asarray(substitute, dtype=np.int64)
        self.masked_q = q
        return np.concatenate([q.astype(np.uint64) & fp.mask, blinding_limbs(self._r, w)])

    def masked_integers(self, w: int) -> np.ndarray:
        """``[q ; limbs(r)]`` as integers (object), with the ``q`` it masked."""
        return np.concatenate([self.masked_q.astype(object), blinding_limbs(self._r, w).astype(object)])

    def wrong_pad_commitment(self) -> bytes:
        """Fault: the point a cheater adds to its pad commitments -- ``P(masked - committed)``, which
        hides a substituted vector from its per-client check, or a nonzero point if it masked honestly."""
        assert self._q is not None
        diff = self.masked_q - self._q
        if not diff.any():
            diff = np.eye(1, len(diff), dtype=np.int64)[0]
        return self.params.key.commit(diff, 0)


@dataclass
class NormBoundServer:
    """Server side: proof verification before masking, link check after unmasking."""

    params: NormBoundParams
    session: bytes
    round: int
    commitments: dict[int, bytes] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)

    pending: dict[int, bytes] = field(default_factory=dict)

    def receive(self, cid: int, message: bytes) -> bool:
        """Decode ``C || proof`` (the point is validated); record a rejection and return False."""
        try:
            if len(message) != 32 + self.params.proof_size:
                raise MalformedProof(
                    f"commitment message: got {len(message)} bytes; want {32 + self.params.proof_size}"
                )
            C = decode_point(message[:32], "commitment C")
        except ProtocolAbort as e:
            self.rejected[cid] = reason_of(e)
            return False
        self.commitments[cid] = C
        self.pending[cid] = message[32:]
        return True

    def verify(self, checked: set[int]) -> list[int]:
        """Verify the proofs of the received clients in ``checked`` in one batch (the others pass
        unverified); drop and record the rejected ones; return the accepted ids."""
        ids = sorted(i for i in self.pending if i in checked)
        items = [
            (self.commitments[i], self.pending[i], ProofContext(self.session, self.round, i)) for i in ids
        ]
        for i, err in zip(ids, verify_batch(self.params, items)):
            if err is not None:
                self.rejected[i] = f"{type(err).__name__}: {err}"
                del self.commitments[i]
        self.pending.clear()
        return sorted(self.commitments)

    def link_check(self, survivors: list[int], q_sum: np.ndarray, blind_sums: np.ndarray, w: int) -> None:
        """Raise :class:`LinkCheckFailed` unless ``sum C_i = <q_sum, G> + R h`` over ``survivors``."""
        R = blinding_from_limb_sums(blind_sums, w)
        lhs = combine([self.commitments[i] for i in survivors])
        if lhs != self.params.key.commit(np.asarray(q_sum, dtype=np.int64), R):
            raise LinkCheckFailed(
                f"link check over survivors {survivors}: got an unmasked sum that does not open the sum of "
                "their commitments; want sum_i C_i = <sum_i q_i, G> + (sum_i r_i) h (a client masked a "
                "vector other than the one it committed to)"
            )
