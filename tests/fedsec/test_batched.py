"""Client-batched execution (fedsec.batched) against per-client autograd, and the engine choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsec.batched import BatchedForward, batchable
from fedsec.models import make_model
from fedsec.training import ClientComputer, ClientData, FlatModel


def per_client_grads(model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: ``w`` ``(m, d)``, one plain autograd pass per client."""
    fm = FlatModel(model)
    rows = []
    for c in range(int(x.shape[0])):
        wc = w[c].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fm.loss(fm.unflatten(wc), x[c], y[c]), wc)
        rows.append(g)
    return torch.stack(rows)


def batched_grads(model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    fm = FlatModel(model)
    wl = w.detach().requires_grad_(True)
    logits = BatchedForward(model).logits(fm.unflatten(wl), x)
    loss = F.cross_entropy(logits, y.reshape(-1), reduction="sum") / int(x.shape[1])
    (g,) = torch.autograd.grad(loss, wl)
    return g


def _check(model: nn.Module, sample_shape: tuple[int, ...], m: int = 3, b: int = 4, classes: int = 5) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, b, *sample_shape, generator=g)
    y = torch.randint(0, classes, (m, b), generator=g)
    d = FlatModel(model).d
    w = FlatModel(model).flat() + 0.1 * torch.randn(m, d, generator=g)  # a different model per client
    torch.testing.assert_close(batched_grads(model, w, x, y), per_client_grads(model, w, x, y))


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)),
        dict(kernel_size=3, dilation=2, padding=2, bias=False),
        dict(kernel_size=2),
    ],
)
def test_convolutions_match_per_client_autograd(conv: dict) -> None:
    """Two stacked convolutions, so the second reads the first one's channels-last output in place."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, **conv), nn.ReLU(), nn.Conv2d(3, 4, **conv), nn.Tanh(), nn.Flatten(), nn.LazyLinear(5)
    )
    model(torch.zeros(1, 2, 9, 8))  # materialise the lazy layer
    _check(model, (2, 9, 8))


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=5, stride=2, padding=2),
        dict(kernel_size=3, dilation=2, padding=1, bias=False),
        dict(kernel_size=2),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_conv1d_and_group_norm_match_per_client_autograd(conv: dict, affine: bool) -> None:
    """Conv1d runs as a Conv2d of height 1; GroupNorm's per-client affine map after a shared
    normalization; the second convolution reads the first one's (normalized) output."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, **conv), nn.GroupNorm(2, 4, affine=affine), nn.ReLU(), nn.Conv1d(4, 6, **conv),
        nn.ReLU(), nn.Flatten(), nn.LazyLinear(5),
    )  # fmt: skip
    model(torch.zeros(1, 2, 11))
    _check(model, (2, 11))


def test_group_norm_on_images_matches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(5))
    model(torch.zeros(1, 1, 6, 5))
    _check(model, (1, 6, 5))


