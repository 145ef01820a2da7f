"""Does the stress grid's training converge? Two checks for docs/results/mnist1d/README.md.

``python docs/results/mnist1d/convergence.py runs/stress_mnist1d``: for every defense and beta, the
no-attack runs of the grid (ALIE z = 0: the Byzantine clients send the mean of their own honest
gradients) -- the test accuracy at rounds 60/120/180/240/300, and the gain of the last 20% of the
rounds: ``max_{t <= T} acc_t - max_{t <= 0.8 T} acc_t`` in points, mean over seeds.

``python docs/results/mnist1d/convergence.py --central [steps]``: the same model (``cnn1d``) and
optimizer trained centrally on the pooled training set: minibatches of 400 (25 clients x 16),
``m <- 0.9 m + 0.1 g``, ``w <- w - lr m`` with lr 1.0 -- the worker-momentum step of the grid with
one honest client holding all the data. Prints the test accuracy every 25 steps.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

CHECKPOINTS = (60, 120, 180, 240, 300)


def _curves(root: Path) -> dict[tuple[str, float], list[dict[int, float]]]:
    """``(defense, beta) -> [round -> accuracy]``, one curve per seed, for the ALIE z = 0 runs."""
    out: dict[tuple[str, float], list[dict[int, float]]] = defaultdict(list)
    for summary_path in sorted(root.glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        if s["attack"] != "alie" or s["strength"] != 0.0:
            continue
        rows = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").read_text().splitlines()]
        out[(s["label"], float(s["beta"]))].append({int(r["round"]): float(r["accuracy"]) for r in rows})
    return out


def grid_table(root: Path) -> str:
    head = " | ".join(f"acc@{t}" for t in CHECKPOINTS)
    lines = [
        f"| defense | beta | seeds | {head} | last-20% gain (points) |",
        "|---|---|---|" + "---|" * len(CHECKPOINTS) + "---|",
    ]
    for (label, beta), curves in sorted(_curves(root).items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        at = [statistics.mean(c.get(t, float("nan")) for c in curves) for t in CHECKPOINTS]
        horizon = max(max(c) for c in curves)
        gains = [100 * (max(c.values()) - max(a for t, a in c.items() if t <= 0.8 * horizon)) for c in curves]
        cells = " | ".join(f"{100 * a:.1f}" for a in at)
        lines.append(f"| {label} | {beta} | {len(curves)} | {cells} | {statistics.mean(gains):.1f} |")
    return "\n".join(lines)


def central(steps: int, lr: float = 1.0, batch: int = 400, seed: int = 0) -> list[tuple[int, float]]:
    import torch
    import torch.nn.functional as F

    from fedsec.data import load_dataset
    from fedsec.models import make_model

    torch.set_num_threads(1)
    train, test = load_dataset(
        "mnist1d", data_dir=None, seed=seed, n_train=4000, n_test=1000, length=40, generator_seed=42
    )
    torch.manual_seed(seed)
    model = make_model("cnn1d", tuple(train.x.shape[1:]), train.num_classes)
    params = list(model.parameters())
    buf = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(1, steps + 1):
        idx = torch.randint(0, len(train.y), (batch,), generator=gen)
        grads = torch.autograd.grad(F.cross_entropy(model(train.x[idx]), train.y[idx]), params)
        with torch.no_grad():
            for p, m, g in zip(params, buf, grads):
                m.mul_(0.9).add_(0.1 * g)
                p.sub_(lr * m)
            if t % 25 == 0:
                out.append((t, float((model(test.x).argmax(1) == test.y).float().mean())))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--central"]:
        for step, acc in central(int(sys.argv[2]) if len(sys.argv) > 2 else 600):
            print(f"step {step}: {acc:.3f}")
    else:
        print(grid_table(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/stress_mnist1d")))
