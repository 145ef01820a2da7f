"""The wire and channel layer (protocols.channel) and the plain mechanism on it: real bytes metered,
a transcript of what arrived, and the fault hooks played against the real server."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import protocols
import robust
from protocols.channel import Channel, Frame, FrameError, drop, reorder, replay, tamper
from protocols.plain import PlainAggregation, decode_update, encode_update

N, D = 6, 9


def _stack(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(1), dtype=dtype)


names = st.text(min_size=0, max_size=12)


@given(st.integers(0, 2**32 - 1), names, names, names, st.binary(max_size=64))
def test_frame_round_trip(rnd: int, sender: str, receiver: str, kind: str, payload: bytes) -> None:
    f = Frame(rnd, sender, receiver, kind, payload)
    assert Frame.decode(f.encode()) == f


@given(st.binary(max_size=40))
def test_frame_decode_refuses_garbage(data: bytes) -> None:
    try:
        Frame.decode(data)
    except FrameError:
        return
    assert data.startswith(b"FSF1")  # only a well-formed header may parse


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_update_encoding_is_bit_exact(dtype: torch.dtype) -> None:
    row = _stack(dtype)[0]
    assert torch.equal(decode_update(encode_update(row), D), row)
    with pytest.raises(FrameError, match="want d"):
        decode_update(encode_update(row), D + 1)


def test_plain_sends_real_bytes_and_matches_the_rule() -> None:
    x = _stack()
    proto = protocols.make("plain", rule=robust.Mean())
    res = proto.run(x)
    assert torch.equal(res.aggregate, x.mean(dim=0))
    ch = proto.inner.channel
    frame_bytes = len(Frame(1, "client[0]", "server", "update", encode_update(x[0])).encode())
    assert res.meter.total("client").bytes_sent == N * frame_bytes
    assert res.meter.total("server").bytes_received == N * frame_bytes
    assert [m.sender for m in ch.transcript] == [f"client[{i}]" for i in range(N)]
    assert all(decode_update(m.payload, D).equal(x[i]) for i, m in enumerate(ch.transcript))


def test_dropped_client_is_not_accepted() -> None:
    x = _stack()
    res = PlainAggregation(robust.Mean(), faults=[drop(lambda f: f.sender == "client[2]")]).run(x)
    assert res.accepted == [0, 1, 3, 4, 5]
    torch.testing.assert_close(res.aggregate, x[[0, 1, 3, 4, 5]].mean(dim=0))


def test_tamper_changes_an_unsigned_update_and_is_refused_when_signed() -> None:
    x = _stack()
    hit = tamper(lambda f: f.sender == "client[1]")
    unsigned = PlainAggregation(robust.Mean(), faults=[hit]).run(x)
    assert unsigned.accepted == list(range(N))
    assert not torch.equal(unsigned.aggregate, x.mean(dim=0))  # the attacker moved the aggregate
    proto = PlainAggregation(robust.Mean(), faults=[hit], sign=True)
    signed = proto.run(x)
    assert signed.accepted == [0, 2, 3, 4, 5]
    torch.testing.assert_close(signed.aggregate, x[[0, 2, 3, 4, 5]].mean(dim=0))


def test_replayed_frames_are_refused() -> None:
    x = _stack()
    proto = PlainAggregation(robust.Mean())
    proto.run(x)
    old = [m for m in proto.channel.transcript]  # type: ignore[union-attr]
    wire_old = [Frame(1, m.sender, m.receiver, "update", m.payload).encode() for m in old]
    y = -x
    proto.faults = [replay(wire_old)]
    res = proto.run(y)  # round 2: round-1 frames come again
    assert torch.equal(res.aggregate, y.mean(dim=0))
    ch = Channel(round_id=3)
    got = ch.exchange("upload", "update", [("client[0]", "server", b"a"), ("client[0]", "server", b"b")])
    assert [f.payload for f in got.frames] == [b"a"]
    assert "a replay?" in got.refused[0][1]


def test_reorder_keeps_the_aggregate_and_the_ids() -> None:
    x = _stack()
    res = PlainAggregation(robust.Krum(f=1), faults=[reorder()]).run(x)
    ref = robust.Krum(f=1)
    assert torch.equal(res.aggregate, ref(x))
    assert res.accepted == [int(i) for i in ref.last_selection]


def test_forged_sender_is_refused_when_signed() -> None:
    ch = Channel(sign=True, round_id=1)
    ch.signing_key("client[0]")
    forged = Frame(1, "client[0]", "server", "update", b"evil", bytes(64)).encode()
    got = ch.exchange("upload", "update", [])
    assert got.frames == []
    ch.faults = [replay([forged])]
    got = ch.exchange("upload", "update", [])
    assert got.frames == [] and "bad signature" in got.refused[0][1]
