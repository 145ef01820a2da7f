"""PrivateClient: DP-SGD through Opacus on a private copy of a tiny model."""

from __future__ import annotations

import warnings

import pytest
import torch
from _dp_stats import assert_gaussian_std
from opacus import GradSampleModule
from torch import nn
from torch.utils.data import TensorDataset

from dp import AlreadyAttachedError, PrivacyConfigError, PrivateClient
from dp.client import is_opacus_module

N = 24  # examples per client


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook")


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    )


def tiny_data() -> TensorDataset:
    g = torch.Generator().manual_seed(2)
    return TensorDataset(torch.randn(N, 1, 6, 6, generator=g) * 3, torch.randint(0, 3, (N,), generator=g))


def flat(model: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def make(model: nn.Module, **kw: object) -> PrivateClient:
    args: dict[str, object] = {"noise_multiplier": 0.0, "max_grad_norm": 0.5, "batch_size": N, "lr": 0.1}
    args.update(kw)
    return PrivateClient(model, tiny_data(), **args)  # type: ignore[arg-type]


def manual_clipped_mean_grad(model: nn.Module, clip: float) -> torch.Tensor:
    """sum_i clip(g_i) / N computed one example at a time on the *fixed* (GroupNorm) model."""
    from opacus.validators import ModuleValidator

    m = ModuleValidator.fix(__import__("copy").deepcopy(model))
    x, y = tiny_data().tensors
    total = torch.zeros(sum(p.numel() for p in m.parameters()))
    for i in range(N):
        m.zero_grad()
        nn.functional.cross_entropy(m(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.nn.utils.parameters_to_vector([p.grad for p in m.parameters()])
        total += g * min(1.0, clip / float(g.norm()))
    return total / N


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_fedsgd_is_mean_of_per_sample_clipped_grads(mode: str) -> None:
    # q = 1 (batch_size = N): the Poisson batch is the whole dataset, so the answer is deterministic.
    model = tiny_model()
    client = make(model, grad_sample_mode=mode)
    out = client.compute(flat(model), mode="fedsgd")
    want = manual_clipped_mean_grad(model, 0.5)
    assert out.shape == want.shape
    assert torch.allclose(out, want, atol=1e-5)
    assert float(out.norm()) <= 0.5 + 1e-6  # every per-sample norm is clipped, so the mean is too


def test_fedavg_returns_parameter_delta_of_dp_sgd_steps() -> None:
    model = tiny_model()
    client = make(model, lr=0.3)
    g = manual_clipped_mean_grad(model, 0.5)
    delta = client.compute(flat(model), mode="fedavg", local_steps=1)
    assert torch.allclose(delta, -0.3 * g, atol=1e-5)
    two = client.compute(flat(model), mode="fedavg", local_steps=2)
    assert not torch.allclose(two, delta)
    assert client.steps == 3


def test_fedsgd_noise_has_configured_std() -> None:
    # Same deterministic batch: private - clean = N(0, (zC)^2) / N per coordinate.
    model = tiny_model()
    z, c = 1.5, 0.5
    clean = make(model, max_grad_norm=c).compute(flat(model), mode="fedsgd")
    noisy_client = make(model, max_grad_norm=c, noise_multiplier=z)
    samples = torch.stack([noisy_client.compute(flat(model), mode="fedsgd") - clean for _ in range(40)])
    assert_gaussian_std(samples * N, z * c)


def test_server_model_is_never_touched() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    client = make(model, noise_multiplier=1.0)
    client.compute(flat(model) + 1.0, mode="fedavg", local_steps=2)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(not hasattr(p, "grad_sample") for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not is_opacus_module(model)
    # and a second client on the same server model is fine: each has its own copy
    make(model).compute(flat(model), mode="fedsgd")


def test_never_attached_twice() -> None:
    model = tiny_model()
    client = make(model)
    with pytest.raises(AlreadyAttachedError, match="second attach"):
        client.attach()
    with pytest.raises(AlreadyAttachedError, match="already made private"):
        PrivateClient(
            GradSampleModule(nn.Linear(3, 2)),
            tiny_data(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            batch_size=4,
            lr=0.1,
        )
    with pytest.raises(AlreadyAttachedError):
        make(client._plain)
    # a module whose wrapper was made elsewhere still carries Opacus's hooks
    inner = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    GradSampleModule(inner)
    with pytest.raises(AlreadyAttachedError, match="already made private"):
        make(inner)


def test_default_noise_is_not_from_the_global_seed() -> None:
    model = tiny_model()
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append(make(model, noise_multiplier=1.0).compute(flat(model), mode="fedsgd"))
    assert not torch.equal(outs[0], outs[1])


def test_reproducible_only_when_asked() -> None:
    model = tiny_model()
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        c = make(model, noise_multiplier=1.0, batch_size=6, secure_seed=False)
        outs.append(c.compute(flat(model), mode="fedsgd"))
    assert torch.equal(outs[0], outs[1])


def test_epsilon_and_statement() -> None:
    model = tiny_model()
    client = make(model, noise_multiplier=1.1, batch_size=6, accountant="rdp")
    assert client.epsilon(1e-5) == 0.0
    client.compute(flat(model), mode="fedavg", local_steps=3)
    e3 = client.epsilon(1e-5)
    client.compute(flat(model), mode="fedsgd")
    s = client.privacy_statement(1e-5)
    assert 0 < e3 < s["epsilon"] < float("inf")
    assert s["level"] == "sample" and s["accountant"] == "rdp" and "q=0.25" in s["sampling"]
    assert s["steps"] == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0}, "got noise_multiplier=-1.0"),
        ({"max_grad_norm": 0.0}, "got max_grad_norm=0.0"),
        ({"batch_size": 0}, "got batch_size=0"),
        ({"accountant": "gdp"}, "got accountant='gdp'"),
        ({"grad_sample_mode": "magic"}, "got grad_sample_mode='magic'"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(PrivacyConfigError, match=match):
        make(tiny_model(), **kwargs)


def test_bad_compute_arguments() -> None:
    model = tiny_model()
    client = make(model)
    with pytest.raises(PrivacyConfigError, match=r"got global_params of shape \(3,\)"):
        client.compute(torch.zeros(3))
    with pytest.raises(PrivacyConfigError, match="got mode='sgd'"):
        client.compute(flat(model), mode="sgd")
    with pytest.raises(PrivacyConfigError, match="got local_steps=0"):
        client.compute(flat(model), mode="fedavg", local_steps=0)


def test_accepts_a_features_labels_container() -> None:
    class Pair:
        def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y = x, y

    model = tiny_model()
    x, y = tiny_data().tensors
    a = PrivateClient(model, Pair(x, y), noise_multiplier=0.0, max_grad_norm=0.5, batch_size=N, lr=0.1)
    assert torch.allclose(a.compute(flat(model)), manual_clipped_mean_grad(model, 0.5), atol=1e-5)
    with pytest.raises(PrivacyConfigError, match="got data of type list"):
        PrivateClient(model, [1, 2], noise_multiplier=0.0, max_grad_norm=0.5, batch_size=2, lr=0.1)
