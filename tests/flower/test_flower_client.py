"""The Flower apps' halves without Flower's runtime: the ClientApp called on messages built here, the
strategy collecting replies. Fast; the runtime itself is exercised by test_flower_engine.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedsec.config import Config
from fedsec.flower import FedsecStrategy, client_app
from fedsec.flower.client_app import _NODES, FlowerError
from fedsec.observers import PrivacyBudget
from fedsec.simulation import RoundLoop, _prepare

pytestmark = pytest.mark.flower

BASE: dict[str, Any] = {
    "data": {"dataset": "digits", "n_clients": 4, "min_samples": 8, "beta": 0.5},
    "model": {"name": "mlp"},
    "train": {"rounds": 2, "mode": "fedavg", "local_steps": 2, "lr": 0.1, "batch_size": 8, "threads": 1},
    "attack": {"name": "alie", "f": 1, "data": "label_flip"},
}


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity Flower's runtime gives a ClientApp process (reply messages read it)."""
    for name, v in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, v)


def _train_msg(w: torch.Tensor, row: int, m: int, state: torch.Tensor) -> Message:
    conf = ConfigRecord({"row": row, "cohort-size": m, "generator": bytes(state.numpy().tobytes())})
    content = RecordDict({"arrays": ArrayRecord({"w": Array(w.numpy())}), "config": conf})
    return Message(content, dst_node_id=1, message_type=MessageType.TRAIN)


def _ctx(client: int) -> Context:
    config = {"partition-id": client}
    return Context(run_id=1, node_id=1, node_config=config, state=RecordDict(), run_config={})


def test_node_update_is_the_in_process_row() -> None:
    """Each node, given the generator state and its row, computes exactly its row of the in-process
    stack: same (poisoned) partition, same minibatches over two local steps."""
    cfg = Config.from_dict(BASE)
    p = _prepare(cfg, None)
    cohort = np.array([0, 2, 3])
    state = p.gen.get_state()
    expected = p.computer.updates(p.w, torch.from_numpy(cohort), p.gen)
    app = client_app(cfg)
    for row, client in enumerate(cohort):
        reply = app(_train_msg(p.w, row, len(cohort), state), _ctx(int(client)))
        got = torch.from_numpy(reply.content.array_records["arrays"]["update"].numpy())
        scale = float(expected.abs().max())
        assert torch.allclose(got, expected[row], rtol=0, atol=1e-6 * scale), (row, client)
        assert reply.content.metric_records["metrics"]["client"] == client
    other = app(_train_msg(p.w, 1, len(cohort), state), _ctx(0))  # client 0 told it is row 1
    got = torch.from_numpy(other.content.array_records["arrays"]["update"].numpy())
    assert not torch.allclose(got, expected[0])  # the row picks the minibatches


def test_dpsgd_epsilon_survives_a_change_of_worker_process() -> None:
    """The node's noised-step count travels in its context: a fresh process (empty node cache) reports
    the epsilon of all the node's steps, not of its own."""
    dpsgd = {"mode": "dpsgd", "noise_multiplier": 1.0}
    cfg = Config.from_dict({**BASE, "attack": {"name": "none"}, "dp": dpsgd})
    p = _prepare(cfg, None)
    state = p.gen.get_state()
    app = client_app(cfg)

    def eps_after_two(clear_between: bool) -> list[float]:
        _NODES.clear()
        ctx, out = _ctx(1), []
        for _ in range(2):
            reply = app(_train_msg(p.w, 0, 1, state), ctx)
            out.append(float(reply.content.metric_records["metrics"]["dp-epsilon"]))
            if clear_between:
                _NODES.clear()
        return out

    kept, moved = eps_after_two(False), eps_after_two(True)
    assert 0 < kept[0] < kept[1]
    assert moved == pytest.approx(kept, rel=1e-9)


