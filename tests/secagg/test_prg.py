"""PRG: known-answer prefixes, domain separation, independent seed derivation, range."""

from __future__ import annotations

import hashlib

import nacl.utils
import numpy as np
import pytest

from secagg import SecAggError, prg

SEED = bytes(range(32))


def test_known_answer_prefixes() -> None:
    # libsodium randombytes_buf_deterministic over the all-zero seed (ChaCha20, nonce "LibsodiumDRG")
    assert nacl.utils.randombytes_deterministic(16, bytes(32)).hex() == "a11f8f12d0876f736d2d8fd26e14c2de"
    assert prg.expand(SEED, 4, bits=32, domain=b"pair").tolist() == [
        2369839285,
        3733515331,
        1271424772,
        1899608342,
    ]
    assert prg.expand(SEED, 2, bits=64, domain=b"pair").tolist() == [
        16035326248129454261,
        8158755705370208004,
    ]
    assert prg.expand(SEED, 4, bits=12, domain=b"self").tolist() == [478, 283, 1314, 1660]


def test_seed_derivation_matches_hashlib_blake2b() -> None:
    dom = prg.domain(b"pair", b"session-1", 3, 7)
    key = hashlib.blake2b(dom, digest_size=32, key=SEED, person=b"fedsec.prg.v1").digest()
    raw = nacl.utils.randombytes_deterministic(4 * 8, key)
    want = np.frombuffer(raw, dtype="<u4").astype(np.uint64)
    assert (prg.expand(SEED, 8, bits=32, domain=dom) == want).all()


def test_domain_separation() -> None:
    a = prg.expand(SEED, 64, bits=32, domain=prg.domain(b"pair", b"r1", 1, 2))
    b = prg.expand(SEED, 64, bits=32, domain=prg.domain(b"self", b"r1", 1, 2))
    c = prg.expand(SEED, 64, bits=32, domain=prg.domain(b"pair", b"r2", 1, 2))
    d = prg.expand(SEED, 64, bits=32, domain=prg.domain(b"pair", b"r1", 1, 2))
    assert (a != b).any() and (a != c).any() and (b != c).any()
    assert (a == d).all()
    # prefixes agree across lengths
    assert (
        prg.expand(SEED, 10, bits=32, domain=b"x") == prg.expand(SEED, 64, bits=32, domain=b"x")[:10]
    ).all()


@pytest.mark.parametrize("bits", [1, 7, 31, 32, 33, 62])
def test_range(bits: int) -> None:
    v = prg.expand(SEED, 4096, bits=bits, domain=b"r")
    assert v.dtype == np.uint64 and int(v.max()) < 2**bits
    assert int(v.max()) >= 2 ** (bits - 1)  # top bit used (overwhelmingly likely over 4096 draws)


def test_add_mask_cancels() -> None:
    acc = np.arange(100, dtype=np.uint32)
    prg.add_masks(acc, [(SEED, b"m", 1)], bits=32)
    assert (acc != np.arange(100)).any()
    prg.add_masks(acc, [(SEED, b"m", -1)], bits=32)
    assert (acc == np.arange(100)).all()


@pytest.mark.parametrize("seed", [b"short", bytes(33), "x" * 32])
def test_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(SecAggError, match="want 32 bytes"):
        prg.expand(seed, 4, bits=32, domain=b"d")  # type: ignore[arg-type]


def test_fill_writes_libsodiums_stream_in_place() -> None:
    """The in-place path gives exactly the bytes of PyNaCl's public randombytes_deterministic."""
    out = np.zeros(1001, dtype=np.uint32)
    prg.fill(out, SEED)
    assert out.tobytes() == nacl.utils.randombytes_deterministic(4 * 1001, SEED)
    with pytest.raises(SecAggError, match="want a writable C-contiguous one"):
        prg.fill(np.zeros(10, dtype=np.uint32)[::2], SEED)


def test_add_masks_equals_the_masks_one_by_one() -> None:
    acc = np.arange(300, dtype=np.uint32)
    masks = [(SEED, b"a", 1), (bytes(32), b"b", -1), (SEED, b"c", 1)]
    want = np.arange(300, dtype=np.uint64)
    for seed, dom, sign in masks:
        want = (want + sign * prg.expand(seed, 300, bits=32, domain=dom).astype(np.int64)) % 2**32
    prg.add_masks(acc, iter(masks), bits=32)
    assert (acc == want).all()
    with pytest.raises(SecAggError, match="want 1-D uint32"):
        prg.add_masks(np.zeros(4, dtype=np.uint64), masks, bits=32)
