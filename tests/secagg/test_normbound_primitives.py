"""Group layer, generators, transcript and Pedersen commitments of secagg.normbound."""

from __future__ import annotations

import hashlib

import nacl.bindings as nb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import MalformedMessage
from secagg.normbound import generators as gg
from secagg.normbound import group as g
from secagg.normbound.errors import MalformedProof, ParameterError
from secagg.normbound.pedersen import CommitmentKey, combine
from secagg.normbound.transcript import Transcript

# Small-order points and bad encodings: the identity, the point of order 2, the two of order 4, two
# of order 8, a non-canonical encoding (y = p + 1), a point not in the prime-order subgroup and
# encodings of y = 2, 3 (not a prime-order point).
T8 = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
BAD_POINTS = [
    "01" + "00" * 31,
    "ec" + "ff" * 30 + "7f",
    "00" * 32,
    "00" * 31 + "80",
    T8,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "ee" + "ff" * 30 + "7f",
    "02" + "00" * 31,
    "03" + "00" * 31,
]
P0 = gg.generator("kat", "update/G", 0)


@pytest.mark.parametrize("enc", BAD_POINTS)
def test_decode_point_rejects_small_order_and_noncanonical(enc: str) -> None:
    with pytest.raises(MalformedProof, match="invalid point"):
        g.decode_point(bytes.fromhex(enc))


def test_decode_point_rejects_mixed_order_and_bad_length() -> None:
    mixed = bytes(nb.crypto_core_ed25519_add(P0, bytes.fromhex(T8)))
    with pytest.raises(MalformedProof):
        g.decode_point(mixed)
    with pytest.raises(MalformedMessage, match="got 31 bytes; want 32"):
        g.decode_point(P0[:31])
    assert g.decode_point(P0) == P0


def test_decode_scalar_canonical_only() -> None:
    assert g.decode_scalar((g.L - 1).to_bytes(32, "little")) == g.L - 1
    for bad in (g.L, g.L + 1, 2**256 - 1):
        with pytest.raises(MalformedProof, match="non-canonical"):
            g.decode_scalar(bad.to_bytes(32, "little"))
    with pytest.raises(MalformedProof, match="got 33 bytes"):
        g.decode_scalar(bytes(33))


@settings(max_examples=15, deadline=None)
@given(a=st.integers(0, g.L - 1), b=st.integers(0, g.L - 1))
def test_scalar_multiplication_is_linear(a: int, b: int) -> None:
    assert g.add(g.smul(a, P0), g.smul(b, P0)) == g.smul(a + b, P0)
    assert g.sub(g.smul(a, P0), g.smul(b, P0)) == g.smul(a - b, P0)
    assert g.add(g.smul(a, P0), g.neg(g.smul(a, P0))) == g.IDENTITY


def test_identity_and_zero_scalar() -> None:
    assert g.smul(0, P0) == g.IDENTITY
    assert g.smul(g.L, P0) == g.IDENTITY
    assert g.smul(5, g.IDENTITY) == g.IDENTITY
    assert g.add(g.IDENTITY, P0) == P0 == g.sub(P0, g.IDENTITY)
    assert g.msm([], []) == g.IDENTITY
    with pytest.raises(ValueError, match="want equal lengths"):
        g.msm([1], [])


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(-40, 40), min_size=1, max_size=12))
def test_msm_small_matches_scalar_multiplication(vals: list[int]) -> None:
    pts = gg.generators("kat", "msm", len(vals))
    assert g.msm_small(np.array(vals), pts) == g.msm(vals, pts)


def test_msm_small_falls_back_for_large_values() -> None:
    pts = gg.generators("kat", "msm", 2)
    vals = np.array([10**9, -(10**9)])
    assert g.msm_small(vals, pts) == g.msm([10**9, -(10**9)], pts)
    with pytest.raises(TypeError):
        g.msm_small(np.array([0.5, 1.0]), pts)


@pytest.mark.parametrize(
    "vals",
    [
        np.array([-(2**63), 3], dtype=np.int64),
        np.array([2**63 - 1, -1], dtype=np.int64),
        np.array([2**64 - 1, 2**63], dtype=np.uint64),
        np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    ],
)
def test_msm_small_is_exact_at_the_integer_edges(vals: np.ndarray) -> None:
    pts = gg.generators("kat", "msm", len(vals))
    assert g.msm_small(vals, pts) == g.msm([int(v) for v in vals], pts)


def test_random_scalars_are_distinct_and_in_range() -> None:
    ks = g.random_scalars(64)
    assert len(set(ks)) == 64 and all(0 <= k < g.L for k in ks)


# --- generators ---------------------------------------------------------------------------------


def test_generator_known_answer() -> None:
    frame = lambda b: len(b).to_bytes(8, "little") + b  # noqa: E731
    msg = frame(b"fedsec/normbound/generators/v1") + frame(b"kat") + frame(b"update/G") + bytes(8)
    uniform = hashlib.sha512(msg).digest()[:32]
    assert gg.hash_input("kat", "update/G", 0) == uniform
    assert bytes(nb.crypto_core_ed25519_from_uniform(uniform)) == P0
    assert P0.hex() == "e462e13ae02847fc1d383bd65b9e4aca78249f15c2d21fad505933775b47dd67"


def test_generators_are_distinct_valid_and_separated() -> None:
    a = gg.generators("kat", "update/G", 20)
    b = gg.generators("kat", "bits/G", 20)
    c = gg.generators("other", "update/G", 20)
    assert len(set(a + b + c)) == 60
    assert all(nb.crypto_core_ed25519_is_valid_point(p) for p in a + b + c)
    assert gg.generators("kat", "update/G", 5) == a[:5]  # the cache extends, never changes
    with pytest.raises(ParameterError):
        gg.generators("kat", "update/G", -1)


