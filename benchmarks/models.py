"""Per-client gradients of every model in the zoo: vmap over clients vs a Python loop over clients.

One FedSGD step: each of n clients computes the cross-entropy gradient of one minibatch (batch 32)
at the shared global model, and the n gradients are flattened into the ``(n, d)`` stack. The
baseline is a Python loop of ``torch.func.grad`` calls, one client at a time; the contender is one
``vmap`` of the same function over clients. Both run in the same process on the same inputs, and
the table prints medians over ``--repeats`` runs after one warm-up and the ratio loop / vmap.
A second table times the data side (loading the bundled datasets, drawing partitions), a third
measures how heterogeneous each partition scheme makes 25 clients on digits.

Other processes may share the CPU: medians over repeats damp that, but absolute times move with
load. Usage: python benchmarks/models.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from _bench import median_seconds
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsec.data import label_histogram, label_skew, load_dataset, partition
from fedsec.models import make_model, num_parameters

# (model, input shape, options, clients)
CASES: list[tuple[str, tuple[int, ...], dict[str, object], int]] = [
    ("logreg", (1, 8, 8), {}, 25),
    ("mlp", (1, 8, 8), {}, 25),
    ("cnn", (1, 8, 8), {}, 25),
    ("lenet5", (1, 28, 28), {}, 25),
    ("lenet5", (3, 32, 32), {}, 17),
    ("alexnet", (3, 32, 32), {}, 4),
]
BATCH = 32


def bench_model(name: str, shape: tuple[int, ...], opts: dict[str, object], n: int, repeats: int) -> str:
    torch.manual_seed(0)
    model = make_model(name, shape, 10, **opts)
    params = {k: v.detach() for k, v in model.named_parameters()}
    xs, ys = torch.randn(n, BATCH, *shape), torch.randint(0, 10, (n, BATCH))

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    g = grad(loss)
    vg = vmap(g, in_dims=(None, 0, 0))

    def stacked() -> torch.Tensor:
        out = vg(params, xs, ys)
        return torch.cat([out[k].reshape(n, -1) for k in params], dim=1)

    def looped() -> torch.Tensor:
        rows = []
        for i in range(n):
            out = g(params, xs[i], ys[i])
            rows.append(torch.cat([out[k].reshape(-1) for k in params]))
        return torch.stack(rows)

    torch.testing.assert_close(stacked(), looped(), rtol=1e-3, atol=1e-4)
    t_vmap = median_seconds(stacked, repeats)
    t_loop = median_seconds(looped, repeats)
    d = num_parameters(model)
    label = f"{name} {'x'.join(map(str, shape))}"
    times = f"{t_loop * 1e3:>9.1f} | {t_vmap * 1e3:>9.1f} | {t_loop / t_vmap:>8.2f}x"
    return f"| {label:<18} | {d:>10,} | {n:>2} | {times} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip alexnet and the 3x32x32 LeNet-5")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} per client, "
          f"median of {args.repeats} runs")  # fmt: skip
    print("\nFedSGD gradient stack (n, d): Python loop over clients (baseline) vs vmap over clients")
    print("| model              |          d |  n |   loop ms |   vmap ms | loop/vmap |")
    print("|--------------------|-----------:|---:|----------:|----------:|----------:|")
    for name, shape, opts, n in CASES:
        if args.quick and (name == "alexnet" or shape == (3, 32, 32)):
            continue
        print(bench_model(name, shape, opts, n, args.repeats), flush=True)

    print("\nData: load the bundled datasets, draw a 25-client partition of digits' training split")
    print("| step                                         |     ms |")
    print("|----------------------------------------------|-------:|")
    rows: list[tuple[str, Callable[[], object]]] = [
        ("load_dataset('digits')", lambda: load_dataset("digits")),
        ("load_dataset('synthetic')", lambda: load_dataset("synthetic")),
    ]
    y = load_dataset("digits")[0].y.numpy()
    for scheme, beta in (("iid", 0.5), ("shards", 0.5), ("dirichlet", 0.5), ("dirichlet", 0.1)):
        label = f"partition {scheme}" + (f" beta={beta}, min_samples=8" if scheme == "dirichlet" else "")

        def draw(scheme: str = scheme, beta: float = beta) -> object:
            return partition(y, 25, scheme, beta=beta, min_samples=8, rng=np.random.default_rng(0))

        rows.append((label, draw))
    for label, fn in rows:
        print(f"| {label:<44} | {median_seconds(fn, args.repeats) * 1e3:>6.1f} |")
    skew_table(y)


def skew_table(y: np.ndarray, seeds: int = 10) -> None:
    """Heterogeneity of each scheme on digits' training split, 25 clients, means over ``seeds`` draws."""
    print(f"\nLabel skew of 25-client partitions of digits (mean over {seeds} seeds; min_samples=8)")
    print("| partition            | TV distance to global mix | classes per client | smallest | largest |")
    print("|----------------------|--------------------------:|-------------------:|---------:|--------:|")
    for scheme, beta in (("iid", 0.0), ("dirichlet", 10.0), ("dirichlet", 0.5), ("dirichlet", 0.3),
                         ("dirichlet", 0.1), ("shards", 0.0)):  # fmt: skip
        tv, k, lo, hi = [], [], [], []
        for seed in range(seeds):
            parts = partition(y, 25, scheme, beta=beta or 1.0, min_samples=8, rng=np.random.default_rng(seed))
            h = label_histogram(y, parts, 10)
            tv.append(label_skew(h))
            k.append((h > 0).sum(axis=1).mean())
            lo.append(min(map(len, parts)))
            hi.append(max(map(len, parts)))
        label = f"dirichlet beta={beta}" if scheme == "dirichlet" else scheme
        cells = f"{np.mean(tv):>25.3f} | {np.mean(k):>18.2f} | {np.mean(lo):>8.1f} | {np.mean(hi):>7.1f}"
        print(f"| {label:<20} | {cells} |")


if __name__ == "__main__":
    main()
