"""The Flower ``Strategy`` and ``ServerApp`` of a fedsec config, and the simulation entry point.

Round ``t`` on Flower (message API), mirroring :func:`fedsec.simulation._rounds` step for step:

1. ``configure_train``: draw the cohort from the run's generator (:func:`fedsec.cohorts.draw_cohort`);
   send each cohort client's node the global model, its row, the cohort size and the state of the
   minibatch generator (the node replays its own row of the draws, :mod:`fedsec.flower.client_app`);
   advance that generator by the cohort's draws, as the in-process computation does.
2. The nodes train and reply with their updates.
3. ``aggregate_train``: stack the updates in cohort order, then the server's half of a round, shared
   with the in-process engine: momentum, the root gradient, the attack on the Byzantine rows and local
   DP noise (:meth:`fedsec.simulation._Parts.server_stack`), the protocol's aggregate, the server step
   and the observers (:meth:`fedsec.simulation.RoundLoop.step`). Returns the new model and a
   ``MetricRecord``: the round's Byzantine detection rates (``byz-tpr``, ``byz-fpr``: the fractions of
   the cohort's Byzantine and honest rows left out of the aggregate), their means over the rounds so
   far (``byz_detection_tpr``, ``byz_detection_fpr``, as in the run's summary) and the protocol meter's
   totals so far per role and phase (``meter/<role>/<phase>/<bytes_sent|bytes_received|seconds>``).

Evaluation is central, by the run's observers (as in-process); ``configure_evaluate`` sends nothing.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedsec.cohorts import draw_cohort, sampler_for
from fedsec.config import Config
from fedsec.errors import ConfigError
from fedsec.flower.client_app import FlowerError, client_app, config_from, value
from fedsec.observers import Metrics
from fedsec.round import MeterTotals, RoundRecord
from fedsec.simulation import RoundLoop, UnitResult
from fedsec.simulation import simulate as simulate_unit


@dataclass
class _Round:
    cohort: np.ndarray
    t0: float


@dataclass
class _Reported:
    """A node's privacy statement as it reported it (stands in for its ``dp.PrivateClient``)."""

    statement: dict[str, Any]

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        return self.statement


def _flat(w: torch.Tensor) -> ArrayRecord:
    return ArrayRecord({"w": Array(w.detach().cpu().numpy())})


