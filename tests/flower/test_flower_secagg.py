"""fedsec's secure aggregation over Flower messages (fedsec.flower.secagg), on an in-process Grid that
serializes every message to Flower's wire format: the released mean, dropouts at each phase against
fedsec's own driver, what a curious server sees, and refused messages."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsec.flower.secagg import (
    PAYLOAD,
    PHASES,
    RECORD,
    flatten,
    put_payload,
    read_payload,
    secure_mean,
    unflatten,
)
from fedsec.flower.secagg_loopback import LoopbackGrid
from fedsec.flower.secagg_mod import STATE, secagg_mod
from protocols.secagg_sum import SecAggPlusSum, SecAggSum
from secagg import TooFewSurvivors, keys
from secagg.driver import run_round

pytestmark = pytest.mark.flower

D = 40


def _nodes(n: int) -> list[int]:
    return [1000 + 17 * i for i in range(n)]  # node ids unrelated to client ids


def _config(nodes: list[int]) -> dict[int, dict[str, int | float | str]]:
    return {v: {"partition-id": i} for i, v in enumerate(nodes)}


def _app(updates: np.ndarray, examples: Callable[[int], int] = lambda i: 10 + i) -> ClientApp:
    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        i = int(ctx.node_config["partition-id"])
        metrics = MetricRecord({"examples": examples(i)})
        content = RecordDict({"arrays": ArrayRecord([updates[i]]), "m": metrics})
        return Message(content, reply_to=msg)

    return app


def _grid(
    updates: np.ndarray, lose: Callable[[Message], bool] | None = None, app: ClientApp | None = None
) -> LoopbackGrid:
    nodes = _nodes(len(updates))
    app = app or _app(updates)
    return LoopbackGrid({v: app for v in nodes}, node_config=_config(nodes), lose=lose)


def _phase(msg: Message) -> str:
    return str(msg.content.config_records[RECORD]["phase"])


def _updates(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (n, D)).astype(np.float32)


CONTENT = RecordDict({"arrays": ArrayRecord([np.zeros(D, np.float32)])})


@pytest.mark.parametrize(
    "protocol",
    [SecAggSum(), SecAggSum(active=True), SecAggPlusSum(k=4), SecAggPlusSum(k=4, active=True)],
    ids=["secagg", "secagg-active", "secagg_plus", "secagg_plus-active"],
)
def test_the_released_mean_is_the_mean_of_the_updates(protocol: SecAggSum) -> None:
    x = _updates(8)
    grid = _grid(x)
    res = secure_mean(grid, _nodes(8), CONTENT, protocol)
    assert res.survivors == _nodes(8) and res.dropped == [] and res.rejected == []
    step = 2.0 ** -protocol.encoding.scale_bits(8)
    np.testing.assert_allclose(res.mean, x.astype(np.float64).mean(0), atol=step)
    assert {v: int(r["examples"]) for v, r in res.metrics.items()} == {
        v: 10 + i for i, v in enumerate(_nodes(8))
    }
    # the round is over: no node keeps its secrets
    assert all(STATE not in c.state.config_records for c in grid.contexts.values())


@pytest.mark.parametrize(
    ("phase", "active"),
    [(p, a) for p in PHASES[1:] for a in (False, True) if a or p != "consistency_check"],
)
def test_a_dropout_between_phases_is_handled_as_fedsec_handles_it(phase: str, active: bool) -> None:
    n, gone = 6, 2
    x = _updates(n, seed=1)
    nodes = _nodes(n)
    order = list(PHASES)

    def lose(msg: Message) -> bool:
        return msg.metadata.dst_node_id == nodes[gone] and order.index(_phase(msg)) >= order.index(phase)

    res = secure_mean(_grid(x, lose), nodes, CONTENT, SecAggSum(active=active))
    protocol = SecAggSum(active=active)
    plan = protocol.plan(n)
    enc = np.stack([protocol.encoding.encode(v, n_summands=n) for v in x])
    ref = run_round(enc, t=plan.t, active=active, dropouts={gone: phase}, corrupt=plan.corrupt)
    assert res.survivors == [nodes[i] for i in ref.survivors]
    assert res.dropped == [nodes[i] for i in ref.dropped]
    assert (phase, str(nodes[gone]), "no reply (dropped)") in res.rejected
    step = 2.0 ** -protocol.encoding.scale_bits(n)
    np.testing.assert_allclose(res.mean, x[ref.survivors].astype(np.float64).mean(0), atol=step)


@pytest.mark.parametrize("gone_at", [None, "masked_input", "unmasking"])
def test_public_weights_give_the_weighted_mean_of_the_survivors(gone_at: str | None) -> None:
    n, gone = 6, 4
    x = _updates(n, seed=4)
    nodes = _nodes(n)
    order = list(PHASES)

    def lose(msg: Message) -> bool:
        due = order.index(_phase(msg))
        return gone_at is not None and msg.metadata.dst_node_id == nodes[gone] and due >= order.index(gone_at)

    res = secure_mean(_grid(x, lose), nodes, CONTENT, SecAggSum(), weight_key="examples")
    keep = [i for i, v in enumerate(nodes) if v in res.survivors]
    assert keep == ([i for i in range(n) if i != gone] if gone_at == "masked_input" else list(range(n)))
    w = np.array([10.0 + i for i in keep])  # the app reports examples = 10 + partition id
    want = (w[:, None] * x[keep].astype(np.float64)).sum(0) / w.sum()
    np.testing.assert_allclose(res.mean, want, atol=2.0 ** -SecAggSum().encoding.scale_bits(n))


def test_a_node_without_a_valid_weight_is_dropped_at_setup() -> None:
    x, nodes = _updates(5), _nodes(5)
    app = _app(x, examples=lambda i: 0 if i == 2 else 3)
    grid = LoopbackGrid({v: app for v in nodes}, node_config=_config(nodes))
    res = secure_mean(grid, nodes, CONTENT, SecAggSum(), weight_key="examples")
    assert res.dropped == [nodes[2]]
    assert res.rejected == [("setup", str(nodes[2]), "weight 'examples': got 0; want > 0")]
    np.testing.assert_allclose(res.mean, np.delete(x, 2, 0).astype(np.float64).mean(0), atol=1e-8)
    with pytest.raises(TooFewSurvivors):  # no node reports the weight: nothing to release
        secure_mean(_grid(x), nodes, CONTENT, SecAggSum(), weight_key="samples")


def test_too_many_dropouts_abort_instead_of_releasing_a_small_sum() -> None:
    n = 5
    nodes = _nodes(n)

    def lose(msg: Message) -> bool:
        return msg.metadata.dst_node_id in nodes[:3] and _phase(msg) == "masked_input"

    with pytest.raises(TooFewSurvivors):
        secure_mean(_grid(_updates(n), lose), nodes, CONTENT, SecAggSum())


class _CuriousGrid(LoopbackGrid):
    """Records everything the server receives."""

    seen: list[Message]

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        got = list(super().pull_messages(message_ids))
        self.__dict__.setdefault("seen", []).extend(got)
        return got


def test_a_curious_server_sees_masked_inputs_only() -> None:
    n = 6
    x = _updates(n, seed=2)
    nodes = _nodes(n)
    app = _app(x)
    grid = _CuriousGrid({v: app for v in nodes}, node_config=_config(nodes))
    protocol = SecAggSum()
    res = secure_mean(grid, nodes, CONTENT, protocol)
    assert res.survivors == nodes
    seen = grid.__dict__["seen"]
    # no update's arrays reach the server: a reply's only array is its protocol bytes
    assert seen and all(list(m.content.array_records) == [PAYLOAD] for m in seen)
    masked = {m.metadata.src_node_id: m for m in seen if _phase(m) == "masked_input"}
    assert sorted(masked) == nodes
    for i, v in enumerate(nodes):
        data = read_payload(masked[v].content)
        assert x[i].tobytes() not in data
        # the attacker decodes the masked words as if they were the encoding: nothing near the update
        body = np.frombuffer(data[-(4 * D + 64) : -64], "<u4").astype(np.uint64)
        guess = protocol.encoding.decode_sum(body, n)
        assert np.mean(np.abs(guess - x[i]) < 0.05) < 0.25


class _InjectGrid(LoopbackGrid):
    """Before each message of a round to node ``victim``, delivers copies of it relabelled with every
    other phase (``setup`` excepted: it always starts a new round), and keeps their replies."""

    def _deliver(self, msg: Message) -> None:
        got = self.__dict__.setdefault("injected", [])
        nid = int(msg.metadata.dst_node_id)
        if nid == self.__dict__["victim"] and _phase(msg) != "setup":
            rec = msg.content.config_records[RECORD]
            for wrong in [p for p in PHASES[1:] if p != _phase(msg)]:
                rd = RecordDict(
                    {**dict(msg.content.items()), RECORD: ConfigRecord({**dict(rec), "phase": wrong})}
                )
                fake = Message(rd, nid, MessageType.TRAIN, group_id="x")
                fake.metadata.__dict__["_message_id"] = f"fake-{wrong}"
                super()._deliver(fake)
                got.append((_phase(msg), wrong, self._replies.pop(f"fake-{wrong}")))
        super()._deliver(msg)


def test_every_out_of_order_phase_is_refused_and_the_round_goes_on() -> None:
    n = 5
    x = _updates(n, seed=3)
    nodes = _nodes(n)
    app = _app(x)
    grid = _InjectGrid({v: app for v in nodes}, node_config=_config(nodes))
    grid.__dict__["victim"] = nodes[1]
    res = secure_mean(grid, nodes, CONTENT, SecAggSum(active=True))
    injected = grid.__dict__["injected"]
    assert {(due, wrong) for due, wrong, _ in injected} == {
        (due, wrong) for due in PHASES[1:] for wrong in PHASES[1:] if wrong != due
    }
    for due, wrong, reply in injected:
        assert reply.has_error(), (due, wrong)
        assert "StageError" in reply.error.reason and repr(wrong) in reply.error.reason, (due, wrong)
    assert res.survivors == nodes and res.rejected == []
    step = 2.0 ** -SecAggSum().encoding.scale_bits(n)
    np.testing.assert_allclose(res.mean, x.astype(np.float64).mean(0), atol=step)


def test_an_update_of_the_wrong_length_is_refused_at_setup() -> None:
    with pytest.raises(TooFewSurvivors):
        secure_mean(_grid(_updates(4)), _nodes(4), CONTENT, SecAggSum(), d=D + 1)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4),
    st.integers(0, 2**16),
)
def test_flatten_and_unflatten_round_trip(shapes: list[list[int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    like = ArrayRecord([rng.normal(size=tuple(s)).astype(np.float32) for s in shapes])
    back = unflatten(flatten([like]), like)
    assert list(back.keys()) == list(like.keys())
    for a, b in zip(like.to_numpy_ndarrays(), back.to_numpy_ndarrays()):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_round_runs_on_flowers_simulation_engine() -> None:
    """The same round on Flower's simulation runtime (Ray): each node's state lives in the runtime's
    node context between messages."""
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    n = 4
    x = _updates(n, seed=5)
    server, out = ServerApp(), {}

    @server.main()
    def main(grid: Grid, ctx: Context) -> None:
        end = time.monotonic() + 120
        while len(nodes := sorted(grid.get_node_ids())) < n and time.monotonic() < end:
            time.sleep(0.2)
        out["res"] = secure_mean(grid, nodes, CONTENT, SecAggSum(active=True))

    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}}
    run_simulation(server, _app(x), num_supernodes=n, backend_config=backend)
    res = out["res"]
    assert len(res.survivors) == n and res.rejected == []
    # simulation partition ids follow the node order the runtime chose; the mean does not depend on it
    np.testing.assert_allclose(
        res.mean, x.astype(np.float64).mean(0), atol=2.0 ** -SecAggSum().encoding.scale_bits(n)
    )


class _RewriteGrid(LoopbackGrid):
    """Applies ``rewrite(message) -> message`` to every message on its way to a node, and
    ``rewrite_up(reply) -> reply`` to every reply on its way back (a network or server attacker)."""

    def _deliver(self, msg: Message) -> None:
        down = self.__dict__.get("rewrite")
        super()._deliver(down(msg) if down else msg)
        up = self.__dict__.get("rewrite_up")
        mid = msg.metadata.message_id
        if up and mid in self._replies:
            self._replies[mid] = up(self._replies[mid])


def _set(msg: Message, **values: object) -> Message:
    rec = msg.content.config_records[RECORD]
    msg.content.config_records[RECORD] = ConfigRecord({**dict(rec), **values})  # type: ignore[dict-item]
    return msg


def test_a_server_substituting_a_nodes_own_verify_key_is_refused_by_that_node() -> None:
    """Attack: the server hands node 1 a PKI in which node 1's own verify key is the attacker's (to
    impersonate it to the others). Node 1 refuses; the round goes on without it."""
    n = 5
    x, nodes = _updates(n, seed=6), _nodes(n)
    app = _app(x)
    grid = _RewriteGrid({v: app for v in nodes}, node_config=_config(nodes))

    evil = keys.Signer().verify_key

    def rewrite(msg: Message) -> Message:
        if msg.metadata.dst_node_id == nodes[1] and _phase(msg) == "advertise_keys":
            rec = msg.content.config_records[RECORD]
            vks = list(rec["pki_keys"])  # type: ignore[arg-type]
            vks[list(rec["pki_ids"]).index(1)] = evil  # type: ignore[arg-type]
            return _set(msg, pki_keys=vks)
        return msg

    grid.__dict__["rewrite"] = rewrite
    res = secure_mean(grid, nodes, CONTENT, SecAggSum())
    assert res.dropped == [nodes[1]]
    assert [r[:2] for r in res.rejected] == [("advertise_keys", str(nodes[1]))]
    assert "AuthenticationError" in res.rejected[0][2] and "substituted" in res.rejected[0][2]
    np.testing.assert_allclose(res.mean, np.delete(x, 1, 0).astype(np.float64).mean(0), atol=1e-8)


def test_a_masked_input_tampered_in_flight_is_rejected_and_its_node_dropped() -> None:
    """Attack: one byte of node 3's masked input flipped on the way to the server. The server refuses
    it (the signature fails), treats node 3 as dropped and removes its masks: the mean is still exact."""
    n = 5
    x, nodes = _updates(n, seed=7), _nodes(n)
    app = _app(x)
    grid = _RewriteGrid({v: app for v in nodes}, node_config=_config(nodes))

    def rewrite_up(reply: Message) -> Message:
        if reply.metadata.src_node_id == nodes[3] and _phase(reply) == "masked_input":
            data = bytearray(read_payload(reply.content))
            data[100] ^= 0x01
            put_payload(reply.content, bytes(data))
        return reply

    grid.__dict__["rewrite_up"] = rewrite_up
    res = secure_mean(grid, nodes, CONTENT, SecAggSum())
    assert res.dropped == [nodes[3]]
    assert [r[:2] for r in res.rejected] == [("masked_input", str(nodes[3]))]
    assert "AuthenticationError" in res.rejected[0][2]
    np.testing.assert_allclose(res.mean, np.delete(x, 3, 0).astype(np.float64).mean(0), atol=1e-8)
