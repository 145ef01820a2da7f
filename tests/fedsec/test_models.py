"""Model zoo: output shapes, parameter counts, shape checks, and torch.func (vmap over clients)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsec.errors import ConfigError
from fedsec.models import MODELS, make_model, num_parameters

# (name, input_shape, options); alexnet's classifier narrowed where only the mechanics matter
CASES = [
    ("logreg", (20,), {}),
    ("logreg", (1, 8, 8), {}),
    ("mlp", (20,), {}),
    ("mlp", (1, 8, 8), {"hidden": (32, 16)}),
    ("cnn", (1, 8, 8), {}),
    ("cnn", (3, 12, 10), {}),
    ("cnn", (3, 13, 9), {}),
    ("cnn", (1, 8, 8), {"downsample": "max"}),
    ("cnn", (3, 13, 9), {"downsample": "max"}),
    ("lenet5", (1, 28, 28), {}),
    ("lenet5", (3, 32, 32), {}),
    ("alexnet", (3, 32, 32), {"fc_width": 64}),
    ("cnn1d", (1, 40), {}),
    ("cnn1d", (2, 13), {"groups": 0}),
    ("cnn1d", (1, 40), {"downsample": "max", "channels": (8, 12), "groups": 2}),
]


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _lin(i: int, o: int) -> int:
    return i * o + o


def _conv1d(cin: int, cout: int, k: int, gn: bool = True) -> int:
    return cin * cout * k + cout + (2 * cout if gn else 0)  # GroupNorm: a scale and a shift per channel


def test_registry_names() -> None:
    assert MODELS.names() == ["alexnet", "cnn", "cnn1d", "lenet5", "logreg", "mlp"]


@pytest.mark.parametrize(("name", "shape", "opts"), CASES, ids=lambda v: str(v))
def test_output_shape(name: str, shape: tuple[int, ...], opts: dict[str, object]) -> None:
    torch.manual_seed(0)
    m = make_model(name, shape, 7, **opts)
    out = m(torch.randn(5, *shape))
    assert out.shape == (5, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_lenet5_classic_parameter_count() -> None:
    assert num_parameters(make_model("lenet5", (1, 28, 28), 10)) == 61_706


@pytest.mark.parametrize(
    ("name", "shape", "opts", "count"),
    [
        ("logreg", (1, 8, 8), {}, _lin(64, 10)),
        ("mlp", (1, 8, 8), {}, _lin(64, 64) + _lin(64, 10)),
        ("mlp", (20,), {"hidden": (32, 16)}, _lin(20, 32) + _lin(32, 16) + _lin(16, 10)),
        ("mlp", (20,), {"hidden": ()}, _lin(20, 10)),
        ("cnn", (1, 8, 8), {}, _conv(1, 16, 3) + _conv(16, 32, 3) + _lin(32 * 2 * 2, 64) + _lin(64, 10)),
        (
            "cnn",
            (1, 8, 8),
            {"downsample": "max"},
            _conv(1, 16, 3) + _conv(16, 32, 3) + _lin(128, 64) + _lin(64, 10),
        ),
        # 13x9 -> stride 2 twice: 7x5 -> 4x3; max pooling twice: 6x4 -> 3x2
        ("cnn", (3, 13, 9), {}, _conv(3, 16, 3) + _conv(16, 32, 3) + _lin(32 * 4 * 3, 64) + _lin(64, 10)),
        (
            "cnn",
            (3, 13, 9),
            {"downsample": "max"},
            _conv(3, 16, 3) + _conv(16, 32, 3) + _lin(32 * 3 * 2, 64) + _lin(64, 10),
        ),
        # 40 -> stride 2 twice: 20 -> 10; 13 -> 7 -> 4; max pooling twice: 40 -> 20 -> 10
        ("cnn1d", (1, 40), {}, _conv1d(1, 16, 5) + _conv1d(16, 32, 5) + _lin(320, 32) + _lin(32, 10)),
        (
            "cnn1d",
            (2, 13),
            {"groups": 0},
            _conv1d(2, 16, 5, False) + _conv1d(16, 32, 5, False) + _lin(128, 32) + _lin(32, 10),
        ),
        (
            "cnn1d",
            (1, 40),
            {"downsample": "max", "channels": (8, 12)},
            _conv1d(1, 8, 5) + _conv1d(8, 12, 5) + _lin(120, 32) + _lin(32, 10),
        ),
        (
            "lenet5",
            (3, 32, 32),
            {},
            _conv(3, 6, 5) + _conv(6, 16, 5) + _lin(400, 120) + _lin(120, 84) + _lin(84, 10),
        ),
        (
            "alexnet",
            (3, 32, 32),
            {},
            _conv(3, 64, 3)
            + _conv(64, 192, 3)
            + _conv(192, 384, 3)
            + _conv(384, 256, 3)
            + _conv(256, 256, 3)
            + _lin(1024, 4096)
            + _lin(4096, 4096)
            + _lin(4096, 10),
        ),
    ],
)
def test_parameter_counts(name: str, shape: tuple[int, ...], opts: dict[str, object], count: int) -> None:
    assert num_parameters(make_model(name, shape, 10, **opts)) == count


@pytest.mark.parametrize(("name", "shape", "opts"), CASES, ids=lambda v: str(v))
def test_no_batchnorm_no_dropout_and_opacus_accepts(
    name: str, shape: tuple[int, ...], opts: dict[str, object]
) -> None:
    from opacus.validators import ModuleValidator

    m = make_model(name, shape, 10, **opts)
    banned = (nn.modules.batchnorm._BatchNorm, nn.Dropout)
    assert not [type(mod).__name__ for mod in m.modules() if isinstance(mod, banned)]
    assert ModuleValidator.validate(m, strict=False) == []


def _loss(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]:
    def f(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    return f


@pytest.mark.parametrize(("name", "shape", "opts"), CASES, ids=lambda v: str(v))
def test_vmap_over_clients_matches_a_loop(name: str, shape: tuple[int, ...], opts: dict[str, object]) -> None:
    """FedSGD: one shared model, per-client batches; FedAvg: per-client parameters too."""
    torch.manual_seed(1)
    m = make_model(name, shape, 4, **opts)
    params = {k: v.detach() for k, v in m.named_parameters()}
    k, b = 2, 3
    xs, ys = torch.randn(k, b, *shape), torch.randint(0, 4, (k, b))
    g = grad(_loss(m))

    shared = vmap(g, in_dims=(None, 0, 0))(params, xs, ys)
    per_params = {
        n: torch.stack([p + 0.1 * i * torch.randn_like(p) for i in range(k)]) for n, p in params.items()
    }
    separate = vmap(g, in_dims=(0, 0, 0))(per_params, xs, ys)
    for i in range(k):
        ref = g(params, xs[i], ys[i])
        ref_sep = g({n: p[i] for n, p in per_params.items()}, xs[i], ys[i])
        for n in params:
            assert shared[n].shape == (k, *params[n].shape)
            torch.testing.assert_close(shared[n][i], ref[n], rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(separate[n][i], ref_sep[n], rtol=1e-3, atol=1e-4)
    # the perturbation changed something, so the per-client-parameter check is not the shared one again
    assert any(not torch.allclose(separate[n][1], shared[n][1]) for n in params)


@pytest.mark.slow
def test_vmap_full_size_alexnet() -> None:
    m = make_model("alexnet", (3, 32, 32), 10)
    params = {k: v.detach() for k, v in m.named_parameters()}
    xs, ys = torch.randn(2, 2, 3, 32, 32), torch.randint(0, 10, (2, 2))
    out = vmap(grad(_loss(m)), in_dims=(None, 0, 0))(params, xs, ys)
    ref = grad(_loss(m))(params, xs[1], ys[1])
    torch.testing.assert_close(
        out["classifier.0.weight"][1], ref["classifier.0.weight"], rtol=1e-4, atol=1e-6
    )


def test_alexnet_dropout_option_needs_vmap_randomness() -> None:
    m = make_model("alexnet", (3, 32, 32), 10, fc_width=16, dropout=0.5)
    assert sum(isinstance(mod, nn.Dropout) for mod in m.modules()) == 2
    params = {k: v.detach() for k, v in m.named_parameters()}
    xs, ys = torch.randn(2, 2, 3, 32, 32), torch.randint(0, 10, (2, 2))
    out = vmap(grad(_loss(m)), in_dims=(None, 0, 0), randomness="different")(params, xs, ys)
    assert out["classifier.1.weight"].shape == (2, 16, 1024)


@pytest.mark.parametrize(
    ("name", "shape", "msg"),
    [
        ("lenet5", (1, 8, 8), r"got input_shape=\(1, 8, 8\); want \(C, 28, 28\) or \(C, 32, 32\)"),
        ("lenet5", (784,), "want \\(C, 28, 28\\)"),
        ("alexnet", (1, 28, 28), r"want \(C, 32, 32\)"),
        ("cnn", (64,), r"want \(C, H, W\)"),
        ("cnn", (1, 3, 8), "H, W >= 4"),
        ("logreg", (), "input_shape"),
        ("logreg", (0, 3), "positive ints"),
        ("mlp", (2.5,), "positive ints"),
        ("cnn1d", (1, 8, 8), r"want \(C, L\) with L >= 4"),
        ("cnn1d", (1, 3), "L >= 4"),
    ],
)
def test_shapes_a_model_cannot_take(name: str, shape: tuple[int, ...], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        make_model(name, shape, 10)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(
        ConfigError, match="unknown model 'resnet18'; want one of: alexnet, cnn, cnn1d, lenet5, logreg, mlp"
    ):
        make_model("resnet18", (3, 32, 32), 10)


@pytest.mark.parametrize(
    ("name", "opts", "msg"),
    [
        ("mlp", {"hiden": (3,)}, "unexpected keyword argument 'hiden'"),
        ("mlp", {"hidden": (0,)}, "hidden"),
        ("mlp", {"hidden": 5}, "hidden"),
        ("cnn", {"channels": (4,)}, "channels"),
        ("cnn", {"hidden": 0}, "hidden"),
        ("cnn", {"downsample": "avg"}, "downsample: got 'avg'; want 'stride' or 'max'"),
        ("alexnet", {"dropout": 1.0}, "dropout"),
        ("alexnet", {"fc_width": 0}, "fc_width"),
        ("lenet5", {"width": 2}, "unexpected keyword argument 'width'"),
        ("cnn1d", {"groups": 3}, r"groups: got 3 for channels \(16, 32\); want 0 or an int dividing both"),
        ("cnn1d", {"groups": -1}, "groups"),
        ("cnn1d", {"channels": (4, 0)}, "channels"),
        ("cnn1d", {"hidden": True}, "hidden"),
        ("cnn1d", {"downsample": "avg"}, "downsample: got 'avg'"),
    ],
)
def test_bad_options(name: str, opts: dict[str, object], msg: str) -> None:
    shape = {"alexnet": (3, 32, 32), "lenet5": (3, 32, 32), "cnn1d": (1, 40)}.get(name, (1, 8, 8))
    with pytest.raises(ConfigError, match=msg):
        make_model(name, shape, 10, **opts)


@pytest.mark.parametrize("classes", [1, 0, 2.0, True])
def test_bad_num_classes(classes: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        make_model("logreg", (4,), classes)  # type: ignore[arg-type]


def test_models_learn_digits_quickly() -> None:
    """A few full-batch steps lower the loss for every small model: the forward pass is wired right."""
    from fedsec.data import load_dataset

    train, _ = load_dataset("digits")
    for name in ("logreg", "mlp", "cnn"):
        torch.manual_seed(0)
        m = make_model(name, train.input_shape, 10)
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        first = last = math.nan
        for step in range(20):
            loss = nn.functional.cross_entropy(m(train.x[:256]), train.y[:256])
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = float(loss.detach()) if step == 0 else first
            last = float(loss.detach())
        assert last < 0.5 * first, (name, first, last)
