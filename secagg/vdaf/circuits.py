"""Prio3's validity circuits Count, Sum and SumVec (draft-irtf-cfrg-vdaf-20 Section 7.4), vectorized.

Count:  x in {0, 1} by C(x) = Mul(x, x) - x.
Sum:    x in [0, max] encoded as bits b_0..b_(n-2) and b_(n-1) with weights 1, 2, .., 2^(n-2) and
        max - (2^(n-1) - 1); C = (PolyEval(x^2 - x)(b_l))_l, one output per bit.
SumVec: every one of length * bits encoded bits checked at once, chunked into ParallelSum(Mul, c):
        C(x, r) = sum_i sum_j Mul(r_i^(j+1) x_(ic+j), x_(ic+j) - 1/S) with one r_i per gadget call
        (S the number of shares: the constant 1 is shared as 1/S per share).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.vdaf.errors import VdafMeasurementError, VdafParameterError
from secagg.vdaf.field import Field, Vec
from secagg.vdaf.flp import Mul, ParallelSum, PolyEval, Valid, powers_of


def _range_weights(field: type[Field], max_measurement: int) -> Vec:
    bits = max_measurement.bit_length()
    rest_all_ones = 2 ** (bits - 1) - 1
    return field.arr([1 << i for i in range(bits - 1)] + [max_measurement - rest_all_ones])


def encode_range_checked(field: type[Field], values: Sequence[int], max_measurement: int) -> Vec:
    """Each value's draft encoding (bits of value or of value - last weight, then the last bit)."""
    bits = max_measurement.bit_length()
    rest_all_ones = 2 ** (bits - 1) - 1
    last_weight = max_measurement - rest_all_ones
    v = np.asarray(values, dtype=object)
    if v.size and (min(v) < 0 or max(v) > max_measurement):
        raise VdafMeasurementError(f"got values in [{min(v)}, {max(v)}]; want [0, {max_measurement}]")
    ints = np.array([int(x) for x in v], dtype=np.int64)
    last = ints > rest_all_ones
    rest = np.where(last, ints - last_weight, ints)
    bit_matrix = (rest[:, None] >> np.arange(bits - 1)[None, :]) & 1
    enc = np.concatenate([bit_matrix, last[:, None].astype(np.int64)], axis=1)
    return field.arr(enc.reshape(-1))


def decode_range_checked(field: type[Field], encoded: Vec, max_measurement: int) -> Vec:
    """The linear map back: rows of ``bits`` encoded elements times the weights (works on shares)."""
    bits = max_measurement.bit_length()
    rows = encoded.reshape(-1, bits)
    return field.dot(rows, _range_weights(field, max_measurement))


def _check_max(field: type[Field], max_measurement: int) -> None:
    if not 0 < max_measurement < field.MODULUS or max_measurement >= 2**62:
        raise VdafParameterError(f"got max_measurement {max_measurement}; want 0 < max < min(p, 2^62)")


class Count(Valid):
    """Prio3Count's circuit."""

    def __init__(self, field: type[Field]) -> None:
        self.field = field
        self.GADGETS = [Mul()]
        self.GADGET_CALLS = [1]
        self.MEAS_LEN = 1
        self.JOINT_RAND_LEN = 0
        self.EVAL_OUTPUT_LEN = 1
        self.OUTPUT_LEN = 1

    def encode(self, measurement: int) -> Vec:
        if measurement not in (0, 1) or isinstance(measurement, bool):
            raise VdafMeasurementError(f"got {measurement!r}; want 0 or 1")
        return self.field.arr([measurement])

    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        return [np.stack([meas[:1], meas[:1]])]

    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        return self.field.sub(outs[0][:1], meas[:1])

    def truncate(self, meas: Vec) -> Vec:
        return meas

    def decode(self, output: Vec, num_measurements: int) -> int:
        return self.field.to_ints(output)[0]


class Sum(Valid):
    """Prio3Sum's circuit: one PolyEval(x^2 - x) call per encoded bit."""

    def __init__(self, field: type[Field], max_measurement: int) -> None:
        _check_max(field, max_measurement)
        self.field = field
        self.max_measurement = max_measurement
        self.bits = max_measurement.bit_length()
        self.GADGETS = [PolyEval([0, -1, 1])]
        self.GADGET_CALLS = [self.bits]
        self.MEAS_LEN = self.bits
        self.JOINT_RAND_LEN = 0
        self.EVAL_OUTPUT_LEN = self.bits
        self.OUTPUT_LEN = 1

    def encode(self, measurement: int) -> Vec:
        return encode_range_checked(self.field, [measurement], self.max_measurement)

    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        return [meas[None, :]]

    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        return outs[0]

    def truncate(self, meas: Vec) -> Vec:
        return decode_range_checked(self.field, meas, self.max_measurement)

    def decode(self, output: Vec, num_measurements: int) -> int:
        return self.field.to_ints(output)[0]


class SumVec(Valid):
    """Prio3SumVec's circuit: ParallelSum(Mul, chunk_length) over all encoded bits, one r per call."""

    def __init__(self, field: type[Field], length: int, max_measurement: int, chunk_length: int) -> None:
        _check_max(field, max_measurement)
        if length < 1 or chunk_length < 1:
            raise VdafParameterError(f"got length {length}, chunk {chunk_length}; want both >= 1")
        self.field = field
        self.length = length
        self.max_measurement = max_measurement
        self.bits = max_measurement.bit_length()
        self.chunk_length = chunk_length
        self.GADGETS = [ParallelSum(Mul(), chunk_length)]
        calls = -(-length * self.bits // chunk_length)
        self.GADGET_CALLS = [calls]
        self.MEAS_LEN = length * self.bits
        self.JOINT_RAND_LEN = calls
        self.EVAL_OUTPUT_LEN = 1
        self.OUTPUT_LEN = length

    def encode(self, measurement: Sequence[int]) -> Vec:
        if len(measurement) != self.length:
            raise VdafMeasurementError(f"got {len(measurement)} entries; want {self.length}")
        return encode_range_checked(self.field, measurement, self.max_measurement)

    def wires(self, meas: Vec, joint_rand: Vec, num_shares: int) -> list[Vec]:
        return [bit_check_wires(self.field, meas, joint_rand, self.chunk_length, num_shares)]

    def combine(self, meas: Vec, joint_rand: Vec, num_shares: int, outs: list[Vec]) -> Vec:
        return self.field.sum(outs[0])

    def truncate(self, meas: Vec) -> Vec:
        return decode_range_checked(self.field, meas, self.max_measurement)

    def decode(self, output: Vec, num_measurements: int) -> list[int]:
        return self.field.to_ints(output)


def bit_check_wires(field: type[Field], bits: Vec, rands: Vec, chunk: int, num_shares: int) -> Vec:
    """ParallelSum(Mul, chunk) wires that check ``bits`` are 0/1: call i, slot j gets the pair
    (r_i^(j+1) x, x - 1/S) with x = bits[i chunk + j] (0 past the end), interleaved as the draft's."""
    calls = rands.shape[0]
    x = np.concatenate([bits, field.zeros(calls * chunk - bits.shape[0])]).reshape(calls, chunk)
    rpow = powers_of(field, rands, chunk + 1)[:, 1:]
    first = field.mul(rpow, x)
    second = field.sub(x, field.arr([pow(num_shares, field.MODULUS - 2, field.MODULUS)]))
    return np.stack([first, second], axis=-1).reshape(calls, 2 * chunk).T
