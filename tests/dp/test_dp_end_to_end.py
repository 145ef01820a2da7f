"""Heavier end-to-end cases (still seconds): private clients learn, DDG at LeNet-5 size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dp import DPFedAvg, PrivateClient, mean_rule


@pytest.mark.slow
def test_fedavg_with_dp_sgd_clients_and_dp_fedavg_learns() -> None:
    warnings.filterwarnings("ignore")
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(10, 3, generator=g)
    xs = [torch.randn(200, 10, generator=g) for _ in range(4)]
    sets = [TensorDataset(x, (x @ w_true).argmax(1)) for x in xs]
    torch.manual_seed(0)
    server = nn.Linear(10, 3)
    clients = [
        PrivateClient(server, ds, noise_multiplier=0.6, max_grad_norm=1.0, batch_size=50, lr=2.0)
        for ds in sets
    ]
    agg = DPFedAvg(mean_rule, clip=5.0, noise_multiplier=0.05, expected_clients=4)
    w = torch.nn.utils.parameters_to_vector(server.parameters()).detach()

    def accuracy(vec: torch.Tensor) -> float:
        torch.nn.utils.vector_to_parameters(vec, server.parameters())
        x = torch.cat(xs)
        with torch.no_grad():
            return float((server(x).argmax(1) == (x @ w_true).argmax(1)).float().mean())

    start = accuracy(w.clone())
    for _ in range(6):
        stack = torch.stack([c.compute(w, mode="fedavg", local_steps=3) for c in clients])
        w = w + agg(stack)
    assert accuracy(w.clone()) > max(0.85, start + 0.3)
    eps = [c.epsilon(1e-5) for c in clients]
    assert all(0 < e < float("inf") for e in eps)
    assert agg.privacy_statement(1e-5)["rounds"] == 6


@pytest.mark.slow
def test_secagg_ddp_at_lenet_size() -> None:
    from protocols.secagg_ddp import SecAggDDP

    n, d = 5, 61_706
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)) * 0.003
    proto = SecAggDDP(clip=1.0, noise_multiplier=0.5, bits=20)
    res = proto.run(x)
    err = (res.aggregate.double() - x.double().mean(0)) * n
    cfg = proto.config(n, d)
    want = 0.5 * cfg.gamma * cfg.delta2(cfg.gamma)
    assert float(err.std()) == pytest.approx(want, rel=0.05)
    assert proto.privacy_statement(1e-5)["epsilon"] > 0
