"""Client computation: batched == vmap == loop == plain autograd; data-level attacks; minibatch sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsec.training import (
    ClientComputer,
    ClientData,
    FlatModel,
    apply_trigger,
    evaluate,
    poison,
    trigger_size,
)


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)
    )


def _data(n_clients: int = 5, per: int = 6) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    g = torch.Generator().manual_seed(1)
    n = n_clients * per
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    perm = np.random.default_rng(0).permutation(n)
    return x, y, [perm[i * per : (i + 1) * per] for i in range(n_clients)]


def _computer(
    model: nn.Module, mode: str, engine: str = "auto", wd: float = 0.0
) -> tuple[ClientComputer, FlatModel]:
    x, y, parts = _data()
    fm = FlatModel(model)
    data = ClientData.build(x, y, parts, torch.device("cpu"))
    cc = ClientComputer(
        fm, data, mode=mode, lr=0.1, batch_size=4, local_steps=3, weight_decay=wd, engine=engine
    )
    return cc, fm


@pytest.mark.parametrize("mode", ["fedsgd", "fedavg"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_every_engine_gives_the_loops_updates(mode: str, wd: float) -> None:
    model = _tiny_cnn()
    out = {}
    for engine in ("batched", "vmap", "loop", "auto"):
        cc, fm = _computer(model, mode, engine, wd)
        w = fm.flat()
        out[engine] = cc.updates(w, torch.tensor([0, 2, 4]), torch.Generator().manual_seed(7))
        assert cc.engine == ("batched" if engine == "auto" else engine)
    assert out["loop"].shape == (3, fm.d)
    for engine in ("batched", "vmap", "auto"):
        torch.testing.assert_close(out[engine], out["loop"], rtol=1e-4, atol=1e-6)


def test_fedsgd_update_is_the_minibatch_gradient_of_the_client() -> None:
    """Known answer: replay the sampler and differentiate the mean loss with nn.Module autograd."""
    model = _tiny_cnn()
    cc, fm = _computer(model, "fedsgd")
    w = fm.flat()
    clients = torch.tensor([1, 3])
    got = cc.updates(w, clients, torch.Generator().manual_seed(3))
    xb, yb = cc.data.sample(clients, 4, torch.Generator().manual_seed(3))
    for row in range(2):
        model.zero_grad()
        F.cross_entropy(model(xb[row]), yb[row]).backward()
        want = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-7)


def test_fedavg_update_is_the_model_delta_of_local_sgd() -> None:
    model = _tiny_cnn()
    cc, fm = _computer(model, "fedavg")
    w = fm.flat()
    got = cc.updates(w, torch.tensor([2]), torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    wl = w.clone()
    for _ in range(3):
        xb, yb = cc.data.sample(torch.tensor([2]), 4, gen)
        fm.load(wl)
        model.zero_grad()
        F.cross_entropy(model(xb[0]), yb[0]).backward()
        wl = wl - 0.1 * torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got[0], w - wl, rtol=1e-5, atol=1e-7)


def test_loop_fallback_when_vmap_cannot_batch_the_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
    cc, fm = _computer(model, "fedsgd")
    with pytest.warns(RuntimeWarning, match="falling back to a Python loop"):
        g = cc.updates(fm.flat(), torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert cc.engine == "loop"
    assert g.shape == (2, fm.d) and torch.isfinite(g).all()


def test_sampling_draws_only_each_clients_own_samples() -> None:
    x = torch.arange(30, dtype=torch.float32)[:, None]
    y = torch.zeros(30, dtype=torch.long)
    parts = [np.array([3, 7]), np.array([0, 1, 2, 4, 5]), np.arange(8, 30)]
    data = ClientData.build(x, y, parts, torch.device("cpu"))
    xb, _ = data.sample(torch.tensor([0, 1, 2]), 50, torch.Generator().manual_seed(0))
    for row, p in enumerate(parts):
        drawn = set(xb[row, :, 0].long().tolist())
        assert drawn <= set(p.tolist())
        assert len(drawn) == len(p) or len(p) > 20  # 50 draws hit every sample of a small client


def test_evaluate_counts_correct_predictions() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    fm = FlatModel(model)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    acc, loss = evaluate(fm, fm.flat(), x, torch.tensor([0, 1, 1, 1]), batch_size=3)
    assert acc == pytest.approx(0.75)
    want = F.cross_entropy(x, torch.tensor([0, 1, 1, 1])).item()
    assert loss == pytest.approx(want, rel=1e-6)


def test_label_flip_changes_only_byzantine_samples() -> None:
    x = torch.zeros(6, 2)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    x2, y2 = poison(x, y, np.array([1, 4]), kind="label_flip", num_classes=4, rng=np.random.default_rng(0))
    assert y2.tolist() == [0, 2, 2, 3, 3, 1]
    assert y.tolist() == [0, 1, 2, 3, 0, 1]  # inputs untouched
    assert torch.equal(x2, x)


def test_backdoor_stamps_a_trigger_and_relabels_a_fraction() -> None:
    x = torch.zeros(10, 1, 8, 8)
    y = torch.ones(10, dtype=torch.long)
    byz = np.arange(2, 10)
    x2, y2 = poison(
        x, y, byz, kind="backdoor", num_classes=3, target=2, fraction=0.5, rng=np.random.default_rng(0)
    )
    changed = (y2 == 2).nonzero().flatten().tolist()
    assert len(changed) == 4 and set(changed) <= set(byz.tolist())
    s = trigger_size((1, 8, 8))
    for i in range(10):
        stamped = bool((x2[i, 0, -s:, -s:] != 0).all())
        assert stamped == (i in changed)
        assert float(x2[i, 0, : 8 - s, :].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="want 'none', 'label_flip' or 'backdoor'"):
        poison(x, y, byz, kind="flip", num_classes=3, rng=np.random.default_rng(0))


def test_trigger_on_flat_features() -> None:
    x = torch.zeros(3, 20)
    out = apply_trigger(x, 5.0)
    assert out[:, -2:].eq(5.0).all() and out[:, :-2].eq(0).all()
