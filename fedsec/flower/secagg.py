"""fedsec's secure aggregation (``secagg``: Bonawitz et al., CCS 2017; ``secagg_plus``: Bell et al.,
CCS 2020) carried over Flower messages, so that a ServerApp obtains the mean of the clients' updates and
never an individual one.

The parties are fedsec's own (:class:`secagg.client.SecAggClient`, :class:`secagg.server.SecAggServer`);
this module only carries their bytes. Each protocol message travels in a Flower ``train`` message: its
phase (and at setup the round's parameters) in the :data:`RECORD` ``ConfigRecord``, its bytes as one
uint8 array in the :data:`PAYLOAD` ``ArrayRecord``; one round trip per phase:

=================  ======================================  =====================================
phase              server -> node                          node -> server
=================  ======================================  =====================================
``setup``          the round's public parameters, the      the node's Ed25519 verify key (its
                   node's id, the server's verify key,     training metrics and configs ride; its
                   and the training content                arrays never leave the node)
``advertise_keys`` the PKI: every node's verify key        ADVERTISE (two X25519 public keys)
``share_keys``     KEYS                                    SHARES (encrypted Shamir shares)
``masked_input``   CIPHERTEXTS                             MASKED (the masked, encoded update)
``consistency``    SURVIVORS (``active`` only)             CONSISTENCY (signature on the list)
``unmasking``      UNMASK_REQUEST                          UNMASK (shares for survivors/dropped)
=================  ======================================  =====================================

On the node, :func:`secagg_mod` (a Flower Mod) runs the ClientApp's own ``train`` function at
``setup``, flattens the returned arrays (every ``ArrayRecord`` in order), clips them to
``[-clip, clip]``, encodes them with :class:`secagg.FixedPoint` and from then on answers the protocol.
The released value is

    mean = decode(sum_{u in U3} enc(x_u)) / |U3|

over the survivors U3 (with public weights: ``sum_{u in U3} w_u x_u / sum_{u in U3} w_u``), exactly as
:class:`protocols.secagg_sum.SecAggSum` releases it in-process.

Dropouts are handled as fedsec does: a node that does not answer a phase (no reply within ``timeout``,
or an error reply) sends nothing more; the server's stage machine drops it, and at unmasking the
survivors reveal the shares the server needs to remove its masks (or the round aborts with
:class:`secagg.TooFewSurvivors`; no wrong sum is ever released). Every message a party refuses is
recorded in :attr:`SecureMean.rejected`.

Trust: the PKI is collected by the server at ``setup`` (trust on first use), which is sound against an
honest-but-curious server (``active=False``). Against a malicious server (``active=True``) the clients'
verify keys must be pinned out of band (e.g. Flower's node authentication keys); that is not done here.
The node keeps its protocol state (including its secret keys) in its ``Context.state`` between messages,
as Flower's own SecAgg+ mod does; that state stays on the SuperNode and is never sent to the SuperLink.

Leakage (server): the survivors' mean, the survivor set, the dropped set, and the metrics the nodes'
``train`` functions return.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from protocols.secagg_sum import SecAggSum
from secagg import FixedPoint, SecAggError, keys
from secagg.config import RoundConfig
from secagg.errors import ProtocolAbort
from secagg.server import SecAggServer

T = TypeVar("T")

#: name of the ConfigRecord that carries the protocol's phase and parameters in every message
RECORD = "fedsec.secagg"
#: name of the ArrayRecord that carries a message's protocol bytes: one uint8 array, which Flower chunks
#: like any array, so the masked input of a large model travels as the model's weights do
PAYLOAD = "fedsec.secagg.payload"
#: the phases, in order (``consistency_check`` only in the active variant)
PHASES = ("setup", "advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")


class FlowerSecAggError(SecAggError):
    """A protocol message over Flower that is missing or malformed (e.g. a reply without its record)."""


@dataclass
class SecureMean:
    """Result of one secure round over Flower.

    Attributes:
        mean: float64 ``(d,)``: the survivors' mean update (decoded from the ring).
        survivors: node ids whose updates are in ``mean``.
        dropped: the other node ids.
        rejected: ``(phase, node id or "server", reason)`` for every message a party refused or lost.
        metrics: each node's training metrics (the last MetricRecord its ``train`` function returned).
        configs: each node's ConfigRecords from its ``train`` function (e.g. how it trained), by name.
        seconds: the server's own seconds per phase (excluding the time spent waiting for nodes).
    """

    mean: np.ndarray
    survivors: list[int]
    dropped: list[int]
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    metrics: dict[int, MetricRecord] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    configs: dict[int, dict[str, ConfigRecord]] = field(default_factory=dict)


def flatten(arrays: Iterable[ArrayRecord]) -> np.ndarray:
    """Every array of every record, in order, as one float64 vector."""
    parts = [np.asarray(a, np.float64).ravel() for rec in arrays for a in rec.to_numpy_ndarrays()]
    return np.concatenate(parts) if parts else np.zeros(0)


def unflatten(vec: np.ndarray, like: ArrayRecord) -> ArrayRecord:
    """The inverse of :func:`flatten` for one record: ``vec`` cut and shaped as ``like``'s arrays."""
    out = ArrayRecord()
    pos = 0
    for name, arr in zip(like.keys(), like.to_numpy_ndarrays()):
        out[name] = Array(vec[pos : pos + arr.size].reshape(arr.shape).astype(arr.dtype))
        pos += arr.size
    if pos != vec.size:
        raise FlowerSecAggError(f"unflatten: got {vec.size} values; want {pos} for the record's arrays")
    return out


