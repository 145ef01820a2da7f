"""The bottom helpers: L2 clip factors, the centered ring lift, stack and weight validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore import l2_clip_factors
from fedcore.ring import centered_lift
from fedcore.validate import as_stack, as_weights

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@settings(max_examples=50, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=FINITE),
       limit=st.floats(1e-3, 1e3))  # fmt: skip
def test_clipped_rows_are_within_the_limit_and_short_rows_unchanged(x: np.ndarray, limit: float) -> None:
    norms = np.linalg.norm(x, axis=1)
    f = l2_clip_factors(norms, limit)
    assert isinstance(f, np.ndarray) and f.dtype == np.float64
    clipped = x * f[:, None]
    assert (np.linalg.norm(clipped, axis=1) <= limit * (1 + 1e-12)).all()
    short = norms <= limit
    np.testing.assert_array_equal(clipped[short], x[short])
    # The torch path is the same function.
    np.testing.assert_array_equal(l2_clip_factors(torch.from_numpy(norms), limit).numpy(), f)


@settings(max_examples=100, deadline=None)
@given(bits=st.integers(2, 62), data=st.data())
def test_centered_lift_inverts_twos_complement_and_is_additive(bits: int, data: st.DataObject) -> None:
    half = 1 << (bits - 1)
    v = data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=8))
    ring = np.array([x % (1 << bits) for x in v], dtype=np.uint64)
    assert centered_lift(ring, bits).tolist() == v
    # A ring sum of values whose integer sum stays in range lifts to the integer sum.
    a, b = v[0] // 2, v[-1] // 2
    s = np.array([(a % (1 << bits) + b % (1 << bits)) % (1 << bits)], dtype=np.uint64)
    assert centered_lift(s, bits).tolist() == [a + b]


class LayerError(ValueError):
    pass


@pytest.mark.parametrize(
    ("stack", "match"),
    [
        (np.zeros((3, 2), dtype=np.int64), "floating"),
        ([[1.0]], "torch.Tensor or numpy array; got list"),
        (torch.zeros(3), r"2-D \(n, d\); got shape \(3,\)"),
        (torch.zeros(1, 3), r"at least 2 rows and one column \(d >= 1\); got shape \(1, 3\)"),
    ],
)
def test_bad_stacks_raise_the_callers_error(stack: object, match: str) -> None:
    with pytest.raises(LayerError, match=match):
        as_stack(stack, error=LayerError, min_rows=2)


def test_stacks_pass_through_and_weights_are_checked() -> None:
    x = np.ones((2, 3), dtype=">f4")  # big-endian: converted once
    assert as_stack(x).dtype == torch.float32
    g = torch.ones(2, 2, requires_grad=True)
    assert not as_stack(g).requires_grad
    assert as_weights(np.array([1.0, 3.0]), 2).tolist() == [1.0, 3.0]
    for bad, match in (([1.0], r"shape \(2,\)"), ([1.0, -1.0], ">= 0"), ([0.0, 0.0], "positive sum")):
        with pytest.raises(LayerError, match=match):
            as_weights(bad, 2, error=LayerError)
