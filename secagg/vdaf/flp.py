"""The fully linear proof of Boneh, Boyle, Corrigan-Gibbs, Gilboa, Ishai (CRYPTO 2019, Section 4.2), as
draft-irtf-cfrg-vdaf-20 Section 7.3 specifies it (Lagrange basis, gadgets Mul / PolyEval / ParallelSum).

A validity circuit C(x, r) calls each gadget G several times. For gadget G of arity L called M times,
with wire values w_j[k] (input j of call k), the prover sets P = next_power_of_2(1 + M) and defines
each wire polynomial f_j by its values on the P-th roots of unity alpha^k:

    f_j(alpha^0) = seed_j (prover randomness),  f_j(alpha^k) = w_j[k] (1 <= k <= M),  0 after M.

The gadget polynomial is g = G(f_1, ..., f_L), of degree D (P - 1); the proof is the seeds and the
first D (P - 1) + 1 values of g on the N-th roots of unity, N = next_power_of_2(D (P - 1) + 1). Since
g(alpha^k) is the output of call k, a verifier with additive shares of x and of the proof evaluates
C on its shares (gadget outputs read from its share of g: everything else in C is affine), and at
a random point t it evaluates its shares of f_j(t) and g(t). The decision checks C's (randomly
reduced) output is 0 and G(f_1(t), ..., f_L(t)) = g(t) for every gadget (Schwartz-Zippel).

Vectorized form: a circuit gives the wire matrix of each gadget at once (``Valid.wires``, shape
(ARITY, calls)) and then its output from all gadget outputs (``Valid.combine``); every circuit here
has wire inputs that do not depend on earlier gadget outputs, which this form requires.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg.vdaf.errors import VdafParameterError, VdafVerifyError
from secagg.vdaf.field import Field, Vec, next_power_of_2


def wire_poly_len(calls: int) -> int:
    """P = next_power_of_2(1 + calls): one seed plus one value per call."""
    return next_power_of_2(1 + calls)


def gadget_poly_len(degree: int, wire_len: int) -> int:
    """D (P - 1) + 1 values determine the gadget polynomial."""
    return degree * (wire_len - 1) + 1


# -- Lagrange-basis helpers ------------------------------------------------------------------------------


def powers_of(field: type[Field], t: Vec, n: int) -> Vec:
    """Rows [t_i^0, ..., t_i^(n-1)] for each t_i (shape (len t, n)), by doubling in log2 n steps."""
    out = np.broadcast_to(field.arr([1]), (t.shape[0], 1)).copy()
    tk = t[:, None]
    while out.shape[1] < n:
        out = np.concatenate([out, field.mul(out, tk)], axis=1)
        tk = field.mul(tk, tk)
    return out[:, :n]


def lagrange_weights(field: type[Field], n: int, t: int) -> Vec:
    """lambda_k(t) with P(t) = sum_k v_k lambda_k(t) for values v_k of P (degree < n) at the n-th roots W^k.

    lambda_k(t) = (t^n - 1) / n * W^k / (t - W^k), and since (t - W^k) sum_j t^(n-1-j) W^(kj) = t^n - 1,
    lambda_k(t) = n^-1 W^k sum_j t^(n-1-j) W^(kj): one NTT of the reversed powers of t, no inversion
    (and exact at the nodes too, where it gives the indicator of t's index)."""
    rev = powers_of(field, field.arr([t]), n)[0, ::-1]
    scale = field.arr([pow(n, field.MODULUS - 2, field.MODULUS)])
    return field.mul(field.mul(field.nth_root_powers(n), field.ntt(rev, n)), scale)


def lagrange_eval(field: type[Field], values: Vec, t: int) -> Vec:
    """P(t) for each row of values v_i = P(W_n^i) (n a power of two), in O(n) per row."""
    return field.dot(values, lagrange_weights(field, values.shape[-1], t))


def extend_to_power_of_2(field: type[Field], values: Vec) -> Vec:
    """Values on all N = next_power_of_2(len) roots of a polynomial of degree < len given on the first len.

    Only one missing value is supported (len = N - 1, every degree-2 gadget): the top coefficient
    c_(N-1) = N^-1 sum_i v_i W^i must vanish, so v_(N-1) = -W sum_(i < N-1) v_i W^i.
    """
    size = values.shape[-1]
    n = next_power_of_2(size)
    if size == n:
        return values
    if size != n - 1:
        raise VdafParameterError(f"got {size} gadget values; want 2^k or 2^k - 1 (gadget degree <= 2)")
    w = field.nth_root(n)
    s = field.dot(values, field.nth_root_powers(n)[: n - 1])
    last = field.neg(field.mul(s, field.arr([w])))
    return np.concatenate([values, last], axis=-1)


# -- gadgets ----------------------------------------------------------------------------------------------


class Gadget(ABC):
    """A non-affine sub-circuit: eval works on inputs of shape (ARITY, ...) and returns shape (...)."""

    ARITY: int
    DEGREE: int

    @abstractmethod
    def eval(self, field: type[Field], inp: Vec) -> Vec: ...

    def eval_poly(self, field: type[Field], wires: Vec) -> Vec:
        """g = G(f_1..f_L) on the N-th roots, from wires given on the P-th roots (shape (ARITY, P)).

        For N = 2P the even points are the wires themselves and the odd ones W_2P^(2i+1) come from one
        NTT of size P with the shift s = W_2P (the draft's double_evaluations)."""
        p = wires.shape[-1]
        n = next_power_of_2(gadget_poly_len(self.DEGREE, p))
        coeffs = field.inv_ntt(wires, p)
        if n == 2 * p:
            odd = field.ntt(coeffs, p, set_s=True)
            values = np.stack([wires, odd], axis=-1).reshape(*wires.shape[:-1], n)
        else:
            values = field.ntt(coeffs, n)
        return self.eval(field, values)


class Mul(Gadget):
    """Mul(x, y) = x y (degree 2)."""

    ARITY = 2
    DEGREE = 2

    def eval(self, field: type[Field], inp: Vec) -> Vec:
        return field.mul(inp[0], inp[1])


class PolyEval(Gadget):
    """PolyEval(x) = sum_i a_i x^i for public coefficients a (degree = deg a), by Horner's rule."""

    ARITY = 1

    def __init__(self, coeffs: Sequence[int]) -> None:
        c = list(coeffs)
        while c and c[-1] == 0:
            c.pop()
        if not c:
            raise VdafParameterError("got the zero polynomial; want at least one non-zero coefficient")
        self.coeffs = c
        self.DEGREE = len(c) - 1

    def eval(self, field: type[Field], inp: Vec) -> Vec:
        x = inp[0]
        acc = np.broadcast_to(field.arr([self.coeffs[-1]]), x.shape).copy()
        for a in reversed(self.coeffs[:-1]):
            acc = field.add(field.mul(acc, x), field.arr([a]))
        return acc


class ParallelSum(Gadget):
    """ParallelSum(S, count)(x) = sum_i S(x[i a : (i + 1) a]), a = arity of S (degree of S)."""

    def __init__(self, sub: Gadget, count: int) -> None:
        if count < 1:
            raise VdafParameterError(f"got count {count}; want >= 1")
        self.sub, self.count = sub, count
        self.ARITY = sub.ARITY * count
        self.DEGREE = sub.DEGREE

    def eval(self, field: type[Field], inp: Vec) -> Vec:
        a = self.sub.ARITY
        grouped = inp.reshape(self.count, a, *inp.shape[1:])
        outs = self.sub.eval(field, np.moveaxis(grouped, 1, 0))
        return field.sum(outs, axis=0)


# -- validity circuits ------------------------------------------------------------------------------------


class Valid(ABC):
    """A validity circuit (draft Section 7.3.2) in vectorized form."""

    field: type[Field]
    GADGETS: list[Gadget]
    GADGET_CALLS: list[int]
    MEAS_LEN: int
    JOINT_RAND_LEN: int
    EVAL_OUTPUT_LEN: int
    OUTPUT_LEN: int

    @abstractmethod
    def encode(self, measurement: Any) -> Vec: ...

    @abstractmethod
    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        """Each gadget's inputs for all its calls, shape (ARITY, calls), in call order."""

    @abstractmethod
    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        """The circuit's output (length EVAL_OUTPUT_LEN) from the gadget outputs (affine in both)."""

    @abstractmethod
    def truncate(self, meas: Vec) -> Vec: ...

    @abstractmethod
    def decode(self, output: Vec, num_measurements: int) -> Any: ...

    def eval(self, meas: Vec, joint_rand: Vec, num_shares: int) -> Vec:
        """C(x, r) evaluated directly (gadgets computed, not read from a proof)."""
        ws = self.wires(meas, joint_rand, num_shares)
        return self.combine(
            meas, joint_rand, num_shares, [g.eval(self.field, w) for g, w in zip(self.GADGETS, ws)]
        )


class Flp:
    """The BBCGGI19 FLP over a validity circuit: prove, query, decide (draft Sections 7.3.3-7.3.5)."""

    def __init__(self, valid: Valid) -> None:
        self.valid = valid
        self.field = valid.field
        self.PROVE_RAND_LEN = sum(g.ARITY for g in valid.GADGETS)
        self.QUERY_RAND_LEN = len(valid.GADGETS) + (valid.EVAL_OUTPUT_LEN if valid.EVAL_OUTPUT_LEN > 1 else 0)
        self.JOINT_RAND_LEN = valid.JOINT_RAND_LEN
        self.MEAS_LEN = valid.MEAS_LEN
        self.OUTPUT_LEN = valid.OUTPUT_LEN
        self.PROOF_LEN = sum(
            g.ARITY + gadget_poly_len(g.DEGREE, wire_poly_len(c))
            for g, c in zip(valid.GADGETS, valid.GADGET_CALLS)
        )
        self.VERIFIER_LEN = 1 + sum(g.ARITY + 1 for g in valid.GADGETS)

    def _wire_matrix(self, seeds: Vec, values: Vec, calls: int) -> Vec:
        p = wire_poly_len(calls)
        m = np.broadcast_to(self.field.zeros(1), (values.shape[0], p)).copy()
        m[:, 0] = seeds
        m[:, 1 : calls + 1] = values
        return m

    def prove(self, meas: Vec, prove_rand: Vec, joint_rand: Vec) -> Vec:
        """Proof = for each gadget: its wire seeds, then the first D (P - 1) + 1 values of g."""
        v = self.valid
        parts: list[Vec] = []
        off = 0
        for g, calls, w in zip(v.GADGETS, v.GADGET_CALLS, v.wires(meas, joint_rand, 1)):
            seeds = prove_rand[off : off + g.ARITY]
            off += g.ARITY
            wires = self._wire_matrix(seeds, w, calls)
            parts += [
                seeds,
                g.eval_poly(self.field, wires)[: gadget_poly_len(g.DEGREE, wire_poly_len(calls))],
            ]
        return np.concatenate(parts)

    def query(self, meas: Vec, proof: Vec, query_rand: Vec, joint_rand: Vec, num_shares: int) -> Vec:
        """A share of the verifier: [reduced C output, per gadget: f_1(t)..f_L(t), g(t)]."""
        v, f = self.valid, self.field
        if proof.shape[0] != self.PROOF_LEN:
            raise VdafVerifyError("query", f"got a proof of {proof.shape[0]} elements; want {self.PROOF_LEN}")
        polys, outs, seeds_all = [], [], []
        off = 0
        for g, calls in zip(v.GADGETS, v.GADGET_CALLS):
            p = wire_poly_len(calls)
            gl = gadget_poly_len(g.DEGREE, p)
            seeds_all.append(proof[off : off + g.ARITY])
            full = extend_to_power_of_2(f, proof[off + g.ARITY : off + g.ARITY + gl])
            off += g.ARITY + gl
            step = full.shape[0] // p
            polys.append(full)
            outs.append(full[step : (calls + 1) * step : step])
        out = v.combine(meas, joint_rand, num_shares, outs)
        ws = v.wires(meas, joint_rand, num_shares)
        if v.EVAL_OUTPUT_LEN > 1:
            reduced = f.dot(query_rand[: v.EVAL_OUTPUT_LEN], out)
            ts = query_rand[v.EVAL_OUTPUT_LEN :]
        else:
            reduced, ts = out, query_rand
        verifier = [reduced]
        for i, calls in enumerate(v.GADGET_CALLS):
            p = wire_poly_len(calls)
            t = f.to_ints(ts[i : i + 1])[0]
            if pow(t, p, f.MODULUS) == 1:
                raise VdafVerifyError(
                    "query", "got a test point that is a root of unity; want any other point"
                )
            wires = self._wire_matrix(seeds_all[i], ws[i], calls)
            verifier += [lagrange_eval(f, wires, t), lagrange_eval(f, polys[i][None, :], t)]
        return np.concatenate(verifier)

    def decide(self, verifier: Vec) -> bool:
        """Accept iff the reduced output is 0 and G(f(t)) = g(t) for every gadget."""
        f = self.field
        if verifier.shape[0] != self.VERIFIER_LEN:
            return False
        if f.to_ints(verifier[:1]) != [0]:
            return False
        off = 1
        for g in self.valid.GADGETS:
            wire_checks = verifier[off : off + g.ARITY].reshape(g.ARITY, 1)
            gadget_check = verifier[off + g.ARITY : off + g.ARITY + 1]
            off += g.ARITY + 1
            if f.to_ints(g.eval(f, wire_checks)) != f.to_ints(gadget_check):
                return False
        return True

    def prove_many(self, meas: Vec, prove_rands: Vec, joint_rands: Vec, count: int) -> Vec:
        """``count`` proofs of ``meas`` (the draft's multiproof), the k-th from the k-th slices of the
        prove and joint randomness, concatenated."""
        pl, jl = self.PROVE_RAND_LEN, self.JOINT_RAND_LEN
        return np.concatenate(
            [
                self.prove(meas, prove_rands[k * pl : (k + 1) * pl], joint_rands[k * jl : (k + 1) * jl])
                for k in range(count)
            ]
        )

    def query_many(
        self, meas: Vec, proofs: Vec, query_rands: Vec, joint_rands: Vec, num_shares: int, count: int
    ) -> Vec:
        """The verifier shares of the first ``count`` proofs in ``proofs``, concatenated."""
        pl, ql, jl = self.PROOF_LEN, self.QUERY_RAND_LEN, self.JOINT_RAND_LEN
        return np.concatenate(
            [
                self.query(
                    meas,
                    proofs[k * pl : (k + 1) * pl],
                    query_rands[k * ql : (k + 1) * ql],
                    joint_rands[k * jl : (k + 1) * jl],
                    num_shares,
                )
                for k in range(count)
            ]
        )

    def first_rejected(self, verifiers: Vec, count: int) -> int | None:
        """The index of the first of ``count`` combined verifiers that :meth:`decide` rejects, or ``None``."""
        vl = self.VERIFIER_LEN
        return next((k for k in range(count) if not self.decide(verifiers[k * vl : (k + 1) * vl])), None)
