"""Fuzz: secure-aggregation message decoders on mutated bytes (bit flips, truncations, extensions,
random bodies of valid messages). Contract: a :class:`secagg.errors.SecAggError`, or a decoded value
whose canonical encoding is the input (a decoder accepts exactly the encodings it produces)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st

from secagg import messages as m
from secagg.errors import SecAggError

LIMIT = 16


def _bytes(rng: np.random.Generator, k: int) -> bytes:
    return rng.integers(0, 256, k, dtype=np.uint8).tobytes()


def _share_bytes() -> int:
    return int(m.SHARE_BYTES)


def _codecs(
    rng: np.random.Generator,
) -> dict[str, tuple[bytes, Callable[[bytes], Any], Callable[[Any], bytes]]]:
    """name -> (a valid encoding, decode, encode)."""
    ids = sorted(set(int(i) for i in rng.integers(0, 50, 4)))
    keys = [(i, _bytes(rng, 32), _bytes(rng, 32), _bytes(rng, 64)) for i in ids]
    cts = [(i, _bytes(rng, 40)) for i in ids]
    unmask = [(i, m.What(int(rng.integers(0, len(m.What)))), _bytes(rng, _share_bytes())) for i in ids]
    adv = (_bytes(rng, 32), _bytes(rng, 32), _bytes(rng, 64))
    return {
        "advertise": (m.encode_advertise(*adv), m.decode_advertise, lambda v: m.encode_advertise(*v)),
        "keys": (m.encode_keys(keys), lambda b: m.decode_keys(b, LIMIT), m.encode_keys),
        "ids": (m.encode_ids(ids), lambda b: m.decode_ids(b, LIMIT), m.encode_ids),
        "ciphertexts": (
            m.encode_ciphertexts(cts),
            lambda b: m.decode_ciphertexts(b, LIMIT),
            m.encode_ciphertexts,
        ),
        "unmask": (m.encode_unmask(unmask), lambda b: m.decode_unmask(b, LIMIT), m.encode_unmask),
    }


#: The byte mutations of :func:`_mutate`.
MUTATIONS = st.sampled_from(["flip", "truncate", "extend", "count", "random"])


def _mutate(data: bytes, op: str, pos: int, val: int) -> bytes:
    if not data:
        return bytes([val])
    p = pos % len(data)
    if op == "flip":
        return data[:p] + bytes([data[p] ^ (1 << (val % 8))]) + data[p + 1 :]
    if op == "truncate":
        return data[:p]
    if op == "extend":
        return data + bytes([val]) * (1 + pos % 8)
    if op == "count":  # rewrite the leading u32 count
        return (val * 0x01010101).to_bytes(4, "little") + data[4:]
    return bytes(np.random.default_rng(pos).integers(0, 256, len(data), dtype=np.uint8))


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(["advertise", "keys", "ids", "ciphertexts", "unmask"]),
    op=MUTATIONS,
    pos=st.integers(0, 10_000),
    val=st.integers(0, 255),
)
def test_decoders_on_mutated_bytes(seed: int, name: str, op: str, pos: int, val: int) -> None:
    valid, decode, encode = _codecs(np.random.default_rng(seed))[name]
    data = _mutate(valid, op, pos, val)
    res, detail = outcome("secagg", lambda: decode(data), (SecAggError,), lambda v: encode(v) == data)
    expect("secagg", res, detail, (name, op, data[:64]))