def _reply(row: Any, client: int, d: int) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({"update": Array(np.zeros(d, np.float32))}),
            "metrics": MetricRecord({"row": row, "client": client}),
            "info": ConfigRecord({"engine": "batched"}),
        }
    )
    return Message(content, dst_node_id=0, message_type=MessageType.TRAIN)


@pytest.mark.parametrize(
    ("replies", "match"),
    [
        ([(0, 0), (0, 2)], r"got row 0 from client 2"),  # a node claims another client's row
        ([(0, 0), (0, 0)], r"got row 0 from client 0"),  # the same row twice
        ([(0, 0), (1, 3)], r"got row 1 from client 3"),  # a client outside the cohort
        ([(0, 0)], r"replies: got 1 \(no error\); want 2"),  # a missing reply
        ([(0, 0), (1.0, 2)], r"message field 'row': got float; want int"),
    ],
)
def test_strategy_refuses_replies_out_of_protocol(replies: list[tuple[Any, int]], match: str) -> None:
    cfg = Config.from_dict({**BASE, "attack": {"name": "none"}})
    p = _prepare(cfg, None)
    strategy = FedsecStrategy(RoundLoop(p, [], PrivacyBudget(p.privacy)))
    d = p.evaluator.fm.d
    with pytest.raises(FlowerError, match=match):
        strategy.collect(np.array([0, 2]), [_reply(r, c, d) for r, c in replies])


def test_strategy_stacks_replies_by_cohort_row() -> None:
    cfg = Config.from_dict({**BASE, "attack": {"name": "none"}})
    p = _prepare(cfg, None)
    strategy = FedsecStrategy(RoundLoop(p, [], PrivacyBudget(p.privacy)))
    d = p.evaluator.fm.d
    a, b = _reply(1, 2, d), _reply(0, 0, d)
    a.content.array_records["arrays"]["update"] = Array(np.full(d, 2.0, np.float32))
    stack = strategy.collect(np.array([0, 2]), [a, b])  # replies arrive in any order
    assert stack[0].eq(0).all() and stack[1].eq(2).all()


class _LocalGrid:
    """A Grid that delivers each message to the ClientApp in this process (no Ray, no SuperLink)."""

    def __init__(self, app: Any, n: int) -> None:
        self.app = app
        self.contexts = {100 + c: _ctx(c) for c in range(n)}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        out = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            TaskIdentity._node_id = node  # the reply's source, as Flower's runtime sets it per node
            out.append(self.app(msg, self.contexts[node]))
        return out


def test_strategy_rounds_over_a_local_grid_match_in_process_and_report_metrics() -> None:
    """The strategy's whole round (query, configure_train, the nodes, aggregate_train) against the
    in-process loop: the same model after two rounds, and the MetricRecord carries the run's
    detection rates and meter totals as the summary holds them."""
    from fedsec.flower.strategy import _flat
    from fedsec.simulation import simulate

    sampled = {**BASE["train"], "clients_per_round": 5}
    data = {**BASE["data"], "n_clients": 6}
    cfg = Config.from_dict({**BASE, "data": data, "train": sampled, "defense": [{"rule": "krum"}]})
    grid = _LocalGrid(client_app(cfg), 6)
    results = []

    def rounds(loop: RoundLoop) -> None:
        strat = FedsecStrategy(loop)
        results.append(strat.start(grid, _flat(loop.p.w), num_rounds=2))  # type: ignore[arg-type]

    a, b = simulate(cfg), simulate(cfg, rounds=rounds)
    assert a.weights is not None and b.weights is not None
    assert torch.allclose(a.weights, b.weights, rtol=0, atol=1e-6 * float(a.weights.abs().max()))
    last = results[0].train_metrics_clientapp[2]
    assert last["byz_detection_tpr"] == pytest.approx(b.summary["byz_detection_tpr"])
    assert last["byz_detection_fpr"] == pytest.approx(a.summary["byz_detection_fpr"])
    sent = b.summary["protocol_meter"]["client/upload"]["bytes_sent"]
    assert last["meter/client/upload/bytes_sent"] == sent > 0
