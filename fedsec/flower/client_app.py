"""The Flower ``ClientApp`` of a fedsec config: one SuperNode is one fedsec client.

A train message carries the global model (``arrays["w"]``, the flat parameter vector) and, in its
``config`` record, the node's row ``r`` in the round's cohort of ``m`` clients (or the cohort's client
ids, from which the node finds its row) and the state of the
server's minibatch generator before the round. The node draws the cohort's ``(m, B)`` uniforms per local
step from that state and keeps row ``r`` (:meth:`_RowData.sample`), so its minibatches, and with them
its update, are those the in-process engine computes for the same client in the same round (the
minibatch draw of :class:`fedsec.training.ClientData`; the update of
:class:`fedsec.training.ClientComputer`). Nothing else about the other clients reaches the node.

With ``dp.mode = "dpsgd"`` an honest node trains with DP-SGD through Opacus (:class:`dp.PrivateClient`)
instead and reports its sample-level epsilon in the reply's metrics (``dp-epsilon``); the number of
noised steps it has taken is kept in the node's Flower context, so the accountant is right whichever
worker process serves the node.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsec.config import Config
from fedsec.errors import ConfigError, FedsecError
from fedsec.simulation import UnitData, load_unit_data, unit_model
from fedsec.training import ClientComputer, ClientData, FlatModel

#: The node-config key of a SuperNode's client id (Flower's simulation engine sets it; a deployed
#: SuperNode gets it from ``--node-config "partition-id=3"``).
PARTITION_ID = "partition-id"


@dataclass
class _RowData(ClientData):
    """One client's samples, drawing its minibatches as row ``row`` of a cohort of ``m`` clients."""

    row: int = 0
    m: int = 1

    def sample(
        self, clients: torch.Tensor, batch: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.take(clients, self.draw(self.m, batch, gen)[self.row : self.row + 1])


@dataclass
class _Node:
    """What one node keeps between messages in a worker process: its data, model and trainer."""

    cfg: Config
    client: int
    byzantine: bool
    data: _RowData
    computer: ClientComputer
    private: Any = None  # dp.PrivateClient under dp.mode = "dpsgd" (honest nodes only)


T = TypeVar("T")


class FlowerError(FedsecError):
    """A node failed, or a message broke the protocol of a fedsec round on Flower."""


def value(record: Any, key: str, kind: type[T]) -> T:
    """``record[key]``, checked to be a ``kind`` (a message field, typed for the code that reads it)."""
    v = record.get(key) if hasattr(record, "get") else None
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise FlowerError(f"message field {key!r}: got {type(v).__name__}; want {kind.__name__}")
    return v


_UNITS: dict[str, UnitData] = {}
_NODES: dict[tuple[str, int], _Node] = {}


def config_from(run_config: Any) -> Config:
    """The fedsec config a ``flwr run`` names: run config key ``config`` (a TOML path; relative paths
    from the working directory, else from the app's directory) and optional ``set``
    (``"section.key=value; ..."`` overrides)."""
    path = run_config.get("config")
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"flower run config: got config={path!r}; want the path of a fedsec TOML config "
            '([tool.flwr.app.config] config = "fedsec.toml")'
        )
    return _load_config(path, str(run_config.get("set", "")))


@functools.cache
def _load_config(path: str, overrides_text: str) -> Config:
    """Found and parsed once per process: a ClientApp process answers many messages of one run."""
    overrides = [s.strip() for s in overrides_text.split(";") if s.strip()]
    # Flower puts the app's directory on sys.path when it loads the app's components.
    found = [d / path for d in (Path.cwd(), *map(Path, sys.path)) if d.is_dir() and (d / path).is_file()]
    if not found:
        raise ConfigError(
            f"flower run config: got config={path!r}; want an existing file (from {Path.cwd()} "
            "or the app's directory)"
        )
    return Config.from_toml(found[0], overrides)


def unit_data(cfg: Config) -> UnitData:
    """The run's data split and poisoning (:func:`fedsec.simulation.load_unit_data`), once a process."""
    key = cfg.hash()
    if key not in _UNITS:
        _UNITS[key] = load_unit_data(cfg)
    return _UNITS[key]


