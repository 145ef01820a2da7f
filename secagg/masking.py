"""Double masking (Bonawitz et al., CCS 2017, section 4), as pure functions on numpy words.

Client u with input x_u, self-mask seed b_u and pairwise seeds s_uv (agreed with each neighbour v that
is still in the round when masking happens) sends

    y_u = x_u + PRG_self(b_u) + sum_{v > u} PRG_pair(s_uv) - sum_{v < u} PRG_pair(s_uv)    (mod 2^bits).

Over a survivor set U3, pairwise masks between survivors cancel, so the server recovers

    sum_{u in U3} x_u = sum_{u in U3} y_u - sum_{u in U3} PRG_self(b_u)
                        - sum_{v dropped} sum_{u in U3, u ~ v} sign(u, v) PRG_pair(s_uv)

with sign(u, v) = +1 if v > u else -1, from reconstructed b_u (survivors) and s_v^SK (dropped). Words are
uint32 for bits <= 32 (arithmetic wraps mod 2^32, and 2^bits divides 2^32) and uint64 otherwise.
"""

from __future__ import annotations

import numpy as np

from secagg import keys, prg


def self_domain(session: bytes, u: int) -> bytes:
    return prg.domain(b"self", session, u)


def pair_domain(session: bytes, u: int, v: int) -> bytes:
    lo, hi = min(u, v), max(u, v)
    return prg.domain(b"pair", session, lo, hi)


def pair_seed(sk: bytes, peer_pk: bytes, session: bytes, u: int, v: int, pk_u: bytes, pk_v: bytes) -> bytes:
    """s_uv = KA(sk, peer_pk) bound to the session, the ordered ids and both public keys (symmetric)."""
    (a, pa), (b, pb) = sorted([(u, pk_u), (v, pk_v)])
    ctx = session + a.to_bytes(4, "little") + b.to_bytes(4, "little") + pa + pb
    return keys.agree(sk, peer_pk, ctx)


def pair_sign(u: int, v: int) -> int:
    """The sign with which client u adds the mask it shares with v."""
    return 1 if v > u else -1


def to_words(x: np.ndarray, bits: int) -> np.ndarray:
    """Ring elements (any unsigned ints < 2^bits) as a fresh array in the working dtype."""
    return np.array(x, dtype=prg.word_dtype(bits), copy=True)


def reduce(acc: np.ndarray, bits: int) -> np.ndarray:
    """acc mod 2^bits (in place when a reduction is needed)."""
    if bits not in (32, 64):
        np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)
    return acc


def words_to_bytes(acc: np.ndarray) -> bytes:
    return acc.astype(acc.dtype.newbyteorder("<"), copy=False).tobytes()


def bytes_to_words(b: bytes, bits: int) -> np.ndarray:
    return np.frombuffer(b, dtype=np.dtype(prg.word_dtype(bits)).newbyteorder("<")).astype(
        prg.word_dtype(bits), copy=True
    )
