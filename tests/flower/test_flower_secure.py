"""``--engine flower`` with mechanism secagg / secagg_plus: the cohort's mean by fedsec's secure
aggregation over Flower messages (fedsec.flower.secure), on an in-process Grid that serializes every
message to Flower's wire format and runs fedsec's own ClientApp per node.

What the ServerApp receives holds no client's plain update; the aggregate equals the in-process secagg
mechanism's within its fixed-point step; the round's metrics carry the meter of the messages; the
compositions that cannot run confidentially either run simulated (auto) or are refused (secure=True).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedsec.config import Config
from fedsec.flower import client_app, flower_rounds
from fedsec.flower.client_app import FlowerError
from fedsec.flower.secagg import PAYLOAD, RECORD
from fedsec.flower.secagg_loopback import LoopbackGrid
from fedsec.flower.secure import SecureStrategy, blockers, strategy_for
from fedsec.flower.strategy import FedsecStrategy
from fedsec.round import RoundRecord
from fedsec.simulation import RoundLoop, UnitResult, simulate

pytestmark = pytest.mark.flower

N = 4


def _cfg(mechanism: str = "secagg", **over: Any) -> Config:
    raw: dict[str, Any] = {
        "data": {"dataset": "digits", "n_clients": N, "min_samples": 8},
        "model": {"name": "mlp"},
        "train": {"rounds": 2, "batch_size": 8, "threads": 1, "lr": 0.1, "seed": 5},
        "output": {"plots": False},
        "defense": [{"rule": "mean", "mechanism": mechanism}],
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return Config.from_dict(raw).units()[0]


def _grid(cfg: Config) -> LoopbackGrid:
    nodes = [300 + 11 * i for i in range(N)]  # node ids unrelated to client ids
    app = client_app(cfg)
    return LoopbackGrid(
        {v: app for v in nodes}, node_config={v: {"partition-id": i} for i, v in enumerate(nodes)}
    )


class _SecureProbe(SecureStrategy):
    """Keeps every reply content the server receives and every round's metrics; zeroes the grid's
    meter after the node query, so the grid's own counts cover the secure rounds only."""

    def __init__(self, loop: RoundLoop) -> None:
        super().__init__(loop)
        self.received = []
        self.metrics_seen: list[MetricRecord] = []

    def node_map(self, grid: Grid) -> dict[int, int]:
        first = self.nodes is None
        nodes = super().node_map(grid)
        if first and isinstance(grid, LoopbackGrid):
            grid.reset_costs()
        return nodes

    def aggregate_train(self, server_round: int, replies: Any) -> tuple[Any, Any]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.metrics_seen.append(metrics)
        return arrays, metrics


class _PlainProbe(FedsecStrategy):
    """The plaintext path: keeps each round's stack of plain updates (what secure rounds must hide)."""

    stacks: list[torch.Tensor]

    def collect(self, cohort: np.ndarray, replies: list[Message]) -> torch.Tensor:
        stack = super().collect(cohort, replies)
        self.stacks = [*getattr(self, "stacks", []), stack.clone()]
        return stack


def _run(
    cfg: Config, make: Any = None, grid: LoopbackGrid | None = None
) -> tuple[UnitResult, list[RoundRecord]]:
    """The unit on Flower (``make``: the strategy factory) or, with ``make=None``, in process."""
    records: list[RoundRecord] = []
    rounds = None if make is None else flower_rounds(grid or _grid(cfg), make)
    res = simulate(cfg, rounds=rounds, observers=[lambda r: records.append(copy.deepcopy(r))])
    return res, records


def _keep(made: list[Any], kind: Any) -> Any:
    """A strategy factory that keeps what it made."""
    return lambda loop: made.append(kind(loop)) or made[-1]