def opt_int(v: int | None) -> int:
    """``None`` as -1 (ConfigRecords hold no ``None``)."""
    return -1 if v is None else int(v)


def get(rec: ConfigRecord, key: str, kind: type[T]) -> T:
    """``rec[key]`` checked to be a ``kind`` (an int is not a bool here)."""
    v = rec.get(key)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise FlowerSecAggError(f"record {key!r}: got {type(v).__name__}; want {kind.__name__}")
    return v


def round_config(rec: ConfigRecord) -> RoundConfig:
    """The :class:`RoundConfig` a setup record describes (validated by ``RoundConfig`` itself)."""
    k, floor = get(rec, "k", int), get(rec, "min_survivors", int)
    return RoundConfig(
        n=get(rec, "n", int),
        t=get(rec, "t", int),
        d=get(rec, "d", int),
        bits=get(rec, "bits", int),
        session=get(rec, "session", bytes),
        k=None if k < 0 else k,
        active=get(rec, "active", bool),
        corrupt=get(rec, "corrupt", int),
        min_survivors=None if floor < 0 else floor,
    )


def _setup_record(cfg: RoundConfig, enc: FixedPoint, cid: int, server_key: bytes) -> ConfigRecord:
    return ConfigRecord(
        {
            "phase": "setup",
            "cid": cid,
            "n": cfg.n,
            "t": cfg.t,
            "d": cfg.d,
            "bits": cfg.bits,
            "session": cfg.session,
            "k": opt_int(cfg.k),
            "active": cfg.active,
            "corrupt": cfg.corrupt,
            "min_survivors": opt_int(cfg.min_survivors),
            "clip": float(enc.clip),
            "frac_bits": enc.scale_bits(cfg.n),
            "server_key": server_key,
        }
    )


def put_payload(rd: RecordDict, data: bytes) -> RecordDict:
    """``rd`` with ``data`` as its :data:`PAYLOAD` record."""
    rd[PAYLOAD] = ArrayRecord({"bytes": Array(np.frombuffer(data, np.uint8))})
    return rd


def read_payload(content: RecordDict) -> bytes:
    """The protocol bytes of a message's content (its :data:`PAYLOAD` record, one uint8 vector)."""
    rec = content.array_records.get(PAYLOAD)
    arr = None if rec is None or list(rec.keys()) != ["bytes"] else rec["bytes"]
    if arr is None or arr.dtype != "uint8" or len(arr.shape) != 1:
        raise FlowerSecAggError(f"payload: got {rec!r}; want one uint8 vector named 'bytes'")
    return bytes(arr.numpy().tobytes())


def payload(msg: Message, phase: str) -> bytes:
    """The protocol bytes of a reply, checked against the phase it answers."""
    rec = msg.content.config_records.get(RECORD)
    if rec is None or rec.get("phase") != phase:
        got = None if rec is None else rec.get("phase")
        raise FlowerSecAggError(f"reply: got phase {got!r}; want {phase!r}")
    return read_payload(msg.content)


