"""Shamir sharing over F_p, p = 2^256 + 297: known answers, every t-subset, failing cases."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import shamir
from secagg.shamir import P, ShamirError


def _is_probable_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_field_is_prime_and_holds_32_byte_secrets() -> None:
    assert _is_probable_prime(P) and P > 2**256
    assert not any(_is_probable_prime(2**256 + c) for c in range(1, 297, 2))


def test_known_answer_linear_polynomial() -> None:
    secret = (5).to_bytes(32, "little")
    ys = shamir.share_many([secret], 2, [1, 2, 3], coefficients=[[7]])[0]
    assert ys == [12, 19, 26]  # f(z) = 5 + 7 z
    assert shamir.reconstruct([(2, 19), (3, 26)], 2) == secret
    # a wrong share yields a different secret with exactly t shares, and is detected with t + 1
    assert shamir.reconstruct([(2, 20), (3, 26)], 2) != secret
    with pytest.raises(ShamirError, match="inconsistent"):
        shamir.reconstruct([(1, 12), (2, 20), (3, 26)], 2)


def test_too_few_and_bad_inputs_raise() -> None:
    shares = shamir.share(bytes(32), 3, 5)
    with pytest.raises(ShamirError, match="got 2; want at least t=3"):
        shamir.reconstruct(shares[:2], 3)
    with pytest.raises(ShamirError, match="duplicates"):
        shamir.reconstruct([shares[0], shares[0], shares[1]], 3)
    with pytest.raises(ShamirError, match="want 1 <= t <= n"):
        shamir.share(bytes(32), 6, 5)
    with pytest.raises(ShamirError, match="want 32 bytes"):
        shamir.share(b"abc", 2, 3)
    with pytest.raises(ShamirError, match="canonical"):
        shamir.decode_share(P.to_bytes(33, "little"))


def test_every_t_subset_reconstructs_small() -> None:
    secret = bytes(range(32))
    shares = shamir.share(secret, 3, 6)
    for sub in itertools.combinations(shares, 3):
        assert shamir.reconstruct(list(sub), 3) == secret


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), n=st.integers(1, 9), data=st.data())
def test_every_t_subset_reconstructs(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    shares = shamir.share(secret, t, n)
    for sub in itertools.combinations(shares, t):
        assert shamir.reconstruct(list(sub), t) == secret
    # encode/decode of share values round-trips
    assert all(shamir.decode_share(shamir.encode_share(y)) == y for _, y in shares)


def test_t_minus_one_shares_do_not_determine_the_secret() -> None:
    # With t - 1 shares fixed, every secret is consistent with some polynomial (perfect secrecy).
    s1, s2 = bytes(32), bytes([1]) + bytes(31)
    sh = shamir.share(s1, 2, 3)
    (x1, y1) = sh[0]
    # a degree-1 polynomial through (0, s2) and (x1, y1) exists
    a = (y1 - int.from_bytes(s2, "little")) * pow(x1, -1, P) % P
    assert (int.from_bytes(s2, "little") + a * x1) % P == y1


def test_reconstruct_many_matches_single() -> None:
    secrets = [random.Random(i).randbytes(32) for i in range(4)]
    xs = [2, 5, 7, 9]
    ys = shamir.share_many(secrets, 3, xs)
    assert shamir.reconstruct_many(xs[1:], [row[1:] for row in ys], 3) == secrets


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.integers(1, 10_000), min_size=1, max_size=12, unique=True))
def test_lagrange_coefficients_match_the_definition(xs: list[int]) -> None:
    want = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % P
                den = den * (xj - xi) % P
        want.append(num * pow(den, -1, P) % P)
    assert shamir.lagrange_at_zero(xs) == want
    assert sum(shamir.lagrange_at_zero(xs)) % P == 1  # interpolating the constant 1
