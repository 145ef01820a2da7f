"""PINE's validity circuit: an exact L2-norm bound on secret-shared fixed-point vectors.

Rothblum, Omri, Chen, Talwar, "PINE: Efficient Norm-Bound Verification for Secret-Shared Vectors"
(arXiv 2311.10237); draft-chen-cfrg-vdaf-pine. Here on the draft-20 FLP (Lagrange basis) of flp.py, so
the proofs are not byte-compatible with PINE's own (draft-11) vectors; the parameters and the
measurement layout are PINE's.

Encoding (f fractional bits): x_i = round(v_i 2^f) as a field element (negatives as p - |x_i|), the
bound B_enc = floor(B 2^f). With n_B = bits(B_enc^2) and wr = next_power_of_2(ceil(alpha B_enc) + 1),
n_w = bits(2 wr - 1), the client sends

    x (d) | bits of v = sum x_i^2 (n_B) | bits of u = B_enc^2 - v (n_B) | r times: bits of
    w_k = <z_k, x> + wr - 1 (n_w), pass bit g_k

and the servers append their shares of the r dot products <z_k, x> (linear, so computed on shares)
with z_k in {-1, 0, 1}^d from an XOF seeded by the shares of x (P(-1) = P(1) = 1/4, two bits an entry:
00 -> -1, 01 / 10 -> 0, 11 -> 1). The circuit's outputs, reduced by the FLP's query randomness:

    norm         v - sum_i x_i^2 = 0 and v + u - B_enc^2 = 0, so 0 <= sum x_i^2 <= B_enc^2 mod p
    bit check    sum_l rho_l^(j+1) b_l (b_l - 1) = 0 over all sent bits (as SumVec's)
    wraparound   sum_k rho^(k+1) g_k (<z_k, x> - (w_k - wr + 1)) = 0 and sum_k g_k = r_pass.

As in PINE's reference, two circuits over the same measurement: ``PineNormValid`` (the norm equality,
ParallelSum(PolyEval(x^2), c1), no joint randomness: one proof) and ``PineValid`` (the rest, with
ParallelSum(Mul, c2) over the bit pairs and the pairs (rho^(k+1)(<z_k, x> - w_k + wr - 1), g_k), joint
randomness: Field64 needs >= 3 proofs by draft-20's rule, Field128 one). A vector whose true squared
norm wraps p has |<z_k, x>| > wr with probability >= 1/2 per check, so it cannot pass r_pass = r checks.
Field conditions (PINE, Figure 1 and Lemma 3.3): p > 3 B_enc^2 + 2, p >= 2600 wr, wr^2 <= 4000 p,
p >= 2 r.

Parameters (defaults B = 1, f = 15, alpha = 8.7, r = r_pass = 100, Field64): B_enc^2 = 2^30 (n_B = 31),
wr = 2^19 (n_w = 20), 2,162 bit-checked elements. Errors: a vector whose squared norm wraps p passes
all r checks with probability <= 2^-r; an honest client fails a check only when |<z_k, x>| > alpha
B_enc, i.e. beyond alpha sqrt(2) = 12.3 standard deviations of <z_k, x> (variance ||x||^2 / 2), and
then re-shards. Each FLP proof of ``PineValid`` is unsound with probability at most about
(c2 + r + 2 P2) / p (the bit check's degree c2 in its random point, the wraparound combination's
degree r, the gadget test 2 (P2 - 1) / (p - P2)), about 2^-56 for the defaults (c2 = 37, P2 = 64,
any d); independent proofs
multiply, but Fiat-Shamir lets a client regrind the joint randomness offline, which is why draft-20
asks for >= 3 proofs in Field64 (its "Choosing FLP Parameters").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from secagg.vdaf._blas import one_blas_thread
from secagg.vdaf.circuits import bit_check_wires
from secagg.vdaf.errors import VdafMeasurementError, VdafParameterError
from secagg.vdaf.field import Field, Field64, Vec, next_power_of_2
from secagg.vdaf.flp import Mul, ParallelSum, PolyEval, Valid, powers_of

ALPHA = 8.7
NUM_WR_CHECKS = 100


@dataclass(frozen=True)
class PineParams:
    """PINE's public parameters; a chunk length of 0 picks the one with the shortest proof + verifier."""

    dimension: int
    l2_norm_bound: float = 1.0
    num_frac_bits: int = 15
    num_wr_checks: int = NUM_WR_CHECKS
    num_wr_successes: int = -1  # -1: all checks must pass
    alpha: float = ALPHA
    chunk_length: int = 0
    chunk_length_norm: int = 0
    field: type[Field] = field(default=Field64)

    def __post_init__(self) -> None:
        if self.dimension < 1 or self.num_wr_checks < 1:
            raise VdafParameterError(f"got d = {self.dimension}, r = {self.num_wr_checks}; want both >= 1")
        if not 0 <= self.num_frac_bits < 64:
            raise VdafParameterError(f"got f = {self.num_frac_bits}; want 0 <= f < 64")
        if not (math.isfinite(self.l2_norm_bound) and self.l2_norm_bound > 0 and self.alpha > 0):
            raise VdafParameterError(f"got B = {self.l2_norm_bound}, alpha = {self.alpha}; want both > 0")
        if self.num_wr_successes == -1:
            object.__setattr__(self, "num_wr_successes", self.num_wr_checks)
        if not 1 <= self.num_wr_successes <= self.num_wr_checks:
            raise VdafParameterError(
                f"got {self.num_wr_successes} required passes; want 1..{self.num_wr_checks}"
            )
        p, b = self.field.MODULUS, self.bound_enc
        if b < 1:
            raise VdafParameterError(f"got B 2^f = {self.l2_norm_bound * 2**self.num_frac_bits}; want >= 1")
        if not p > 3 * b * b + 2:
            raise VdafParameterError(
                f"got B_enc^2 = {b * b} (B = {self.l2_norm_bound}, f = {self.num_frac_bits}); "
                f"want 3 B_enc^2 + 2 < p = {p} ({self.field.NAME})"
            )
        wr = self.wr_bound
        if not (p >= 2600 * wr and wr * wr <= 4000 * p and p >= 2 * self.num_wr_checks):
            raise VdafParameterError(f"got wr = {wr}, r = {self.num_wr_checks}; want p >= max(2600 wr, 2 r)")

    @property
    def bound_enc(self) -> int:
        """B_enc = floor(B 2^f)."""
        return math.floor(self.l2_norm_bound * 2**self.num_frac_bits)

    @property
    def wr_bound(self) -> int:
        """wr = next_power_of_2(ceil(alpha B_enc) + 1)."""
        return next_power_of_2(math.ceil(self.alpha * self.bound_enc) + 1)

    @property
    def norm_bits(self) -> int:
        return (self.bound_enc**2).bit_length()

    @property
    def wr_bits(self) -> int:
        return (2 * self.wr_bound - 1).bit_length()

    @property
    def bit_checked_len(self) -> int:
        return 2 * self.norm_bits + (self.wr_bits + 1) * self.num_wr_checks

    @property
    def sent_len(self) -> int:
        """Elements the client sends: x, the norm bits, the wraparound bits and pass bits."""
        return self.dimension + self.bit_checked_len