def _node(cfg: Config, client: int, model: torch.nn.Module | None) -> _Node:
    key = (cfg.hash(), client)
    if key in _NODES:
        return _NODES[key]
    if not 0 <= client < cfg.data.n_clients:
        raise ConfigError(
            f"node config {PARTITION_ID}: got {client}; want a client id in [0, {cfg.data.n_clients})"
        )
    u = unit_data(cfg)
    part = u.parts[client]
    base = ClientData.build(u.x_train, u.y_train, [part], torch.device("cpu"))
    data = _RowData(base.x, base.y, base.starts, base.counts)
    module = unit_model(cfg, u.train, None if model is None else copy.deepcopy(model))
    tr = cfg.train
    computer = ClientComputer(
        FlatModel(module), data, mode=tr.mode, lr=tr.lr, batch_size=tr.batch_size,
        local_steps=tr.local_steps, weight_decay=tr.weight_decay, engine=tr.engine,
    )  # fmt: skip
    byzantine = bool(u.is_byz[client])
    private = None
    if cfg.dp.mode == "dpsgd" and not byzantine:  # Byzantine clients do not privatize (as in-process)
        import dp

        private = dp.PrivateClient(
            copy.deepcopy(module), u.train.subset(part), noise_multiplier=cfg.dp.noise_multiplier,
            max_grad_norm=cfg.dp.clip, batch_size=tr.batch_size, lr=tr.lr,
            accountant=cast(Any, cfg.dp.accountant),
        )  # fmt: skip
    _NODES[key] = _Node(cfg, client, byzantine, data, computer, private)
    return _NODES[key]


def _private_update(node: _Node, w: torch.Tensor, state: RecordDict) -> tuple[torch.Tensor, dict[str, Any]]:
    """A DP-SGD update; the node's step count travels in its Flower context between processes."""
    pc, cfg = node.private, node.cfg
    kept = state.config_records.get("fedsec-dp")
    steps = value(kept, "steps", int) if kept is not None else 0
    if pc.steps != steps:  # another worker process served this node before: restore its accountant
        pc.steps = steps
        pc.engine.accountant.history = [(pc.noise_multiplier, pc.sample_rate, steps)] if steps else []
    upd = pc.compute(w.cpu(), mode=cfg.train.mode, local_steps=cfg.train.local_steps)
    state["fedsec-dp"] = ConfigRecord({"steps": int(pc.steps)})
    return torch.as_tensor(upd, dtype=w.dtype), dict(pc.privacy_statement(cfg.dp.delta))


def _row(client: int, conf: ConfigRecord) -> int:
    """The node's row in the round's cohort (the ``cohort`` list of client ids, in cohort order), when
    the message is common to the cohort (secure aggregation, :mod:`fedsec.flower.secure`)."""
    cohort = value(conf, "cohort", list)
    if cohort.count(client) != 1:
        raise FlowerError(f"train config: got cohort {cohort}; want client {client} in it once")
    return cohort.index(client)


def train_reply(node: _Node, content: RecordDict, state: RecordDict) -> RecordDict:
    """The node's reply to a train message: its update and metrics (see the module docstring)."""
    conf = content.config_records["config"]
    w = torch.from_numpy(np.array(content.array_records["arrays"]["w"].numpy(), dtype=np.float32))
    node.data.m = value(conf, "cohort-size", int)
    node.data.row = value(conf, "row", int) if "row" in conf else _row(node.client, conf)
    gen = torch.Generator()
    gen.set_state(torch.frombuffer(bytearray(value(conf, "generator", bytes)), dtype=torch.uint8))
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {"client": node.client, "row": node.data.row}
    extra = ConfigRecord()
    if node.private is not None:
        upd, statement = _private_update(node, w, state)
        metrics["dp-epsilon"] = float(statement["epsilon"])
        extra["privacy"] = json.dumps(statement)
    else:
        upd = node.computer.updates(w, torch.zeros(1, dtype=torch.long), gen)[0]
    metrics["seconds"] = time.perf_counter() - t0
    metrics["num-examples"] = int(node.data.counts[0])
    extra["engine"] = "dpsgd" if node.private is not None else str(node.computer.engine)
    return RecordDict(
        {
            "arrays": ArrayRecord({"update": Array(upd.detach().cpu().numpy())}),
            "metrics": MetricRecord(metrics),
            "info": extra,
        }
    )


def client_app(cfg: Config | None = None, model: torch.nn.Module | None = None) -> ClientApp:
    """A ``ClientApp`` for one unit config ``cfg`` (one defense), or, with ``cfg=None``, for the config
    that the run config names (:func:`config_from`; ``flwr run``). ``model`` replaces ``[model] name``.

    Handles ``query`` (replies with the node's client id) and ``train`` (:func:`train_reply`); train
    messages of fedsec's secure aggregation are answered by :func:`fedsec.flower.secagg_mod.secagg_mod`,
    which runs :func:`train_reply` at setup and never returns the update in the clear.
    """
    from fedsec.flower.secagg_mod import secagg_mod

    app = ClientApp(mods=[secagg_mod])

    def resolve(context: Context) -> tuple[Config, int]:
        c = cfg if cfg is not None else config_from(context.run_config)
        try:
            client = int(context.node_config[PARTITION_ID])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"node config: got {dict(context.node_config)}; want an integer {PARTITION_ID!r}"
            ) from e
        return c.units()[0] if cfg is None else c, client

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        _, client = resolve(context)
        return Message(RecordDict({"node": ConfigRecord({"client": client})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        c, client = resolve(context)
        return Message(train_reply(_node(c, client, model), msg.content, context.state), reply_to=msg)

    return app
