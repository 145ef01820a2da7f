"""Simulation throughput: the client engines (batched matrix products, torch.func vmap) vs a Python
loop over clients, and the quickstart's rounds per second.

Table 1: seconds of client computation per round (25 clients, digits -- cnn1d: MNIST-1D, 4,000 signals
of length 40 --, batch 32, FedAvg with 2 local steps) for each model and mode; baseline = the Python
loop measured in the same run; speed-ups = loop / engine. ``auto`` is the engine the simulation picks
by default for that model.
Table 2: the bundled quickstart (digits, 25 clients, 5 ALIE attackers), every defense for a few rounds:
rounds per second of the whole round (clients, attack, aggregation, server step; evaluation excluded
by evaluating only at the end), and aggregation milliseconds per round.

Medians over repeats; the machine may be shared with other work, so absolute numbers are noisy.

    python benchmarks/simulation.py [--repeats 7] [--rounds 20] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _bench import median_seconds

from fedsec.cli import default_config
from fedsec.config import Config
from fedsec.data import load_dataset, partition
from fedsec.data.datasets import TensorData
from fedsec.models import make_model
from fedsec.simulation import simulate
from fedsec.training import ClientComputer, ClientData, FlatModel


def _dataset(model_name: str) -> tuple[TensorData, TensorData]:
    if model_name == "cnn1d":
        return load_dataset("mnist1d", seed=0, n_train=4000, n_test=1000, length=40, generator_seed=42)
    return load_dataset("digits", seed=0)


def client_seconds(
    model_name: str, mode: str, engine: str, repeats: int, n_clients: int = 25
) -> tuple[float, str]:
    train, _ = _dataset(model_name)
    parts = partition(
        train.y.numpy(), n_clients, "dirichlet", beta=0.3, min_samples=8, rng=np.random.default_rng(0)
    )
    torch.manual_seed(0)
    fm = FlatModel(make_model(model_name, tuple(train.x.shape[1:]), train.num_classes))
    data = ClientData.build(train.x, train.y, parts, torch.device("cpu"))
    cc = ClientComputer(
        fm, data, mode=mode, lr=0.1, batch_size=32, local_steps=2, weight_decay=0.0, engine=engine
    )
    w = fm.flat()
    clients = torch.arange(n_clients)
    gen = torch.Generator().manual_seed(0)
    return median_seconds(lambda: cc.updates(w, clients, gen), repeats), str(cc.engine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians over {args.repeats} repeats\n"
    )
    print("Table 1: client computation per round, 25 clients (baseline: Python loop over clients)")
    print(
        f"{'model':<6} {'mode':<7} {'d':>7} {'loop s':>9} {'vmap s':>9} {'batched s':>10} "
        f"{'vmap x':>7} {'batched x':>10} {'auto':>8}"
    )
    for model_name in ("cnn", "mlp", "logreg", "cnn1d"):
        train, _ = _dataset(model_name)
        d = FlatModel(make_model(model_name, tuple(train.x.shape[1:]), 10)).d
        for mode in ("fedsgd", "fedavg"):
            loop, _ = client_seconds(model_name, mode, "loop", args.repeats)
            vec, _ = client_seconds(model_name, mode, "vmap", args.repeats)
            bat, _ = client_seconds(model_name, mode, "batched", args.repeats)
            _, auto = client_seconds(model_name, mode, "auto", 1)
            print(
                f"{model_name:<6} {mode:<7} {d:>7} {loop:>9.4f} {vec:>9.4f} {bat:>10.4f} "
                f"{loop / vec:>6.1f}x {loop / bat:>9.1f}x {auto:>8}"
            )

    print(f"\nTable 2: quickstart defenses, {args.rounds} rounds each (evaluation only at the end)")
    cfg = Config.from_toml(default_config(), [f"train.rounds={args.rounds}", f"eval.every={args.rounds}"])
    print(f"{'defense':<20} {'rounds/s':>9} {'agg ms/round':>13} {'vs mean':>8}")
    base = None
    total_rounds = 0
    t_all = time.perf_counter()
    for unit in cfg.units():
        rps = []
        agg = []
        for _ in range(max(1, args.repeats // 3)):
            t0 = time.perf_counter()
            res = simulate(unit)
            rps.append(args.rounds / (time.perf_counter() - t0))
            agg.append(1e3 * res.summary["agg_seconds_mean"])
            total_rounds += args.rounds
        r, a = statistics.median(rps), statistics.median(agg)
        base = a if base is None else base
        print(f"{unit.defense.label:<20} {r:>9.1f} {a:>13.2f} {a / base:>7.1f}x")
    print(
        f"all defenses: {total_rounds / (time.perf_counter() - t_all):.1f} rounds/s (including data loading)"
    )


if __name__ == "__main__":
    main()
