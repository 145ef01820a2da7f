"""Benchmark: fedsec's secure aggregation over Flower messages against Flower's own SecAgg+ workflow.

Both run on the same transport, :class:`fedsec.flower.secagg_loopback.LoopbackGrid`: every message is
serialized to Flower's protobuf wire format and back and handed to the node's ClientApp in this process,
one node after another. Per configuration (n clients, d float32 values each, a fraction ``--dropout`` of
them lost after ShareKeys: they receive nothing from the masked-input stage on, the costly case where
the server reconstructs their mask keys):

- fedsec ``secagg`` (complete graph, threshold t of :meth:`SecAggSum.plan`) against Flower's
  ``SecAggPlusWorkflow`` with ``num_shares = n`` (its complete graph) and the same t;
- fedsec ``secagg_plus`` with degree k (``--k``, t from its plan) against Flower with
  ``num_shares = k + 1`` and the same t.

Columns (medians over ``--repeats`` rounds, and over clients for client columns): client s = the seconds
one node's ClientApp ran over the whole round; server s = the round's wall time minus the nodes'
seconds; B up / B down = the serialized bytes one node sent / received; server B in = what the server
received in all; max err = the largest deviation from the survivors' exact float64 mean. Flower's
clients send ``[w, w x]`` quantized to ``2^22`` levels masked mod ``2^32``; fedsec's send x encoded in
``Z_{2^32}``; both clip to [-1, 1]. Flower's side is flwr 1.42's ``flwr.server.workflow.SecAggPlusWorkflow``
with ``flwr.client.mod.secaggplus_mod`` (it drives a legacy ``FedAvg`` through a ``LegacyContext``); its
round is driven directly (no initial-parameters or evaluation round).

Usage: ``python benchmarks/flower_secagg.py [--n 10 25] [--d 10000 61706] [--repeats 3] [--k 8]
[--dropout 0 0.1]``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
from collections.abc import Callable

import _bench  # noqa: F401
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import ServerConfig
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey

from fedsec.flower.secagg import RECORD, flatten, secure_mean
from fedsec.flower.secagg_loopback import LoopbackGrid
from fedsec.flower.secagg_mod import secagg_mod
from protocols.secagg_sum import SecAggPlusSum, SecAggSum

COLUMNS = (
    "protocol",
    "n",
    "d",
    "k",
    "t",
    "drop",
    "client s",
    "server s",
    "B up",
    "B down",
    "server B in",
    "max err",
)


def _fedsec_app(x: np.ndarray) -> ClientApp:
    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        i = int(ctx.node_config["partition-id"])
        return Message(RecordDict({"arrays": ArrayRecord([x[i]])}), reply_to=msg)

    return app


class _Fixed(NumPyClient):  # type: ignore[misc]
    def __init__(self, vec: np.ndarray) -> None:
        self.vec = vec

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]) -> tuple:
        return [self.vec], 1, {}


def _flower_app(x: np.ndarray) -> ClientApp:
    def client_fn(ctx: Context) -> object:
        return _Fixed(x[int(ctx.node_config["partition-id"])]).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def _node(i: int) -> int:
    return 10_000 + 7 * i


def _grid(app: ClientApp, n: int, lose: Callable[[Message], bool]) -> tuple[LoopbackGrid, list[int]]:
    nodes = [_node(i) for i in range(n)]
    config = {v: {"partition-id": i} for i, v in enumerate(nodes)}
    return LoopbackGrid({v: app for v in nodes}, node_config=config, lose=lose), nodes


def _loses(record: str, key: str, stages: tuple[str, ...], gone: set[int]) -> Callable[[Message], bool]:
    """The dropped nodes ``gone`` receive nothing from the first of ``stages`` on."""

    def lose(msg: Message) -> bool:
        rec = msg.content.config_records.get(record)
        return msg.metadata.dst_node_id in gone and rec is not None and rec.get(key) in stages

    return lose


Run = Callable[[np.ndarray, set[int]], tuple[LoopbackGrid, float, np.ndarray]]


def _run_fedsec(protocol: SecAggSum) -> Run:
    def run(x: np.ndarray, gone: set[int]) -> tuple[LoopbackGrid, float, np.ndarray]:
        lose = _loses(RECORD, "phase", ("masked_input", "consistency_check", "unmasking"), gone)
        grid, nodes = _grid(_fedsec_app(x), len(x), lose)
        content = RecordDict({"arrays": ArrayRecord([np.zeros(x.shape[1], np.float32)])})
        t0 = time.perf_counter()
        res = secure_mean(grid, nodes, content, protocol)
        return grid, time.perf_counter() - t0, res.mean

    return run


def _run_flower(shares: int, t: int) -> Run:
    def run(x: np.ndarray, gone: set[int]) -> tuple[LoopbackGrid, float, np.ndarray]:
        n, d = x.shape
        lose = _loses(RECORD_KEY_CONFIGS, Key.STAGE, (Stage.COLLECT_MASKED_VECTORS, Stage.UNMASK), gone)
        grid, nodes = _grid(_flower_app(x), n, lose)
        strategy = FedAvg(
            fraction_fit=1.0,
            min_fit_clients=n,
            min_available_clients=n,
            fraction_evaluate=0.0,
            fit_metrics_aggregation_fn=lambda metrics: {},
        )
        ctx = LegacyContext(
            Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            config=ServerConfig(num_rounds=1),
            strategy=strategy,
        )
        for v in nodes:
            ctx.client_manager.register(GridClientProxy(node_id=v, grid=grid, run_id=1))
        params = ndarrays_to_parameters([np.zeros(d, np.float32)])
        ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(params, True)
        ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: 1, WorkflowKey.START_TIME: time.time()}
        )
        workflow = SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=t, clipping_range=1.0)
        t0 = time.perf_counter()
        workflow(grid, ctx)
        wall = time.perf_counter() - t0
        return grid, wall, flatten([ctx.state.array_records[MAIN_PARAMS_RECORD]])

    return run


def _row(name: str, n: int, d: int, k: int, t: int, runs: list[tuple[LoopbackGrid, float, float]]) -> dict:
    client_s, up, down, server_s, server_in, err = [], [], [], [], [], []
    for grid, wall, e in runs:
        costs = list(grid.costs.values())
        client_s.append(statistics.median(c.seconds for c in costs))
        up.append(statistics.median(c.bytes_up for c in costs))
        down.append(statistics.median(c.bytes_down for c in costs))
        server_s.append(wall - sum(c.seconds for c in costs))
        server_in.append(sum(c.bytes_up for c in costs))
        err.append(e)
    med = statistics.median
    return {
        "protocol": name,
        "n": n,
        "d": d,
        "k": k,
        "t": t,
        "client s": f"{med(client_s):.3f}",
        "server s": f"{med(server_s):.3f}",
        "B up": int(med(up)),
        "B down": int(med(down)),
        "server B in": int(med(server_in)),
        "max err": f"{max(err):.1e}",
    }


def bench(n: int, d: int, k: int, repeats: int, dropout: float) -> list[dict]:
    rng = np.random.default_rng(n * 1_000_003 + d)
    x = rng.uniform(-0.9, 0.9, (n, d)).astype(np.float32)
    n_gone = math.ceil(dropout * n)
    gone = {_node(i) for i in range(n_gone)}
    truth = x[n_gone:].astype(np.float64).mean(0)
    full, plus = SecAggSum(), SecAggPlusSum(k=k)
    p_full, p_plus = full.plan(n), plus.plan(n)
    cases = [
        ("fedsec secagg", p_full.k, p_full.t, _run_fedsec(full)),
        ("flower secagg+ (complete)", n - 1, p_full.t, _run_flower(n, p_full.t)),
    ]
    if not p_plus.complete:
        cases += [
            ("fedsec secagg_plus", p_plus.k, p_plus.t, _run_fedsec(plus)),
            ("flower secagg+", p_plus.k, p_plus.t, _run_flower(p_plus.k + 1, p_plus.t)),
        ]
    rows = []
    for name, kk, t, run in cases:
        runs = []
        for _ in range(repeats):
            grid, wall, mean = run(x, gone)
            runs.append((grid, wall, float(np.abs(mean - truth).max())))
        rows.append(_row(name, n, d, kk, t, runs) | {"drop": n_gone})
        print(" | ".join(str(rows[-1][c]) for c in COLUMNS), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--d", type=int, nargs="+", default=[10_000, 61_706])
    ap.add_argument("--k", type=int, default=8, help="SecAgg+ degree (even); Flower gets num_shares = k + 1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--dropout", type=float, nargs="+", default=[0.0], help="fractions of clients lost after ShareKeys"
    )
    args = ap.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(" | ".join(COLUMNS))
    rows = [
        r for n in args.n for d in args.d for p in args.dropout for r in bench(n, d, args.k, args.repeats, p)
    ]
    print("\nmedians over", args.repeats, "repeats; bytes are serialized Flower messages")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