class _Round:
    """The server's side of one round: a :class:`SecAggServer` and the node <-> client-id map."""

    def __init__(self, grid: Grid, node_ids: Sequence[int], timeout: float | None, group_id: str) -> None:
        self.grid, self.timeout, self.group_id = grid, timeout, group_id
        self.nodes = sorted(int(v) for v in node_ids)
        self.cid = {v: i for i, v in enumerate(self.nodes)}
        self.rejected: list[tuple[str, str, str]] = []
        self.seconds: dict[str, float] = {}
        self.configs: dict[int, dict[str, ConfigRecord]] = {}

    def exchange(self, phase: str, contents: Mapping[int, RecordDict]) -> dict[int, Message]:
        """Send one message per client id and return the valid replies by client id."""
        msgs = [
            Message(c, self.nodes[i], MessageType.TRAIN, group_id=self.group_id) for i, c in contents.items()
        ]
        got: dict[int, Message] = {}
        erred: set[str] = set()
        for reply in self.grid.send_and_receive(msgs, timeout=self.timeout):
            node = int(reply.metadata.src_node_id)
            if node not in self.cid or self.cid[node] not in contents:
                self.rejected.append((phase, str(node), "reply from a node that was not asked"))
                erred.add(str(node))
            elif reply.has_error():
                self.rejected.append((phase, str(node), str(reply.error.reason)))
                erred.add(str(node))
            else:
                got[self.cid[node]] = reply
        for i in contents:
            if i not in got and str(self.nodes[i]) not in erred:
                self.rejected.append((phase, str(self.nodes[i]), "no reply (dropped)"))
        return got

    def collect_keys(
        self, replies: Mapping[int, Message]
    ) -> tuple[dict[int, bytes], dict[int, MetricRecord]]:
        """The nodes' verify keys (the PKI) and training metrics from their setup replies."""
        pki: dict[int, bytes] = {}
        metrics: dict[int, MetricRecord] = {}
        for i, reply in sorted(replies.items()):
            try:
                vk = payload(reply, "setup")
                if len(vk) != keys.KEY_BYTES:
                    raise FlowerSecAggError(
                        f"setup: got a verify key of {len(vk)} bytes; want {keys.KEY_BYTES}"
                    )
            except FlowerSecAggError as e:
                self.rejected.append(("setup", str(self.nodes[i]), str(e)))
                continue
            pki[i] = vk
            for rec in reply.content.metric_records.values():
                metrics[self.nodes[i]] = rec
            self.configs[self.nodes[i]] = {
                k: v for k, v in reply.content.config_records.items() if k != RECORD
            }
        return pki, metrics

    def factors(
        self, pki: dict[int, bytes], metrics: Mapping[int, MetricRecord], key: str | None
    ) -> dict[int, float]:
        """Each node's ``w_u / max w`` from its metric ``key`` (all 1 without a key). A node without a
        finite positive weight is removed from ``pki`` (dropped at setup)."""
        if key is None:
            return dict.fromkeys(pki, 1.0)
        w: dict[int, float] = {}
        for i in sorted(pki):
            rec = metrics.get(self.nodes[i])
            v = None if rec is None else rec.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
                w[i] = float(v)
            else:
                self.rejected.append(("setup", str(self.nodes[i]), f"weight {key!r}: got {v!r}; want > 0"))
                del pki[i]
        top = max(w.values(), default=1.0)
        return {i: v / top for i, v in w.items()}

    def feed(self, server: SecAggServer, phase: str, replies: Mapping[int, Message]) -> dict[int, bytes]:
        """Hand the replies' bytes to the server, close the phase and return its next messages."""
        t0 = time.perf_counter()
        for i, reply in sorted(replies.items()):
            try:
                server.receive(payload(reply, phase))
            except (ProtocolAbort, FlowerSecAggError) as e:
                self.rejected.append((phase, str(self.nodes[i]), f"{type(e).__name__}: {e}"))
        out = server.advance()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
        return out


