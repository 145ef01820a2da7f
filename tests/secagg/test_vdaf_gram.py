"""secagg.vdaf.gram: the exact modular matrix product, and the Gram matrix of shared vectors from one
square correlation: correct, and the opened E is a one-time pad of X."""

from __future__ import annotations

import random

import numpy as np
import pytest

from secagg.vdaf.errors import VdafParameterError
from secagg.vdaf.field import Field, Field64, Field128
from secagg.vdaf.gram import deal_square, expand_helper, field_matmul, gram_share, masked_share, signed


def _rand(field: type[Field], shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    return field.arr([[rng.randrange(field.MODULUS) for _ in range(shape[1])] for _ in range(shape[0])])


@pytest.mark.parametrize("field", [Field64, Field128])
def test_field_matmul_is_exact(field: type[Field]) -> None:
    rng = random.Random(0)
    a, b = _rand(field, (3, 40), rng), _rand(field, (40, 2), rng)
    ai = np.array(field.to_ints(a), dtype=object).reshape(3, 40)
    bi = np.array(field.to_ints(b), dtype=object).reshape(40, 2)
    want = [int(v) % field.MODULUS for v in (ai @ bi).reshape(-1)]
    assert field.to_ints(field_matmul(field, a, b)) == want
    with pytest.raises(VdafParameterError, match="inner"):
        field_matmul(field, a, a)


def test_gram_of_shared_vectors_from_one_square_correlation() -> None:
    f, rng = Field64, np.random.default_rng(1)
    x_int = rng.integers(-(2**15), 2**15, size=(5, 30))
    x = f.arr(x_int)
    x1 = _rand(f, (5, 30), random.Random(2))
    x0 = f.sub(x, x1)
    leader, seed = deal_square(f, 5, 30)
    helper = expand_helper(f, seed, 5, 30)
    e = f.add(masked_share(f, x0, leader), masked_share(f, x1, helper))
    g = f.add(gram_share(f, 0, e, leader), gram_share(f, 1, e, helper))
    assert np.array_equal(signed(f, g), (x_int @ x_int.T).astype(np.float64))
    # E is X minus a fresh uniform A: it does not show X (no entry of E equals its entry of X)
    assert not np.any(e == x)
    other, _ = deal_square(f, 5, 30)
    assert not np.array_equal(other.a, leader.a)