class FedsecStrategy(Strategy):
    """A Flower strategy running a fedsec unit's rounds (see the module docstring).

    Args:
        loop: the unit's round loop (:class:`fedsec.simulation.RoundLoop`): its parts (rule, protocol,
            attack, privacy, generators, global model) and observers.
        timeout: seconds to wait for the nodes' replies in a round.
        connect_timeout: seconds to wait, before the first round, for one node per client.

    Subclasses may replace :meth:`collect` (how the cohort's updates reach the server, e.g. masked).
    """

    def __init__(self, loop: RoundLoop, *, timeout: float = 3600.0, connect_timeout: float = 120.0) -> None:
        self.loop = loop
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.sampler = sampler_for(loop.p.cfg)
        self.nodes: dict[int, int] | None = None  # client id -> Flower node id
        self.pending: _Round | None = None

    # ---------------------------------------------------------------- nodes
    def node_map(self, grid: Grid) -> dict[int, int]:
        """Client id -> node id, asked once of every node (a ``query`` message)."""
        if self.nodes is not None:
            return self.nodes
        n = self.loop.p.cfg.data.n_clients
        deadline = time.monotonic() + self.connect_timeout
        while len(ids := list(grid.get_node_ids())) < n:
            if time.monotonic() > deadline:
                raise FlowerError(
                    f"nodes: got {len(ids)} connected after {self.connect_timeout:g} s; want {n}, one per "
                    "client (data.n_clients; flwr run: --federation-config num-supernodes=N)"
                )
            time.sleep(0.1)
        asks = [Message(RecordDict(), dst_node_id=i, message_type=MessageType.QUERY) for i in ids]
        replies = list(grid.send_and_receive(asks, timeout=self.timeout))
        nodes = {}
        for msg in self._ok(replies, len(asks)):
            nodes[value(msg.content.config_records.get("node"), "client", int)] = msg.metadata.src_node_id
        if sorted(nodes) != list(range(n)):
            raise FlowerError(f"nodes: got client ids {sorted(nodes)}; want each of 0..{n - 1} once")
        self.nodes = nodes
        return nodes

    @staticmethod
    def _ok(replies: list[Message], want: int) -> list[Message]:
        bad = [f"node {m.metadata.src_node_id}: {m.error.reason}" for m in replies if m.has_error()]
        if bad or len(replies) != want:
            why = "; ".join(bad) or "no error"
            raise FlowerError(f"replies: got {len(replies)} ({why}); want {want}")
        return replies

    # ---------------------------------------------------------------- Strategy
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The cohort's train messages (none once the run stops: budget spent or diverged)."""
        begun = self.begin_round(grid)
        if begun is None:
            return []
        cohort, state = begun
        w, nodes = _flat(self.loop.p.w), self.node_map(grid)
        msgs = []
        for row, client in enumerate(cohort):
            conf = ConfigRecord(
                {"server-round": server_round, "row": row, "cohort-size": len(cohort), "generator": state}
            )
            content = RecordDict({"arrays": w, "config": conf})
            msgs.append(Message(content, dst_node_id=nodes[int(client)], message_type=MessageType.TRAIN))
        return msgs

    def begin_round(self, grid: Grid) -> tuple[np.ndarray, bytes] | None:
        """Draw the round's cohort and note it in :attr:`pending`; return it with the minibatch
        generator's state before the round (``None`` once the run stops)."""
        self.pending = None
        if self.loop.should_stop():
            return None
        p = self.loop.p
        self.node_map(grid)
        cohort = draw_cohort(self.sampler, p.rng)
        state = bytes(p.gen.get_state().numpy().tobytes())
        if len(cohort):  # consume the draws the in-process computation makes for this cohort
            for _ in range(p.computer.draws_per_update):
                p.computer.data.draw(len(cohort), p.cfg.train.batch_size, p.gen)
        self.pending = _Round(cohort, time.perf_counter())
        return cohort, state

    def node_info(self, client: int, info: ConfigRecord) -> None:
        """What a node reports besides its update: how it computed, and its DP-SGD privacy statement."""
        self.loop.engine = f"flower/{value(info, 'engine', str)}"
        if "privacy" in info:  # DP-SGD: the node's own accountant's statement
            self.loop.p.privacy.clients[client] = _Reported(json.loads(value(info, "privacy", str)))

    def collect(self, cohort: np.ndarray, replies: list[Message]) -> torch.Tensor:
        """The ``(m, d)`` stack of the cohort's updates, row ``r`` from client ``cohort[r]``."""
        p = self.loop.p
        stack = torch.full((len(cohort), p.evaluator.fm.d), float("nan"), dtype=p.w.dtype)
        seen: set[int] = set()
        for msg in self._ok(replies, len(cohort)):
            got = msg.content.metric_records.get("metrics")
            row, client = value(got, "row", int), value(got, "client", int)
            if not 0 <= row < len(cohort) or int(cohort[row]) != client or row in seen:
                raise FlowerError(f"reply: got row {row} from client {client}; want its cohort row")
            seen.add(row)
            stack[row] = torch.from_numpy(np.asarray(msg.content.array_records["arrays"]["update"].numpy()))
            self.node_info(client, msg.content.config_records["info"])
        return stack.to(p.device)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate with the unit's rule or protocol; ``None`` once the run has stopped."""
        if self.pending is None:
            return None, None
        cohort, loop = self.pending.cohort, self.loop
        stack = self.collect(cohort, list(replies))
        loop.client_times.append(time.perf_counter() - self.pending.t0)
        stack, extras = loop.p.server_stack(cohort, stack)
        record = loop.step(server_round, cohort, stack, extras)
        if record is None:
            return None, None
        return _flat(loop.p.w), self.metrics(record)

    def metrics(self, record: RoundRecord) -> MetricRecord:
        """The round's ``MetricRecord`` (see the module docstring)."""
        metrics: dict[str, Any] = {"accepted": float(len(record.accepted)), "seconds": record.seconds}
        for key, rate in (("byz-tpr", record.tpr), ("byz-fpr", record.fpr)):
            if rate is not None:
                metrics[key] = rate
        for seen in self.loop.observers:  # the run's totals so far, as its summary will hold them
            if isinstance(seen, Metrics):
                metrics.update({k: v for k, v in seen.detection().items() if v is not None})
            if isinstance(seen, MeterTotals):
                for phase, cost in seen.meter.items():
                    metrics.update({f"meter/{phase}/{k}": float(v) for k, v in cost.items()})
        return MetricRecord(metrics)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []  # central evaluation by the run's observers

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        cfg = self.loop.p.cfg
        logging.getLogger("flwr").info(
            "FedsecStrategy: defense %r, mechanism %r", cfg.defense.label, cfg.mechanism()
        )