def plan_round(protocol: SecAggSum, n: int, d: int) -> RoundConfig:
    """The round's public parameters for n nodes: t, k and the colluders tolerated from ``protocol.plan``,
    the ring from its encoding, a fresh random session id."""
    return RoundConfig(n=n, d=d, session=secrets.token_bytes(16), **protocol.round_params(n))


def _record(phase: str, session: bytes, data: bytes | None = None, **values: Any) -> RecordDict:
    rd = RecordDict({RECORD: ConfigRecord({"phase": phase, "session": session, **values})})
    return rd if data is None else put_payload(rd, data)


def secure_mean(
    grid: Grid,
    node_ids: Sequence[int],
    content: RecordDict,
    protocol: SecAggSum,
    *,
    d: int | None = None,
    timeout: float | None = None,
    group_id: str = "secagg",
    weight_key: str | None = None,
) -> SecureMean:
    """Run one secure-aggregation round over ``grid`` and return the survivors' mean update.

    Args:
        grid: the ServerApp's Flower ``Grid`` (deployment, simulation or an in-process one).
        node_ids: the sampled nodes (at least 2); client id i is the i-th smallest node id.
        content: what each node's ``train`` function receives (e.g. the global model's ArrayRecord and a
            ConfigRecord); sent at ``setup``.
        protocol: a fedsec ``"secagg"`` / ``"secagg_plus"`` protocol object: its ``plan(n)`` fixes t, k
            and the colluders tolerated, its encoding the clip and the ring; ``active`` and
            ``min_survivors`` are taken from it too (its simulated ``dropout`` is not used here).
        d: length of the flattened update; default: the number of values in ``content``'s arrays.
        timeout: seconds to wait for replies in each phase (``None``: wait for all).
        group_id: the Flower group id of the round's messages (e.g. the FL round).
        weight_key: ``None`` for the plain mean; else the metric (e.g. ``"num-examples"``) of each node's
            ``train`` reply that gives its public weight w_u > 0, and the release is the weighted mean
            ``sum_{u in U3} w_u x_u / sum_{u in U3} w_u`` (node u encodes ``(w_u / max w) x_u``, as
            :class:`protocols.secagg_sum.SecAggSum` does with ``weights``). A node without a valid
            weight is dropped at setup.

    Raises:
        secagg.ProtocolAbort: (a subclass) when the server cannot produce a correct sum, e.g.
            :class:`secagg.TooFewSurvivors`.
    """
    nodes = sorted(int(v) for v in node_ids)
    n = len(nodes)
    if len(set(nodes)) != n:
        raise FlowerSecAggError(f"node_ids: got {n} ids with repeats; want distinct nodes")
    d = int(d) if d is not None else flatten(content.array_records.values()).size
    cfg = plan_round(protocol, n, d)
    rnd = _Round(grid, nodes, timeout, group_id)
    signer = keys.Signer()
    setup: dict[int, RecordDict] = {}
    for i in range(n):
        setup[i] = RecordDict(dict(content.items()))
        setup[i][RECORD] = _setup_record(cfg, protocol.encoding, i, signer.verify_key)
    pki, metrics = rnd.collect_keys(rnd.exchange("setup", setup))
    server = SecAggServer(cfg, signer, pki)
    ids, vks = sorted(pki), [pki[i] for i in sorted(pki)]
    factor = rnd.factors(pki, metrics, weight_key)
    down = {
        i: _record("advertise_keys", cfg.session, pki_ids=ids, pki_keys=vks, factor=factor[i]) for i in pki
    }
    msgs = rnd.feed(server, "advertise_keys", rnd.exchange("advertise_keys", down))
    for phase in PHASES[2:]:
        if phase == "consistency_check" and not cfg.active:
            continue
        down = {i: _record(phase, cfg.session, b) for i, b in msgs.items()}
        msgs = rnd.feed(server, phase, rnd.exchange(phase, down))
    assert server.result is not None
    total = protocol.encoding.decode_sum(server.result, n)
    survivors = [nodes[i] for i in server.survivors]
    return SecureMean(
        mean=total / sum(factor[i] for i in server.survivors),
        survivors=survivors,
        dropped=[nodes[i] for i in server.dropped],
        rejected=rnd.rejected,
        metrics=metrics,
        seconds=rnd.seconds,
        configs=rnd.configs,
    )