def test_linear_on_extra_leading_dimensions() -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(3, 6)
            self.head = nn.Linear(6, 5, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.embed(x)).mean(1))  # (N, T, 3) -> (N, 5)

    torch.manual_seed(0)
    _check(Tokens(), (7, 3))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("cnn", (1, 8, 8)), ("mlp", (1, 8, 8)), ("logreg", (4,)), ("lenet5", (1, 28, 28)), ("cnn1d", (1, 40))],
)
def test_registered_models_match_per_client_autograd(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _check(make_model(name, shape, 5), shape, m=2, b=3)


def test_cnn_max_pooling_variant_matches() -> None:
    torch.manual_seed(0)
    _check(make_model("cnn", (1, 8, 8), 5, downsample="max"), (1, 8, 8))


class _BatchCentered(nn.Module):
    """Subtracts the batch mean: mixes samples, invisible in the traced graph."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return self.fc(x - x.mean(0, keepdim=True))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.BatchNorm1d(4)), "BatchNorm1d"),
        (nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Flatten()), "Conv2d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Flatten()), "Conv2d"),
        (nn.Sequential(nn.Conv1d(2, 2, 3, groups=2), nn.Flatten()), "Conv1d"),
        (nn.Sequential(nn.Conv1d(1, 2, 3, padding="same"), nn.Flatten()), "Conv1d"),
        (nn.Sequential(nn.Conv1d(1, 2, 3, padding_mode="circular"), nn.Flatten()), "Conv1d"),
    ],
)
def test_models_outside_the_batched_form_are_refused(model: nn.Module, reason: str) -> None:
    got = batchable(model)
    assert got is not None and reason in got
    with pytest.raises(ValueError, match="cannot run client-batched"):
        BatchedForward(model)


def test_parameter_read_outside_a_layer_is_refused() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * self.scale

    assert "scale" in str(batchable(Scaled()))


def test_untraceable_model_is_refused() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    assert "torch.fx" in str(batchable(Branchy()))
    assert batchable(nn.Sequential(nn.Linear(4, 3))) is None


def _computer(model: nn.Module, engine: str, shape: tuple[int, ...]) -> tuple[ClientComputer, FlatModel]:
    g = torch.Generator().manual_seed(1)
    n = 12
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 5, (n,), generator=g)
    parts = [np.arange(i, n, 3) for i in range(3)]
    fm = FlatModel(model)
    data = ClientData.build(x, y, parts, torch.device("cpu"))
    cc = ClientComputer(
        fm, data, mode="fedsgd", lr=0.1, batch_size=4, local_steps=1, weight_decay=0.0, engine=engine
    )
    return cc, fm


def test_auto_keeps_vmap_when_the_batched_result_disagrees() -> None:
    torch.manual_seed(0)
    model = _BatchCentered()
    assert batchable(model) is None  # the mixing is invisible to the graph check ...
    cc, fm = _computer(model, "auto", (6,))
    got = cc.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0))
    assert cc.engine == "vmap"  # ... and caught by the first-call comparison
    cl, _ = _computer(model, "loop", (6,))
    torch.testing.assert_close(got, cl.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0)))
    cb, _ = _computer(model, "batched", (6,))
    with pytest.raises(ValueError, match="differ from per-client autograd"):
        cb.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0))


def test_auto_uses_vmap_for_large_feature_maps() -> None:
    torch.manual_seed(0)
    cc, fm = _computer(make_model("lenet5", (1, 28, 28), 5), "auto", (1, 28, 28))
    cc.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0))
    assert cc.engine == "vmap"
    cs, fs = _computer(make_model("cnn", (1, 8, 8), 5), "auto", (1, 8, 8))
    cs.updates(fs.flat(), torch.arange(3), torch.Generator().manual_seed(0))
    assert cs.engine == "batched"
    c1, f1 = _computer(make_model("cnn1d", (1, 40), 5), "auto", (1, 40))
    c1.updates(f1.flat(), torch.arange(3), torch.Generator().manual_seed(0))
    assert c1.engine == "batched"  # 1-D feature maps of 20 and 10 positions


def test_batched_engine_on_an_unbatchable_model_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match=r"engine 'batched'.*BatchNorm1d"):
        _computer(model, "batched", (6,))
    with pytest.raises(ValueError, match="engine: got 'jit'"):
        _computer(model, "jit", (6,))


class _FixedBatch(nn.Module):
    """Traceable and Linear-only, but hard-codes the batch size (4, as ``_computer`` draws): per client
    it runs, on the stacked batch of all clients the batched forward fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(4, -1))


def test_auto_falls_back_when_the_batched_run_fails() -> None:
    torch.manual_seed(0)
    model = _FixedBatch()
    assert batchable(model) is None
    cc, fm = _computer(model, "auto", (6,))
    g = cc.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0))
    assert cc.engine == "vmap" and g.shape == (3, fm.d)
    cb, _ = _computer(model, "batched", (6,))
    with pytest.raises(ValueError, match="failed to run client-batched"):
        cb.updates(fm.flat(), torch.arange(3), torch.Generator().manual_seed(0))