def encode_fixed_point(params: PineParams, values: Sequence[float] | np.ndarray) -> Vec:
    """round(v 2^f) per entry (half to even) as int64; refuses NaN, infinities, subnormals, 2^53."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (params.dimension,):
        raise VdafMeasurementError(f"got shape {arr.shape}; want ({params.dimension},)")
    tiny = (arr != 0) & (np.abs(arr) < np.finfo(np.float64).tiny)
    if not np.all(np.isfinite(arr)) or np.any(tiny):
        raise VdafMeasurementError("got NaN, an infinity or a subnormal; want finite normal floats")
    scaled = np.rint(np.ldexp(arr, params.num_frac_bits))
    if np.any(np.abs(scaled) >= 2.0**53):
        raise VdafMeasurementError(f"got an entry of {np.max(np.abs(arr))}; want |v| 2^f < 2^53")
    return scaled.astype(np.int64)


def decode_fixed_point(params: PineParams, field_values: Sequence[int]) -> list[float]:
    """Field elements above p / 2 are negative; divide by 2^f."""
    p = params.field.MODULUS
    return [(v - p if v > p // 2 else v) / 2**params.num_frac_bits for v in field_values]


def _wr_table() -> Vec:
    """Byte -> its four entries (low bits first): 00 -> -1, 01 / 10 -> 0, 11 -> 1."""
    pairs = (np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 3
    return ((pairs == 3).astype(np.float64) - (pairs == 0).astype(np.float64)).astype(np.float64)


_WR_TABLE = _wr_table()
_Z_BLOCK = 2**17  # packed bytes decoded at a time by signed_dot (times 32 B of float64)


def wr_bytes(raw: bytes, checks: int, dim: int) -> Vec:
    """The r x ceil(d / 4) XOF bytes that pack z (four entries a byte): :func:`signed_dot` decodes them
    a block of rows at a time, so the r x d float64 matrix is never written out whole."""
    per = -(-dim // 4)
    if len(raw) != checks * per:
        raise VdafParameterError(f"got {len(raw)} bytes; want {checks * per}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(checks, per)


def wr_vectors(raw: bytes, checks: int, dim: int) -> Vec:
    """The r x d matrix z in {-1, 0, 1} (float64) from ceil(d / 4) XOF bytes per check."""
    b = wr_bytes(raw, checks, dim)
    return np.take(_WR_TABLE, b, axis=0).reshape(checks, 4 * b.shape[1])[:, :dim]


def _z_dot(z: Vec, cols: np.ndarray) -> np.ndarray:
    """z @ cols in float64 (exact: integer sums < 2^53); z float64 (r, d) or packed bytes (r, ceil(d / 4))."""
    d = cols.shape[0]
    with one_blas_thread():
        if z.dtype != np.uint8:
            return np.asarray(z, dtype=np.float64) @ cols
        per = z.shape[1]
        padded = np.zeros((4 * per, cols.shape[1]))
        padded[:d] = cols
        out = np.empty((z.shape[0], cols.shape[1]))
        step = max(1, _Z_BLOCK // per)  # blocks of about 4 MB of decoded z: they stay in cache
        for k in range(0, z.shape[0], step):
            block = np.take(_WR_TABLE, z[k : k + step], axis=0).reshape(-1, 4 * per)
            out[k : k + step] = block @ padded
        return out


def signed_dot(f: type[Field], z: Vec, x: Vec) -> Vec:
    """<z_k, x> mod p for every row of z in {-1, 0, 1} (exact, vectorized; z as from :func:`wr_vectors`
    or packed as from :func:`wr_bytes`).

    Field64: x = hi 2^32 + lo with 32-bit halves; each half's dot product is below d 2^32 < 2^53 in
    absolute value for d < 2^21, hence exact in float64 (BLAS), then hi 2^32 + lo is reduced mod p."""
    if f is Field64 and x.shape[0] < 2**21:
        halves = np.stack([x & np.uint64(0xFFFFFFFF), x >> np.uint64(32)], axis=1).astype(np.float64)
        s = _z_dot(z, halves)  # one pass over z
        return f.arr([int(h) * 2**32 + int(lo) for lo, h in s])
    if z.dtype == np.uint8:
        z = np.take(_WR_TABLE, z, axis=0).reshape(z.shape[0], -1)[:, : x.shape[0]]
    return f.arr((z.astype(np.int64).astype(object) @ np.asarray(x, dtype=object)) % f.MODULUS)


def _bits(f: type[Field], values: Sequence[int], n: int) -> Vec:
    v = np.array([int(x) for x in values], dtype=object)
    if len(v) and (min(v) < 0 or max(v) >= 2**n):
        raise VdafMeasurementError(f"got a value outside [0, 2^{n}); want it inside")
    return f.arr([(int(x) >> i) & 1 for x in v for i in range(n)])


def best_chunk(groups: Sequence[int], arity: int) -> int:
    """The chunk c minimizing proof + verifier length, (A c + 2 P - 1) + (A c + 2), for ParallelSum over
    ``groups`` of sub-circuit calls (each padded to whole chunks), sub-circuit arity A, P the wire length."""
    return _best_chunk(tuple(groups), arity)


@functools.lru_cache(maxsize=64)
def _best_chunk(groups: tuple[int, ...], arity: int) -> int:
    def cost(c: int) -> int:
        calls = sum(-(-g // c) for g in groups)
        return 2 * arity * c + 2 * next_power_of_2(1 + calls) + 1

    return min(range(1, max(groups) + 1), key=cost)


class PineNormValid(Valid):
    """The norm equality v - sum_i x_i^2 = 0 with ParallelSum(PolyEval(x^2), c): no joint randomness,
    so one proof is sound in Field64 (PINE's split of the circuit in two)."""

    EVAL_OUTPUT_LEN = 1
    JOINT_RAND_LEN = 0

    def __init__(self, params: PineParams) -> None:
        self.params = pp = params
        self.field = pp.field
        d = pp.dimension
        self.chunk_length = c = pp.chunk_length_norm or best_chunk([d], 1)
        self.GADGETS = [ParallelSum(PolyEval([0, 0, 1]), c)]
        self.GADGET_CALLS = [-(-d // c)]
        self.MEAS_LEN = pp.sent_len + pp.num_wr_checks
        self.OUTPUT_LEN = d
        self.pow2 = self.field.arr([1 << i for i in range(pp.norm_bits)])

    def encode(self, measurement: Sequence[float]) -> Vec:
        raise VdafParameterError("PINE encodes in two steps (encode_norm, encode_wr); use the Pine VDAF")

    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        d, c, calls = self.params.dimension, self.chunk_length, self.GADGET_CALLS[0]
        x = np.concatenate([meas[:d], self.field.zeros(calls * c - d)])
        return [x.reshape(calls, c).T]

    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        d, nb = self.params.dimension, self.params.norm_bits
        v = self.field.dot(meas[d : d + nb], self.pow2)
        return self.field.sub(v, self.field.sum(outs[0]))

    def truncate(self, meas: Vec) -> Vec:
        return meas[: self.params.dimension]

    def decode(self, output: Vec, num_measurements: int) -> list[float]:
        return decode_fixed_point(self.params, self.field.to_ints(output))


class PineValid(Valid):
    """Bit checks, the norm range check and the wraparound checks over the full measurement (sent part
    followed by the r dot products), with ParallelSum(Mul, c) and joint randomness."""

    EVAL_OUTPUT_LEN = 4

    def __init__(self, params: PineParams) -> None:
        self.params = pp = params
        self.field = pp.field
        d, r = pp.dimension, pp.num_wr_checks
        self.chunk_length = c = pp.chunk_length or best_chunk([pp.bit_checked_len, r], 2)
        self.calls_bits, self.calls_wr = -(-pp.bit_checked_len // c), -(-r // c)
        self.GADGETS = [ParallelSum(Mul(), c)]
        self.GADGET_CALLS = [self.calls_bits + self.calls_wr]
        self.MEAS_LEN = pp.sent_len + r
        self.JOINT_RAND_LEN = self.calls_bits + 1
        self.OUTPUT_LEN = d
        self.pow2 = self.field.arr([1 << i for i in range(max(pp.norm_bits, pp.wr_bits))])

    # -- client side ------------------------------------------------------------------------------------
    def encode_norm(self, x: Vec) -> Vec:
        """x (int64) as field elements, bits of v = sum x_i^2 and u = B_enc^2 - v (refused: v > B_enc^2)."""
        pp = self.params
        b2 = pp.bound_enc**2
        big = int(np.max(np.abs(x))) if x.size else 0
        sq = big * big
        if big <= pp.bound_enc:  # then x_i^2 < 2^64: exact in uint64 halves
            xs = np.abs(x).astype(np.uint64)
            sqs = xs * xs
            sq = int((sqs >> np.uint64(32)).sum(dtype=np.uint64)) * 2**32 + int(
                (sqs & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64)
            )
        if sq > b2:
            raise VdafMeasurementError(
                f"got squared norm >= {sq / 4**pp.num_frac_bits} once rounded; want <= {pp.l2_norm_bound**2}"
            )
        return np.concatenate([self.field.arr(x), _bits(self.field, [sq, b2 - sq], pp.norm_bits)])

    def encode_wr(self, x_field: Vec, z: Vec) -> tuple[Vec, Vec]:
        """(sent wraparound bits with pass bits, the r dot products); passes capped at r_pass."""
        pp, f = self.params, self.field
        dots = f.to_ints(signed_dot(f, z, x_field))
        w = [(t + pp.wr_bound - 1) % f.MODULUS for t in dots]
        passed = np.array([v <= 2 * pp.wr_bound - 1 for v in w])
        g = passed & (np.cumsum(passed) <= pp.num_wr_successes)
        if int(g.sum()) < pp.num_wr_successes:
            raise VdafMeasurementError(
                f"got {int(g.sum())} passing wraparound checks; want {pp.num_wr_successes} (re-shard)"
            )
        w_clamped = [v if ok else 0 for v, ok in zip(w, g)]  # a failed check's bits are not constrained
        bits = _bits(f, w_clamped, pp.wr_bits).reshape(pp.num_wr_checks, pp.wr_bits)
        sent = np.concatenate([bits, f.arr(g.astype(np.int64))[:, None]], axis=1).reshape(-1)
        return sent, f.arr(dots)

    def encode(self, measurement: Sequence[float]) -> Vec:
        raise VdafParameterError("PINE encodes in two steps (encode_norm, encode_wr); use the Pine VDAF")

    # -- the circuit ----------------------------------------------------------------------------------
    def _split(self, meas: Vec) -> tuple[Vec, Vec, Vec, Vec, Vec, Vec, Vec]:
        pp = self.params
        d, nb, nw, r = pp.dimension, pp.norm_bits, pp.wr_bits, pp.num_wr_checks
        x, bits, dots = meas[:d], meas[d : pp.sent_len], meas[pp.sent_len :]
        v_bits, u_bits = bits[:nb], bits[nb : 2 * nb]
        wr = bits[2 * nb :].reshape(r, nw + 1)
        return x, bits, dots, v_bits, u_bits, wr[:, :nw], wr[:, nw]

    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        f, pp, c = self.field, self.params, self.chunk_length
        _, bits, dots, _, _, w_bits, g = self._split(meas)
        bitw = bit_check_wires(f, bits, joint_rand[: self.calls_bits], c, num_shares)
        shares_inv = f.arr([pow(num_shares, f.MODULUS - 2, f.MODULUS)])
        w = f.dot(w_bits, self.pow2[: pp.wr_bits])
        claimed = f.sub(w, f.mul(f.arr([pp.wr_bound - 1]), shares_inv))
        rho = powers_of(f, joint_rand[self.calls_bits :], pp.num_wr_checks + 1)[0, 1:]
        wr = _pairs(f, f.mul(rho, f.sub(dots, claimed)), g, self.calls_wr, c)
        return [np.concatenate([bitw, wr], axis=1)]

    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        f, pp = self.field, self.params
        _, _, _, v_bits, u_bits, _, g = self._split(meas)
        o, b = outs[0], self.calls_bits
        shares_inv = f.arr([pow(num_shares, f.MODULUS - 2, f.MODULUS)])
        v = f.dot(v_bits, self.pow2[: pp.norm_bits])
        u = f.dot(u_bits, self.pow2[: pp.norm_bits])
        return np.concatenate(
            [
                f.sum(o[:b]),
                f.sub(f.add(v, u), f.mul(f.arr([pp.bound_enc**2]), shares_inv)),
                f.sum(o[b:]),
                f.sub(f.sum(g), f.mul(f.arr([pp.num_wr_successes]), shares_inv)),
            ]
        )

    def truncate(self, meas: Vec) -> Vec:
        return meas[: self.params.dimension]

    def decode(self, output: Vec, num_measurements: int) -> list[float]:
        return decode_fixed_point(self.params, self.field.to_ints(output))


def forge_norm_claim(valid: PineValid, x: Vec, claimed: int | None = None) -> Vec:
    """A malicious client's encoding: x with the bits of ``claimed`` (default sum x_i^2 mod p) as v and
    of B_enc^2 - v (mod p, cut to n_B bits) as u, whatever the true norm. The circuit rejects it
    unless the claim is true and the norm does not wrap p (tests and the simulation's attackers)."""
    pp, f = valid.params, valid.field
    v = claimed if claimed is not None else sum(int(a) * int(a) for a in x) % f.MODULUS
    v %= 2**pp.norm_bits
    u = (pp.bound_enc**2 - v) % f.MODULUS % 2**pp.norm_bits
    return np.concatenate([f.arr(x), _bits(f, [v, u], pp.norm_bits)])


def forge_wr_claim(valid: PineValid, x_field: Vec, z: Vec) -> tuple[Vec, Vec]:
    """A malicious client's wraparound claims: every check "passed", with the bits of w_k where they
    fit in n_w bits and zeros where they do not (the honest encoder refuses such a vector)."""
    pp, f = valid.params, valid.field
    dots = f.to_ints(signed_dot(f, z, x_field))
    w = [(t + pp.wr_bound - 1) % f.MODULUS for t in dots]
    w = [v if v < 2**pp.wr_bits else 0 for v in w]
    bits = _bits(f, w, pp.wr_bits).reshape(pp.num_wr_checks, pp.wr_bits)
    sent = np.concatenate([bits, f.arr([1] * pp.num_wr_checks)[:, None]], axis=1).reshape(-1)
    return sent, f.arr(dots)


def _pairs(f: type[Field], left: Vec, right: Vec, calls: int, chunk: int) -> Vec:
    """Mul pairs (left_i, right_i), zero-padded to calls * chunk, as ParallelSum wires (2 chunk, calls)."""
    pad = calls * chunk - left.shape[0]
    lp = np.concatenate([left, f.zeros(pad)]).reshape(calls, chunk)
    rp = np.concatenate([right, f.zeros(pad)]).reshape(calls, chunk)
    return np.stack([lp, rp], axis=-1).reshape(calls, 2 * chunk).T