@pytest.mark.parametrize("mechanism", ["secagg", "secagg_plus"])
def test_secure_rounds_hide_every_update_and_match_the_in_process_mechanism(mechanism: str) -> None:
    cfg = _cfg(mechanism)
    made: list[Any] = []
    _, plain_recs = _run(cfg, _keep(made, _PlainProbe))
    grid = _grid(cfg)
    res, recs = _run(cfg, _keep(made, _SecureProbe), grid)
    plain, secure = made
    _, ref_recs = _run(cfg)

    # the server's view: protocol payloads (uint8) only, no float array, no piece of any update's bytes
    updates = torch.cat(plain.stacks).numpy()
    assert len(secure.received) > 0
    for content in secure.received:
        for name, rec in content.array_records.items():
            assert name == PAYLOAD, name
            for arr in rec.to_numpy_ndarrays():
                assert arr.dtype == np.uint8
                data = arr.tobytes()
                for u in updates:  # 16-byte windows of the update (a chance match has odds 2^-128)
                    assert not any(u[i : i + 4].tobytes() in data for i in range(0, u.size - 4, 97))
    # the aggregate: the in-process secagg mechanism's, within its fixed-point step (both engines)
    step = 2.0 ** -secure.protocol.encoding.scale_bits(N)
    assert len(recs) == len(ref_recs) == len(plain_recs) == cfg.train.rounds
    for rec, ref, pl in zip(recs, ref_recs, plain_recs):
        a, r = rec.aggregate, ref.aggregate
        assert torch.allclose(a, r, rtol=0, atol=2 * step + 1e-6 * float(r.abs().max()))
        assert rec.accepted == ref.accepted == list(range(N))
        assert rec.leakage["server"] == ref.leakage["server"]
        assert torch.allclose(pl.aggregate, r, rtol=0, atol=2 * step + 1e-6 * float(r.abs().max()))
    assert res.summary["protocol"] == mechanism
    # the meter: the bytes of the secure rounds' messages, as the grid counted them on the wire
    last = dict(secure.metrics_seen[-1])
    sent = {k: v for k, v in last.items() if k.startswith("meter/client/") and k.endswith("/bytes_sent")}
    assert {k.split("/")[2] for k in sent} >= {"setup", "share_keys", "masked_input", "unmasking"}
    assert sum(sent.values()) == sum(c.bytes_up for c in grid.costs.values())
    down = sum(v for k, v in last.items() if k.startswith("meter/server/") and k.endswith("/bytes_sent"))
    assert down == sum(c.bytes_down for c in grid.costs.values())
    assert last["meter/server/masked_input/seconds"] > 0
    assert (
        res.summary["protocol_meter"]["client/masked_input"]["bytes_sent"]
        == last["meter/client/masked_input/bytes_sent"]
    )


def test_a_node_dropped_in_the_secure_round_leaves_the_survivors_mean() -> None:
    cfg = _cfg(train={"rounds": 1})
    made: list[Any] = []
    _run(cfg, _keep(made, _PlainProbe))
    grid = _grid(cfg)
    lost = sorted(grid.apps)[1]  # client 1
    grid.lose = lambda m: (
        int(m.metadata.dst_node_id) == lost
        and RECORD in m.content.config_records
        and m.content.config_records[RECORD]["phase"] == "masked_input"
    )
    res, recs = _run(cfg, SecureStrategy, grid)
    assert recs[0].accepted == [0, 2, 3] and recs[0].fpr == pytest.approx(0.25)
    rows = made[0].stacks[0][[0, 2, 3]].clamp(-1.0, 1.0)  # the mechanism's clip (its default)
    assert torch.allclose(recs[0].aggregate, rows.mean(0), rtol=0, atol=1e-6)
    assert res.summary["rounds"] == 1


def test_compositions_the_flower_path_cannot_hide_run_simulated_or_are_refused() -> None:
    attacked = _cfg(attack={"name": "alie", "f": 1})
    chosen: list[str] = []

    class Stop(Exception):
        pass

    def record(secure: bool | None) -> Any:
        def make(loop: RoundLoop) -> FedsecStrategy:
            chosen.append(type(strategy_for(secure)(loop)).__name__)
            raise Stop

        return make

    for cfg, secure in ((attacked, None), (_cfg(), None), (attacked, False)):
        with pytest.raises(Stop):
            simulate(cfg, rounds=flower_rounds(_grid(cfg), record(secure)))
    assert chosen == ["FedsecStrategy", "SecureStrategy", "FedsecStrategy"]
    for cfg, why in (
        (attacked, "attack 'alie'"),
        (_cfg(train={"momentum": 0.9}), "train.momentum=0.9"),
        (
            _cfg(
                defense=[
                    {"rule": "mean", "mechanism": "secagg_normbound", "mechanism_kwargs": {"bound": 1.0}}
                ]
            ),
            "mechanism 'secagg_normbound'",
        ),
    ):
        with pytest.raises(FlowerError, match=f"got .*{why}.*; want mechanism secagg or secagg_plus"):
            simulate(cfg, rounds=flower_rounds(_grid(cfg), strategy_for(True)))


def test_blockers_name_a_bucketed_mean() -> None:
    cfg = Config.from_dict(
        {
            "data": {"dataset": "digits", "n_clients": N, "min_samples": 8},
            "model": {"name": "mlp"},
            "train": {"rounds": 1, "threads": 1},
            "output": {"plots": False},
            "defense": [{"rule": "mean", "pre": ["bucketing"], "mechanism": "secagg"}],
        }
    ).units()[0]
    seen: list[list[str]] = []

    def make(loop: RoundLoop) -> FedsecStrategy:
        seen.append(blockers(loop))
        return FedsecStrategy(loop)

    simulate(cfg, rounds=flower_rounds(_grid(cfg), make))
    assert len(seen) == 1 and any(w.startswith("rule ") for w in seen[0])


def test_secure_content_reaches_no_update_array() -> None:
    """The setup reply of a node keeps its metrics and info records and drops its arrays."""
    from fedsec.flower.secagg_mod import _reply

    content = RecordDict({"arrays": ArrayRecord([np.ones(3, np.float32)]), "m": MetricRecord({"x": 1})})
    out = _reply("setup", b"k" * 32, content)
    assert "arrays" not in out.array_records and "m" in out.metric_records
