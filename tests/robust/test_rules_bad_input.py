"""Bad input: Byzantine bounds, shapes, dtypes, f, registries, non-finite rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robust
from robust.errors import ByzantineBoundError, NonFiniteError

# (name, kwargs with f, smallest n that passes, message fragment)
BOUNDS = [
    ("trimmed_mean", {"f": 3}, 7, "got f=3, n=6; TrimmedMean needs n > 2f"),
    ("krum", {"f": 6}, 15, "got f=6, n=14; Krum needs n > 2f + 2"),
    ("multi_krum", {"f": 2}, 7, "got f=2, n=6; MultiKrum needs n > 2f + 2"),
    ("bulyan", {"f": 2}, 11, "got f=2, n=10; Bulyan needs n >= 4f + 3"),
    ("cmls", {"f": 2}, 5, "got f=2, n=4; CMLS needs n > 2f"),
    ("dnc", {"f": 4, "sub_dim": 3}, 5, "got f=4, n=4; DnC needs n > c*f"),
]


@pytest.mark.parametrize(("name", "kw", "n_min", "msg"), BOUNDS)
def test_byzantine_bound(name: str, kw: dict[str, int], n_min: int, msg: str) -> None:
    rng = np.random.default_rng(0)
    agg = robust.make(name, **kw)
    agg(rng.normal(size=(n_min, 4)))  # the smallest allowed n works
    with pytest.raises(
        ByzantineBoundError, match=msg.replace("(", r"\(").replace("+", r"\+").replace("*", r"\*")
    ):
        agg(rng.normal(size=(n_min - 1, 4)))


def test_krum_bound_message_from_issue() -> None:
    with pytest.raises(ByzantineBoundError, match=r"got f=6, n=12; Krum needs n > 2f \+ 2"):
        robust.Krum(f=6)(torch.zeros(12, 3))


@pytest.mark.parametrize("name", ["nnm", "arc"])
def test_pre_aggregator_bound(name: str) -> None:
    with pytest.raises(ByzantineBoundError, match=r"got f=2, n=4; .* needs n > 2f"):
        robust.make_pre(name, f=2)(torch.zeros(4, 3))


def test_pipeline_checks_the_chain() -> None:
    """Bucketing shrinks 10 rows to 5 buckets, too few for Krum with f=2."""
    agg = robust.Pipeline(pre=[robust.Bucketing(s=2, seed=0)], rule=robust.Krum(f=2))
    with pytest.raises(ByzantineBoundError, match="got f=2, n=5"):
        agg(torch.zeros(10, 3))


ALL_RULES = {
    "mean": {},
    "median": {},
    "trimmed_mean": {"f": 1},
    "krum": {"f": 1},
    "multi_krum": {"f": 1},
    "bulyan": {"f": 1},
    "geometric_median": {},
    "centered_clipping": {},
    "dnc": {"f": 1},
    "sign_majority": {},
    "cmls": {"f": 1},
    "fltrust": {},
}


def test_registries_hold_the_contract_names() -> None:
    assert sorted(robust.AGGREGATORS) == sorted(ALL_RULES)
    assert sorted(robust.PRE_AGGREGATORS) == ["arc", "bucketing", "clip", "nnm"]


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(5),
        torch.zeros(2, 3, 4),
        torch.zeros(0, 3),
        torch.zeros(4, 0),
        torch.zeros(8, 3, dtype=torch.int64),
        np.zeros((8, 3), dtype=np.int32),
        [[1.0, 2.0]],
    ],
    ids=["1d", "3d", "no_rows", "no_cols", "int_tensor", "int_array", "list"],
)
@pytest.mark.parametrize("name", sorted(ALL_RULES))
def test_bad_stack_names_the_argument(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match="stack"):
        robust.make(name, **ALL_RULES[name])(bad, **({"root": torch.ones(3)} if name == "fltrust" else {}))


@pytest.mark.parametrize("name", [k for k, v in ALL_RULES.items() if "f" in v])
@pytest.mark.parametrize("f", [-1, 1.5, True, "2"])
def test_bad_f(name: str, f: object) -> None:
    with pytest.raises(ValueError, match="f must be"):
        robust.make(name, f=f)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: robust.MultiKrum(f=1, m=0), "m must be"),
        (lambda: robust.GeometricMedian(tol=0), "tol must be"),
        (lambda: robust.GeometricMedian(max_iter=0), "max_iter must be"),
        (lambda: robust.CenteredClipping(tau=-1), "tau must be"),
        (lambda: robust.CenteredClipping(iters=0), "iters must be"),
        (lambda: robust.DnC(f=1, sub_dim=0), "sub_dim"),
        (lambda: robust.DnC(f=1, c=float("nan")), "c must be"),
        (lambda: robust.SignMajority(scale=0), "scale must be"),
        (lambda: robust.CMLS(f=1, penalty=2.0), "penalty must be"),
        (lambda: robust.Clip(c=float("inf")), "c must be"),
        (lambda: robust.Bucketing(s=0), "s must be"),
        (lambda: robust.Reputation(robust.Median(), decay=1.5), "decay must be"),
        (lambda: robust.Reputation(robust.Median(), radius=0), "radius must be"),
        (lambda: robust.Reputation("median"), "rule must be"),  # type: ignore[arg-type]
        (lambda: robust.Pipeline(pre=[robust.Median()], rule=robust.Median()), "pre must hold"),  # type: ignore[list-item]
        (lambda: robust.Pipeline(pre=[], rule=robust.Reputation(robust.Median())), "rule must be"),
    ],
)
def test_bad_parameters(factory: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()  # type: ignore[operator]


def test_multi_krum_m_above_n_minus_f() -> None:
    with pytest.raises(ValueError, match="m must be <= n - f; got m=9, n=10, f=2"):
        robust.MultiKrum(f=2, m=9)(torch.zeros(10, 2))


def test_registry_refuses_unknown_and_misspelt() -> None:
    with pytest.raises(KeyError, match="unknown aggregator 'krumm'"):
        robust.make("krumm", f=1)
    with pytest.raises(KeyError, match="unknown pre-aggregator"):
        robust.make_pre("bucket")
    with pytest.raises(TypeError):
        robust.make("krum", ff=1)
    with pytest.raises(ValueError, match="registered twice"):
        robust.AGGREGATORS.register("krum")(robust.Krum)


def test_fltrust_root_checks() -> None:
    x = torch.ones(4, 3)
    with pytest.raises(ValueError, match="got root=None"):
        robust.FLTrust()(x)
    with pytest.raises(ValueError, match=r"root must be a \(3,\) tensor; got \(4,\)"):
        robust.FLTrust()(x, root=torch.ones(4))
    with pytest.raises(ValueError, match="root must be finite"):
        robust.FLTrust()(x, root=torch.tensor([1.0, float("nan"), 0.0]))


@pytest.mark.parametrize(
    ("w", "match"),
    [([1.0, 2.0], r"shape \(3,\)"), ([1.0, -1.0, 1.0], ">= 0"), ([0.0, 0.0, 0.0], "positive sum")],
)
def test_mean_weights_checks(w: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        robust.Mean()(torch.ones(3, 2), weights=torch.tensor(w))


def test_unexpected_keyword_is_refused() -> None:
    with pytest.raises(TypeError, match="weight"):
        robust.Mean()(torch.ones(3, 2), weight=torch.ones(3))


# ---- non-finite rows -----------------------------------------------------------------------------

F_RULES = {
    "trimmed_mean": lambda f: robust.TrimmedMean(f=f),
    "krum": lambda f: robust.Krum(f=f),
    "multi_krum": lambda f: robust.MultiKrum(f=f),
    "bulyan": lambda f: robust.Bulyan(f=f),
    "cmls": lambda f: robust.CMLS(f=f),
    "dnc": lambda f: robust.DnC(f=f, sub_dim=3, seed=0),
    "nnm_krum": lambda f: robust.Pipeline(pre=[robust.NNM(f=f)], rule=robust.MultiKrum(f=f)),
    "arc_krum": lambda f: robust.Pipeline(pre=[robust.ARC(f=f)], rule=robust.MultiKrum(f=f)),
    "clip_trimmed_mean": lambda f: robust.Pipeline(pre=[robust.Clip(c=1.5)], rule=robust.TrimmedMean(f=f)),
}


@pytest.mark.parametrize(
    "factory",
    [
        robust.Median,
        robust.GeometricMedian,
        lambda: robust.CenteredClipping(tau=1.0),
        robust.SignMajority,
        robust.FLTrust,
    ],
)
def test_rules_without_f_drop_non_finite_rows(factory: object) -> None:
    x = np.random.default_rng(4).normal(size=(9, 5)) + 0.5
    bad = x.copy()
    bad[2] = -np.inf
    bad[6, 4] = np.nan
    finite_rows = [0, 1, 3, 4, 5, 7, 8]
    kw = {"root": torch.ones(5, dtype=torch.float64)} if factory is robust.FLTrust else {}
    agg, ref = factory(), factory()  # type: ignore[operator]
    torch.testing.assert_close(agg(bad, **kw), ref(x[finite_rows], **kw))
    if ref.last_selection is not None:
        assert agg.last_selection == [finite_rows[i] for i in ref.last_selection]


@pytest.mark.parametrize("name", sorted(F_RULES))
def test_non_finite_rows_are_dropped_and_counted(name: str) -> None:
    """Two NaN/Inf rows among n=13 with f=2: the output is the rule on the 11 finite rows with f=0, and
    the selection indexes the given stack."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 5))
    bad = x.copy()
    bad[3, 1] = np.nan
    bad[8] = np.inf
    finite_rows = [i for i in range(13) if i not in (3, 8)]
    agg, ref = F_RULES[name](2), F_RULES[name](0)
    out = agg(torch.from_numpy(bad))
    expected = ref(torch.from_numpy(x[finite_rows]))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12)
    if ref.last_selection is not None:
        assert agg.last_selection == [finite_rows[i] for i in ref.last_selection]
        assert 3 not in agg.last_selection and 8 not in agg.last_selection


