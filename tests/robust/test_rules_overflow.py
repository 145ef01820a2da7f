"""Issue 21, robust: finite stacks give finite, correct outputs; typed errors everywhere else.

Each test reproduces a failure of the bad-input campaign (huge finite rows, NaN scores,
``requires_grad`` stacks, big-endian arrays, registry mistakes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import robust
from robust.errors import (
    NonFiniteResultError,
    ParameterError,
    RobustError,
    StackError,
    UnknownNameError,
)


def honest(n: int = 10, d: int = 5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=dtype)


def with_rows(x: torch.Tensor, *values: float) -> torch.Tensor:
    rows = [torch.full((1, int(x.shape[1])), v, dtype=x.dtype) for v in values]
    return torch.cat([x, *rows])


def in_box(out: torch.Tensor, x: torch.Tensor) -> bool:
    """The output lies in the coordinate box of the honest rows (widened by their spread)."""
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    pad = (hi - lo) + 1e-9
    return bool(((out >= lo - pad) & (out <= hi + pad)).all())


RULES = {
    "dnc": lambda: robust.DnC(f=2, sub_dim=5, niters=2, seed=0),
    "bulyan": lambda: robust.Bulyan(f=2),
    "geometric_median": lambda: robust.GeometricMedian(),
    "cmls": lambda: robust.CMLS(f=2),
    "krum": lambda: robust.Krum(f=2),
    "multi_krum": lambda: robust.MultiKrum(f=2),
    "median": lambda: robust.Median(),
    "trimmed_mean": lambda: robust.TrimmedMean(f=2),
    "nnm_median": lambda: robust.Pipeline(pre=[robust.NNM(f=2)], rule=robust.Median()),
    "arc_krum": lambda: robust.Pipeline(pre=[robust.ARC(f=2)], rule=robust.Krum(f=2)),
}


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (torch.float64, (1e30,)),
        (torch.float64, (1e200,)),
        (torch.float64, (1e308, -1e308)),
        (torch.float64, (3e38, -3e38)),
        (torch.float32, (3e38,)),
        (torch.float32, (1e30, -1e30)),
    ],
)
def test_huge_finite_rows_leave_the_honest_answer(
    name: str, dtype: torch.dtype, values: tuple[float, ...]
) -> None:
    # Main: DnC raised LinAlgError (eigh), Bulyan IndexError (NaN scores), the geometric median and
    # CMLS returned NaN. Bulyan needs n >= 4f + 3 = 11 rows: 11 honest + the huge ones.
    x = honest(11, 5, dtype)
    out = RULES[name]()(with_rows(x, *values))
    assert out.dtype == dtype
    assert bool(torch.isfinite(out).all()), out
    assert in_box(out, x), (out, x)


def test_fltrust_with_an_overflowing_row_is_finite_and_ignores_its_size() -> None:
    # Main: NaN from a float32 row of 3e38 (||x||^2 overflows float32).
    x = honest(6, 4, torch.float32)
    root = x.mean(dim=0)
    want = robust.FLTrust()(with_rows(x, 3.0), root=root)
    got = robust.FLTrust()(with_rows(x, 3e38), root=root)
    torch.testing.assert_close(got, want)  # FLTrust rescales every row to ||root||


def test_float16_fltrust_row_of_60000_is_finite() -> None:
    x = honest(6, 4, torch.float32).half()
    out = robust.FLTrust()(with_rows(x, 60000.0), root=x.float().mean(dim=0).half())
    assert out.dtype == torch.float16 and bool(torch.isfinite(out).all())


def test_rescaling_is_exact_for_homogeneous_rules() -> None:
    # rule(2^k x) == 2^k rule(x) bit for bit: the rescale only changes exponents.
    x = honest(11, 5)
    big = x * 2.0**900
    for name, build in RULES.items():
        if name == "geometric_median":  # iterative to a tolerance: equal up to it
            torch.testing.assert_close(build()(big) / 2.0**900, build()(x), rtol=1e-6, atol=1e-6)
            continue
        assert torch.equal(build()(big), build()(x) * 2.0**900), name


def test_result_that_overflows_the_dtype_is_a_typed_error() -> None:
    # The honest answer itself is not representable: FLTrust scales to ||root|| > float32 max.
    x = torch.zeros(4, 4)
    x[:, 0] = 1.0  # every row along e1: the output is ||root|| e1 = 6e38 e1
    with pytest.raises(NonFiniteResultError, match="non-finite result"):
        robust.FLTrust()(x, root=torch.full((4,), 3e38))


def build(name: str) -> robust.Aggregator | robust.PreAggregator:
    """A registered rule (or ``pre:<name>`` pre-aggregator) with f = 2 where it takes one."""
    if name.startswith("pre:"):
        table: dict[str, dict[str, Any]] = {"clip": {"c": 1.0}, "nnm": {"f": 2}, "arc": {"f": 2}}
        kw = table.get(name[4:], {"seed": 0})
        return robust.make_pre(name[4:], **kw)
    no_f = ("mean", "median", "geometric_median", "centered_clipping", "sign_majority", "fltrust")
    extra: dict[str, object] = {"seed": 0} if name == "dnc" else {}
    return robust.make(name) if name in no_f else robust.make(name, f=2, **extra)


ALL = sorted(robust.AGGREGATORS.names()) + ["pre:" + p for p in robust.PRE_AGGREGATORS.names()]


@pytest.mark.parametrize("name", ALL)
def test_requires_grad_stacks_are_detached(name: str) -> None:
    # Main: RuntimeError (out= with autograd) in cmls, geometric_median, nnm, clip, arc, bucketing.
    x = honest(11, 5)
    kw: dict[str, object] = {}
    if getattr(build(name), "needs_root", False):
        kw["root"] = torch.ones(5, dtype=torch.float64, requires_grad=True)
    out = build(name)(x.clone().requires_grad_(True), **kw)
    assert not out.requires_grad
    torch.testing.assert_close(out, build(name)(x, **kw))  # fresh objects: same seed, same state


def test_big_endian_numpy_stacks_are_converted() -> None:
    x = honest(11, 5).numpy()
    for name in ("median", "krum", "trimmed_mean"):
        agg = robust.make(name) if name == "median" else robust.make(name, f=2)
        assert torch.equal(agg(x.astype(">f8")), agg(x)), name


@pytest.mark.parametrize(
    ("stack", "match"),
    [
        (np.zeros((3, 2), dtype=np.int64), "floating"),
        (np.zeros((3, 2), dtype=np.complex128), "floating"),
        ([[1.0, 2.0]], "torch.Tensor or numpy array; got list"),
        (torch.zeros(3), r"2-D \(n, d\); got shape \(3,\)"),
        (torch.zeros(0, 3), "at least one row"),
    ],
)
def test_bad_stacks_are_stack_errors(stack: object, match: str) -> None:
    with pytest.raises(StackError, match=match):
        robust.Median()(stack)


def test_registry_errors_are_typed_and_say_got_want() -> None:
    with pytest.raises(UnknownNameError, match="unknown aggregator 'krumm'; want one of: ") as e:
        robust.make("krumm", f=1)
    assert isinstance(e.value, KeyError) and isinstance(e.value, RobustError)
    with pytest.raises(
        ParameterError, match=r"got keyword arguments \['ff'\].*want parameters among \['f'\]"
    ):
        robust.make("krum", ff=1)
    with pytest.raises(ParameterError, match="missing a required argument: 'c'"):
        robust.make_pre("clip")
    with pytest.raises(UnknownNameError):
        robust.make(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: robust.MultiKrum(f=2, m=0), "m must be >= 1"),
        (lambda: robust.CenteredClipping(tau=-1.0), "tau must be a finite number > 0"),
        (lambda: robust.DnC(f=1, sub_dim=0), "sub_dim and niters must be >= 1"),
        (lambda: robust.NNM(f=-1), "f must be >= 0"),
        (lambda: robust.Bucketing(s=0), "s must be >= 1"),
        (lambda: robust.Krum(f=1.5), "f must be an int"),  # type: ignore[arg-type]
    ],
)
def test_out_of_range_parameters_are_parameter_errors(factory: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        factory()  # type: ignore[operator]