def flower_rounds(
    grid: Grid, strategy: Callable[[RoundLoop], FedsecStrategy] | None = None
) -> Callable[[RoundLoop], None]:
    """A ``rounds`` driver for :func:`fedsec.simulation.simulate`: the unit's rounds as Flower rounds,
    run by ``strategy(loop)``; by default :func:`fedsec.flower.secure.strategy_for`: secure aggregation
    over messages for mechanism secagg/secagg_plus with rule mean, the plaintext strategy otherwise."""

    def rounds(loop: RoundLoop) -> None:
        if strategy is None:  # confidential where the composition allows it (fedsec.flower.secure)
            from fedsec.flower.secure import strategy_for

            strat = strategy_for()(loop)
        else:
            strat = strategy(loop)
        strat.start(grid, _flat(loop.p.w), num_rounds=loop.p.cfg.train.rounds, timeout=strat.timeout)

    return rounds


def server_app(
    cfg: Config | None = None,
    run_dir: Path | None = None,
    *,
    done: Callable[[UnitResult], None] | None = None,
    model: torch.nn.Module | None = None,
    progress: Callable[[int, int], None] | None = None,
    strategy: Callable[[RoundLoop], FedsecStrategy] | None = None,
) -> ServerApp:
    """A ``ServerApp`` running unit config ``cfg`` (one defense) over its nodes and writing the run
    directory ``run_dir``; with ``cfg=None``, the config the run config names (key ``config``, first
    defense; optional key ``out``: the run directory). ``done(result)`` receives the unit's result;
    ``strategy(loop)`` builds the strategy (default: :func:`flower_rounds`'s choice)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        unit, out = cfg, run_dir
        if unit is None:
            unit = config_from(context.run_config).units()[0]
            out = Path(str(context.run_config["out"])) if context.run_config.get("out") else None
        res = simulate_unit(unit, out, model=model, progress=progress, rounds=flower_rounds(grid, strategy))
        if done is not None:
            done(res)

    return app


def simulate(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    model: torch.nn.Module | None = None,
    num_cpus: int = 2,
    quiet: bool = True,
    strategy: Callable[[RoundLoop], FedsecStrategy] | None = None,
) -> UnitResult:
    """Run unit config ``cfg`` on Flower's simulation engine: one SuperNode per client, Ray with
    ``num_cpus`` CPUs (one per worker); the same run directory and result as the in-process engine.
    ``quiet``: Flower's and Ray's logs at errors only."""
    from flwr.simulation import run_simulation

    if len(cfg.units()) != 1:
        raise ConfigError(f"flower simulate: got {len(cfg.units())} defenses; want one unit config")
    results: list[UnitResult] = []
    backend: dict[str, Any] = {
        "init_args": {"num_cpus": num_cpus, "include_dashboard": False},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    }
    logger, level = logging.getLogger("flwr"), logging.getLogger("flwr").level
    if quiet:
        backend["init_args"]["logging_level"] = "error"
        backend["init_args"]["log_to_driver"] = False
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if quiet:  # run_simulation's deprecation notice; Ray's notice on accelerator variables
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
            run_simulation(
                server_app=server_app(
                    cfg, run_dir, done=results.append, model=model, progress=progress, strategy=strategy
                ),
                client_app=client_app(cfg, model),
                num_supernodes=cfg.data.n_clients,
                backend_config=backend,
            )
    finally:
        logger.setLevel(level)
    if not results:
        raise FlowerError("flower simulate: the server app ended without a result")
    return results[0]
