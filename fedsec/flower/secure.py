"""Confidential rounds on Flower: the mean of the cohort's updates by fedsec's secure aggregation over
Flower messages, so the ServerApp never receives an individual update.

:class:`SecureStrategy` replaces the plaintext collection of :class:`~fedsec.flower.FedsecStrategy`:
round ``t`` draws the cohort as the in-process engine does, then runs one
:func:`fedsec.flower.secagg.secure_mean` round over the cohort's nodes, whose ClientApp answers through
:func:`fedsec.flower.secagg_mod.secagg_mod` (every ``fedsec.flower.client_app`` has it). The node trains
at ``setup`` exactly as in the plaintext path (its row of the cohort's minibatch draws, from the cohort's
client ids in the common message) and only ever sends its verify key, its metrics, its
``info`` record and protocol bytes. The released value is the in-process mechanism's:

    mean = decode(sum_{u in U3} enc(clip(x_u))) / |U3|

(Bonawitz et al., CCS 2017; Bell et al., CCS 2020; the parties are fedsec's own), with the fixed-point
step ``2^-frac_bits`` of :class:`secagg.FixedPoint` as the only difference from the plain mean of the
clipped updates. The round's meter holds the serialized bytes of every secure-aggregation message per
client and phase (Flower's wire format) and the server's own seconds per phase.

Which compositions run confidentially (:func:`blockers`): mechanism ``secagg`` or ``secagg_plus`` with
rule ``mean``, and nothing the server would compute on the individual rows: no model-poisoning attack
(simulated by the server on the attackers' rows), no server-kept worker momentum, no root gradient, no
simulated dropout. Data-poisoning attacks and DP-SGD run on the nodes and are allowed. Any other
configuration runs the *simulated* path (:class:`FedsecStrategy`: the plain updates reach the server,
which runs the mechanism in process); :func:`strategy_for` picks, and ``secure=True`` demands the
confidential path (a :class:`~fedsec.flower.client_app.FlowerError` "got ...; want ..." otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.serde import message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.run import Run

import robust
from fedcore.meter import Meter, PhaseCost
from fedsec.flower.client_app import FlowerError
from fedsec.flower.secagg import RECORD, secure_mean
from fedsec.flower.strategy import FedsecStrategy, _flat
from fedsec.simulation import RoundLoop
from protocols.base import Leakage, RoundResult
from robust.statistics import Statistic, pipeline_parts

#: the mechanisms that run over Flower messages (:func:`fedsec.flower.secagg.secure_mean`)
SECURE_MECHANISMS = ("secagg", "secagg_plus")

WANT = (
    "mechanism secagg or secagg_plus with rule mean and nothing the server computes on individual "
    "updates (no server-side model-poisoning attack, momentum = 0, no root gradient, no simulated dropout)"
)


def blockers(loop: RoundLoop) -> list[str]:
    """Why the unit cannot aggregate confidentially on Flower (empty: it can; see the module docs)."""
    p = loop.p
    mech, out = p.cfg.mechanism(), []
    if mech not in SECURE_MECHANISMS:
        out.append(f"mechanism {mech!r}")
    pre, final = pipeline_parts(p.rule)
    if pre or type(final) is not robust.Mean:
        out.append(f"rule {p.cfg.defense.label!r}")
    if p.attack is not None:
        out.append(f"attack {p.cfg.attack.name!r} (applied by the server to the attackers' rows)")
    if p.momentum is not None:
        out.append(f"train.momentum={p.cfg.train.momentum} (kept by the server per client)")
    if p.root_computer is not None:
        out.append("a root gradient")
    if float(getattr(p.proto, "dropout", 0.0) or 0.0) > 0:
        out.append(f"simulated dropout={p.proto.dropout}")
    return out


def strategy_for(secure: bool | None = None) -> Callable[[RoundLoop], FedsecStrategy]:
    """The strategy factory for a unit: ``secure=None`` confidential where :func:`blockers` allows it
    (mechanism secagg/secagg_plus) and simulated otherwise; ``True`` confidential or a typed error;
    ``False`` always simulated."""

    def make(loop: RoundLoop) -> FedsecStrategy:
        if secure is False or (secure is None and blockers(loop)):
            return FedsecStrategy(loop)
        return SecureStrategy(loop)

    return make


class MeteredGrid(Grid):
    """A Grid that forwards to ``grid`` and meters the serialized bytes of the secure-aggregation
    messages per party (``client[<id>]`` by ``clients``: node id -> client id, and ``server``) and
    phase. ``received``, when a list, collects every reply content the server obtains."""

    def __init__(self, grid: Grid, clients: dict[int, int], received: list[RecordDict] | None) -> None:
        self.grid, self.clients, self.received, self.meter = grid, clients, received, Meter()

    def _account(self, msg: Message, node: int, phase: str, up: bool) -> None:
        size = message_to_proto(msg).ByteSize()
        client = f"client[{self.clients.get(node, node)}]"
        src, dst = (client, "server") if up else ("server", client)
        self.meter.account(src, phase, sent=size)
        self.meter.account(dst, phase, received=size)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        msgs = list(messages)
        phase = str(msgs[0].content.config_records[RECORD]["phase"]) if msgs else "none"
        replies = list(self.grid.send_and_receive(msgs, timeout=timeout))
        for m in msgs:
            self._account(m, int(m.metadata.dst_node_id), phase, up=False)
        for r in replies:
            self._account(r, int(r.metadata.src_node_id), phase, up=True)
            if self.received is not None and r.has_content():
                self.received.append(r.content)
        return replies

    # the rest of the Grid interface, forwarded
    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise FlowerError("MeteredGrid: got push_messages; want send_and_receive (metered per phase)")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise FlowerError("MeteredGrid: got pull_messages; want send_and_receive (metered per phase)")


class _Released:
    """The protocol of a round whose mean was already obtained over Flower messages: ``run`` returns it
    (so :meth:`RoundLoop.step` records, steps and observes it as any other round)."""

    def __init__(self, result: RoundResult) -> None:
        self.result = result

    def run(self, stack: Any, *, rng: Any = None, **_: Any) -> RoundResult:
        return self.result


class SecureStrategy(FedsecStrategy):
    """:class:`FedsecStrategy` whose rounds aggregate by secure aggregation over Flower messages (see
    the module docstring). ``received``: set to a list to keep every reply content the strategy's
    secure rounds receive (the server's view)."""

    def __init__(self, loop: RoundLoop, **kwargs: Any) -> None:
        why = blockers(loop)
        if why:
            raise FlowerError(f"secure aggregation on Flower: got {'; '.join(why)}; want {WANT}")
        super().__init__(loop, **kwargs)
        self.protocol = loop.p.proto.inner
        self.grid: Grid | None = None
        self.received: list[RecordDict] | None = None
        self._content: RecordDict | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Draw the cohort; the round's messages are sent by :meth:`aggregate_train` (none here)."""
        begun = self.begin_round(grid)
        if begun is None:
            return []
        cohort, state = begun
        if len(cohort) < 2:
            raise FlowerError(f"secure round {server_round}: got a cohort of {len(cohort)}; want >= 2")
        self.grid = grid
        conf = ConfigRecord(
            {
                "server-round": server_round,
                "cohort": [int(c) for c in cohort],
                "cohort-size": len(cohort),
                "generator": state,
            }
        )
        self._content = RecordDict({"arrays": _flat(self.loop.p.w), "config": conf})
        return []

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """One secure round over the cohort's nodes, then the server's step with the released mean."""
        if self.pending is None or self.grid is None or self._content is None:
            return None, None
        cohort, loop, nodes = self.pending.cohort, self.loop, self.node_map(self.grid)
        clients = {nodes[int(c)]: int(c) for c in cohort}
        grid = MeteredGrid(self.grid, clients, self.received)
        res = secure_mean(
            grid,
            sorted(clients),
            self._content,
            self.protocol,
            timeout=self.timeout,
            group_id=str(server_round),
        )
        loop.client_times.append(time.perf_counter() - self.pending.t0)
        for phase, seconds in res.seconds.items():
            grid.meter.costs.setdefault(("server", phase), PhaseCost()).seconds += seconds
        for node in res.survivors:
            if "info" in res.configs.get(node, {}):
                self.node_info(clients[node], res.configs[node]["info"])
        survivors = set(res.survivors)
        rows = [r for r, c in enumerate(cohort) if nodes[int(c)] in survivors]
        total = res.mean * len(rows)
        learns = {
            "server": {
                "sum_of_survivors": total,
                "survivors": rows,
                "dropped": [r for r, c in enumerate(cohort) if nodes[int(c)] not in survivors],
                "statistic": Statistic.LINEAR.value,
            },
            "client": {},
        }
        agg = torch.from_numpy(np.asarray(res.mean)).to(loop.p.w.dtype)
        result = RoundResult(agg, rows, grid.meter, Leakage(learns))
        stack = torch.empty((len(cohort), 0), dtype=loop.p.w.dtype)
        record = loop.step(server_round, cohort, stack, {}, proto=_Released(result))
        if record is None:
            return None, None
        return _flat(loop.p.w), self.metrics(record)
