"""The TCP loopback channel: the same rounds over real sockets give the same aggregates and byte counts as
in process; the per-phase size cap and the fault hooks hold on the sockets too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import protocols
import robust
from protocols.base import Meter
from protocols.channel import TcpChannel, drop, open_channel
from protocols.plain import PlainAggregation
from secagg.driver import run_round
from secagg.errors import MalformedMessage


def _stack(n: int = 5, d: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, d)), dtype=torch.float32)


def _bytes(meter: Meter) -> dict[tuple[str, str], tuple[int, int]]:
    return {k: (c.bytes_sent, c.bytes_received) for k, c in meter.costs.items()}


@pytest.mark.parametrize("active", [False, True])
def test_the_masking_round_over_tcp_gives_the_in_process_sum_and_bytes(active: bool) -> None:
    x = np.arange(24, dtype=np.uint64).reshape(6, 4) * 1000
    drops = {2: "masked_input", 5: "share_keys"}
    local = run_round(x, t=4, active=active, dropouts=drops)
    tcp = run_round(x, t=4, active=active, dropouts=drops, channel=TcpChannel())
    assert tcp.survivors == local.survivors == [0, 1, 3, 4]
    assert tcp.sum.tolist() == local.sum.tolist() == x[[0, 1, 3, 4]].sum(axis=0).tolist()
    assert tcp.channel is not None and local.channel is not None
    assert _bytes(tcp.channel.meter) == _bytes(local.channel.meter)
    assert len(tcp.channel.transcript) == len(local.channel.transcript)


def test_plain_over_tcp_is_bit_exact() -> None:
    x = _stack()
    local = PlainAggregation(robust.Mean()).run(x)
    proto = PlainAggregation(robust.Mean())
    proto.transport = "tcp"
    tcp = proto.run(x)
    assert isinstance(proto.channel, TcpChannel)
    assert torch.equal(tcp.aggregate, local.aggregate) and tcp.accepted == local.accepted
    assert _bytes(tcp.meter) == _bytes(local.meter)


@pytest.mark.parametrize(
    ("mech", "params"), [("secagg", {}), ("secagg_plus", {"k": 2}), ("prio", {"wr_checks": 20})]
)
def test_a_mechanism_over_tcp_releases_the_in_process_aggregate(mech: str, params: dict) -> None:
    x = _stack(n=6, seed=1) * 0.3
    local = protocols.make(mech, rule=robust.Mean(), **params).run(x)
    proto = protocols.make(mech, rule=robust.Mean(), **params)
    inner = getattr(proto, "inner", proto)
    inner.transport = "tcp"
    tcp = proto.run(x)
    assert isinstance(inner.channel, TcpChannel)
    assert tcp.accepted == local.accepted == list(range(6))
    # both equal the plaintext mean up to the fixed-point step (stochastic rounding differs per run)
    assert torch.allclose(tcp.aggregate, local.aggregate, atol=1e-4)
    assert tcp.meter.total("client").bytes_sent == local.meter.total("client").bytes_sent


def test_a_frame_over_the_phase_cap_is_refused_before_its_body_is_read() -> None:
    x = _stack(n=3, d=40)
    ch = TcpChannel(limits={"upload": 100})
    got = ch.exchange("upload", "update", [(f"client[{i}]", "server", bytes(x[i].numpy())) for i in range(2)])
    assert got.frames == []
    assert [why for _, why in got.refused] == ["MalformedMessage: frame length: got 199; want <= 100"] * 2
    small = ch.exchange("upload", "update", [("client[2]", "server", b"ok")])
    assert [f.payload for f in small.frames] == [b"ok"]


def test_fault_hooks_apply_before_the_sockets() -> None:
    x = _stack()
    proto = PlainAggregation(robust.Mean(), faults=[drop(lambda f: f.sender == "client[1]")])
    proto.transport = "tcp"
    res = proto.run(x)
    assert res.accepted == [0, 2, 3, 4]
    assert torch.allclose(res.aggregate, x[[0, 2, 3, 4]].mean(dim=0))


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="transport: got 'udp'"):
        open_channel("udp")
