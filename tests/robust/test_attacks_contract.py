"""The attack contract: context validation, registry, shapes, knowledge, strength, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robust import attacks as A

N, F, D = 10, 3, 7
EXPECTED_NAMES = {
    "none",
    "alie",
    "ipm",
    "sign_flip",
    "min_max",
    "min_sum",
    "mimic",
    "gaussian",
    "scaling",
    "large_norm",
    "non_finite",
    "calibrated",
}


def _median(stack: torch.Tensor) -> torch.Tensor:
    return stack.median(dim=0).values


def _build(name: str) -> A.Attack:
    if name == "calibrated":
        return A.make("calibrated", attack="ipm", rule=_median)
    return A.make(name)


def _data(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(F, D, generator=g, dtype=dtype) + 1.0
    honest = torch.randn(N - F, D, generator=g, dtype=dtype) + 1.0
    return own, honest


def _ctx(**kw: object) -> A.AttackContext:
    return A.AttackContext(n=N, f=F, **kw)  # type: ignore[arg-type]


ALL = sorted(EXPECTED_NAMES)


def test_registry_holds_exactly_the_contract_names() -> None:
    assert set(A.ATTACKS.names()) == EXPECTED_NAMES


def test_registry_refuses_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown attack 'alei'"):
        A.make("alei")


@pytest.mark.parametrize(
    ("name", "kw"), [("alie", {"zz": 1.0}), ("ipm", {"epsilon": 0.1}), ("min_max", {"q": "unit"})]
)
def test_registry_refuses_misspelt_kwargs(name: str, kw: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        A.make(name, **kw)


def test_registering_a_name_twice_raises() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        A.ATTACKS.register("alie")(A.ALIE)


@pytest.mark.parametrize(
    ("kw", "err", "msg"),
    [
        ({"n": 0, "f": 0}, ValueError, "got n=0"),
        ({"n": 5, "f": 5}, ValueError, "got f=5, n=5"),
        ({"n": 5, "f": -1}, ValueError, "got f=-1"),
        ({"n": True, "f": 0}, TypeError, "got bool"),
        ({"n": 5.0, "f": 1}, TypeError, "got float"),
        ({"n": 5, "f": 1, "rule": 3}, TypeError, "got int"),
        ({"n": 5, "f": 1, "generator": np.random.default_rng(0)}, TypeError, "torch.Generator"),
    ],
)
def test_context_validation(kw: dict[str, object], err: type[Exception], msg: str) -> None:
    with pytest.raises(err, match=msg):
        A.AttackContext(**kw)  # type: ignore[arg-type]


def test_context_is_frozen() -> None:
    ctx = _ctx()
    with pytest.raises(AttributeError):
        ctx.f = 2  # type: ignore[misc]


@pytest.mark.parametrize("name", ALL)
def test_output_shape_dtype_and_honest_inputs_untouched(name: str) -> None:
    own, honest = _data(dtype=torch.float64)
    own0, honest0 = own.clone(), honest.clone()
    out = _build(name)(own, honest, ctx=_ctx(generator=torch.Generator().manual_seed(1)))
    assert out.shape == (F, D)
    assert out.dtype == torch.float64
    assert torch.equal(own, own0) and torch.equal(honest, honest0)


@pytest.mark.parametrize("name", ALL)
def test_numpy_input_is_accepted(name: str) -> None:
    own, honest = _data()
    ctx = _ctx(generator=torch.Generator().manual_seed(1))
    out = _build(name)(own.numpy(), honest.numpy(), ctx=ctx)
    ref = _build(name)(own, honest, ctx=_ctx(generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(out, ref, equal_nan=True)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("own_shape", "honest_shape", "match"),
    [
        ((F + 1, D), (N - F, D), "own must have f=3 rows"),
        ((D,), (N - F, D), "own must be 2-D"),
        ((F, 0), (N - F, 0), "d >= 1"),
        ((F, D), (N - F - 1, D), "honest must have shape"),
        ((F, D), (N - F, D + 1), "honest must have shape"),
    ],
)
def test_bad_shapes_raise(
    name: str, own_shape: tuple[int, ...], honest_shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _build(name)(torch.zeros(own_shape), torch.zeros(honest_shape), ctx=_ctx())


@pytest.mark.parametrize("name", ["alie", "sign_flip"])
def test_non_tensor_and_integer_inputs_raise(name: str) -> None:
    with pytest.raises(TypeError, match="floating values"):
        _build(name)(torch.zeros(F, D, dtype=torch.int64), ctx=_ctx())
    with pytest.raises(TypeError, match="got list"):
        _build(name)([[0.0] * D] * F, ctx=_ctx())
    with pytest.raises(TypeError, match="AttackContext"):
        _build(name)(torch.zeros(F, D), ctx=(N, F))  # type: ignore[arg-type]


OMNISCIENT = [
    A.Mimic(),
    A.ALIE(omniscient=True),
    A.IPM(omniscient=True),
    A.MinMax(omniscient=True),
    A.MinSum(p="std", omniscient=True),
    A.Calibrated("alie", rule=_median, omniscient=True),
]


@pytest.mark.parametrize("atk", OMNISCIENT, ids=lambda a: type(a).__name__)
def test_omniscient_attack_without_honest_raises(atk: A.Attack) -> None:
    assert atk.omniscient
    own, _ = _data()
    with pytest.raises(A.KnowledgeError, match="got honest=None"):
        atk(own, ctx=_ctx())


@pytest.mark.parametrize("name", [n for n in ALL if n != "mimic"])
def test_non_omniscient_attack_ignores_honest(name: str) -> None:
    atk = _build(name)
    assert not atk.omniscient
    own, honest = _data()
    garbage = torch.full_like(honest, 1e6)
    outs = [
        atk(own, h, ctx=_ctx(generator=torch.Generator().manual_seed(7))) for h in (None, honest, garbage)
    ]
    torch.testing.assert_close(outs[0], outs[1], equal_nan=True)
    torch.testing.assert_close(outs[0], outs[2], equal_nan=True)


def test_omniscient_attack_uses_honest() -> None:
    own, honest = _data()
    out1 = A.IPM(eps=1.0, omniscient=True)(own, honest, ctx=_ctx())
    out2 = A.IPM(eps=1.0, omniscient=True)(own, honest + 1.0, ctx=_ctx())
    torch.testing.assert_close(out1 - out2, torch.ones_like(out1))


@pytest.mark.parametrize("name", ALL)
def test_zero_byzantine_returns_empty(name: str) -> None:
    own = torch.zeros(0, D)
    honest = torch.randn(N, D)
    out = _build(name)(own, honest, ctx=A.AttackContext(n=N, f=0))
    assert out.shape == (0, D)


@pytest.mark.parametrize(
    ("cls", "strength", "value"),
    [
        (A.ALIE, "z", 3.0),
        (A.IPM, "eps", 2.5),
        (A.Scaling, "factor", 4.0),
        (A.Gaussian, "sigma", 0.3),
        (A.LargeNorm, "norm", 1e3),
    ],
)
def test_with_strength_returns_modified_copy(cls: type[A.Attack], strength: str, value: float) -> None:
    atk = cls()
    assert cls.strength == strength
    new = atk.with_strength(value)
    assert type(new) is cls and new is not atk
    assert getattr(new, strength) == value and new.get_strength() == value
    assert getattr(atk, strength) != value


@pytest.mark.parametrize("cls", [A.NoAttack, A.SignFlip, A.MinMax, A.MinSum, A.Mimic, A.NonFinite])
def test_attacks_without_strength(cls: type[A.Attack]) -> None:
    assert cls.strength is None
    with pytest.raises(A.AttackError, match="want an attack with a strength parameter"):
        cls().with_strength(1.0)


@pytest.mark.parametrize(
    ("name", "kw", "err"),
    [
        ("ipm", {"eps": -0.1}, ValueError),
        ("ipm", {"eps": float("nan")}, ValueError),
        ("gaussian", {"sigma": float("inf")}, ValueError),
        ("scaling", {"factor": "big"}, TypeError),
        ("alie", {"z": float("nan")}, ValueError),
        ("large_norm", {"norm": -1.0}, ValueError),
        ("non_finite", {"kind": "NaN!"}, ValueError),
        ("min_max", {"p": "l2"}, ValueError),
        ("min_sum", {"omniscient": 1}, TypeError),
        ("mimic", {"target": -1}, ValueError),
    ],
)
def test_bad_parameters_raise(name: str, kw: dict[str, object], err: type[Exception]) -> None:
    with pytest.raises(err, match="got"):
        A.make(name, **kw)


def test_with_strength_validates_value() -> None:
    with pytest.raises(ValueError, match="eps=-1"):
        A.IPM().with_strength(-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_tensors_stay_on_device(name: str) -> None:
    own, honest = (t.cuda() for t in _data())
    out = _build(name)(own, honest, ctx=_ctx(generator=torch.Generator().manual_seed(1)))
    assert out.device == own.device and out.shape == (F, D)
    cpu = _build(name)(own.cpu(), honest.cpu(), ctx=_ctx(generator=torch.Generator().manual_seed(1)))
    # a CPU generator draws the same noise for CUDA inputs (drawn on its device, then moved)
    torch.testing.assert_close(out.cpu(), cpu, equal_nan=True, rtol=1e-4, atol=1e-4)