@pytest.mark.parametrize("name", sorted(F_RULES))
def test_more_non_finite_rows_than_f_raise(name: str) -> None:
    x = np.random.default_rng(2).normal(size=(13, 5))
    x[[0, 4, 9], 2] = [np.nan, np.inf, -np.inf]
    with pytest.raises(NonFiniteError, match="got 3 non-finite rows of n=13; want at most 2"):
        F_RULES[name](2)(x)


@pytest.mark.parametrize(
    ("agg", "tolerated"),
    [
        (robust.Mean(), 0),
        (robust.Median(), 3),
        (robust.GeometricMedian(), 3),
        (robust.CenteredClipping(), 3),
        (robust.SignMajority(), 3),
    ],
)
def test_rules_without_f_tolerate_less_than_half(agg: robust.Aggregator, tolerated: int) -> None:
    x = np.random.default_rng(3).normal(size=(7, 4))
    x[:tolerated] = np.nan
    assert torch.isfinite(agg(x)).all()
    x[tolerated] = np.inf
    with pytest.raises(NonFiniteError):
        agg(x)


def test_huge_finite_rows_are_not_mistaken_for_non_finite() -> None:
    """Rows whose sum overflows float32 but whose entries are finite are kept (and dealt with by the
    rule), not counted as non-finite."""
    x = np.ones((7, 4), dtype=np.float32)
    x[0] = 3e38
    agg = robust.MultiKrum(f=1)
    np.testing.assert_array_equal(agg(x).numpy(), np.ones(4, dtype=np.float32))
    assert agg.last_selection == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ALL_RULES))
def test_output_keeps_the_stack_dtype(name: str, dtype: torch.dtype) -> None:
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(9, 6))).to(dtype)
    agg = robust.make(name, **ALL_RULES[name])
    kw = {"root": x.mean(dim=0)} if agg.needs_root else {}
    for _ in range(2):  # stateful rules take another path once they hold state
        out = agg(x, **kw)
        assert out.shape == (6,) and out.dtype == dtype and bool(torch.isfinite(out).all())