# --- transcript ---------------------------------------------------------------------------------


def _kat_transcript() -> Transcript:
    t = Transcript(b"kat")
    t.append(b"a", b"hello")
    t.append_int(b"n", 300)
    return t


def test_transcript_known_answer() -> None:
    frame = lambda b: len(b).to_bytes(8, "little") + b  # noqa: E731
    h = hashlib.sha512(frame(b"domain") + frame(b"kat") + frame(b"a") + frame(b"hello"))
    h.update(frame(b"n") + frame((300).to_bytes(2, "big")))
    t = _kat_transcript()
    assert t.digest() == h.digest()
    h2 = h.copy()
    h2.update(frame(b"challenge") + frame(b"c") + b"\x00")
    expect = int.from_bytes(h2.digest(), "little") % g.L
    c1 = t.challenge(b"c")
    assert c1 == expect == 0xCB4169B9796DE5CF02E6ECBDE510A284EED796670C051BA81D2B5B17538324E
    # the challenge is absorbed: asking again gives a new value
    assert t.challenge(b"c") == 0xDE4510F5AE9C1E121DC7B3E0B0FC59074B46E3309A9A6641135F7CBB341760A


def test_transcript_failing_cases() -> None:
    base = _kat_transcript().challenge(b"c")
    t = Transcript(b"kat")
    t.append(b"a", b"hell")  # moving one byte between fields changes everything (length framing)
    t.append(b"o", b"")
    assert t.challenge(b"c") != base
    t = Transcript(b"kat")
    t.append(b"a", b"hello")
    t.append_int(b"n", 301)
    assert t.challenge(b"c") != base
    assert _kat_transcript().challenge(b"d") != base
    assert Transcript(b"kat2").challenge(b"c") != Transcript(b"kat").challenge(b"c")
    with pytest.raises(ValueError):
        Transcript(b"kat").append_int(b"n", -1)


# --- Pedersen -----------------------------------------------------------------------------------


def test_commitment_known_answer_and_failing_openings() -> None:
    key = CommitmentKey(d=3, label="kat")
    x = np.array([1, -2, 3])
    c = key.commit(x, 5)
    G = gg.generators("kat", "update/G", 3)
    h = gg.generators("kat", "blind/h", 1)[0]
    by_hand = g.msm([1, g.L - 2, 3, 5], [*G, h])
    assert c == by_hand
    assert c.hex() == "1d6a29386518cc33f28e33bf75e3774e91eb2590e4899d64ab0eb14f1bba3a71"
    assert key.opens(c, x, 5)
    assert not key.opens(c, np.array([1, -2, 4]), 5)
    assert not key.opens(c, x, 6)
    assert not CommitmentKey(d=3, label="kat2").opens(c, x, 5)


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=4, max_size=4),
    st.lists(st.integers(-1000, 1000), min_size=4, max_size=4),
    st.integers(0, g.L - 1),
    st.integers(0, g.L - 1),
)
def test_commitments_are_additively_homomorphic(x: list[int], y: list[int], r: int, s: int) -> None:
    key = CommitmentKey(d=4, label="kat")
    cx, cy = key.commit(np.array(x), r), key.commit(np.array(y), s)
    assert combine([cx, cy]) == key.commit(np.array(x) + np.array(y), r + s)


def test_commitment_key_validation() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ParameterError, match="want an int >= 1"):
            CommitmentKey(d=bad)  # type: ignore[arg-type]
    key = CommitmentKey(d=2)
    with pytest.raises(ParameterError, match=r"want \(2,\)"):
        key.commit(np.array([1, 2, 3]), 0)
    with pytest.raises(ParameterError, match="want integers"):
        key.commit(np.array([0.5, 1.0]), 0)


def test_generator_disk_cache_round_trip_and_rejects_tampering(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FEDSEC_NORMBOUND_CACHE", str(tmp_path))
    monkeypatch.setattr(gg, "DISK_MIN", 8)
    fresh = [gg.generator("disk", "F", i) for i in range(40)]
    gg.clear_memory_cache()
    assert gg.generators("disk", "F", 40) == fresh
    (path,) = tmp_path.glob("*.bin")
    assert gg._load(tmp_path, "disk", "F", 40) == fresh
    assert gg._load(tmp_path, "disk", "F", 41) is None  # keyed by the count
    assert gg._load(tmp_path, "disk", "G", 40) is None  # and by the name
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # corrupted: the hash check fails
    path.write_bytes(bytes(data))
    assert gg._load(tmp_path, "disk", "F", 40) is None
    # an attacker who rewrites the points and the hash is caught by the spot checks
    other = [gg.generator("disk", "X", i) for i in range(40)]
    gg._store(tmp_path, "disk", "F", 40, other)
    assert gg._load(tmp_path, "disk", "F", 40) is None
    gg.clear_memory_cache()
    assert gg.generators("disk", "F", 40) == fresh  # rebuilt from scratch
    assert gg._load(tmp_path, "disk", "F", 40) == fresh


def test_generator_cache_off_and_parallel_derivation(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FEDSEC_NORMBOUND_CACHE", "off")
    assert gg.cache_dir() is None
    monkeypatch.setattr(gg, "PARALLEL_MIN", 10)
    assert gg.derive("par", "F", 3, 33, workers=2) == [gg.generator("par", "F", i) for i in range(3, 33)]
    monkeypatch.delenv("FEDSEC_NORMBOUND_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert gg.cache_dir() == tmp_path / "fedsec" / "normbound"
