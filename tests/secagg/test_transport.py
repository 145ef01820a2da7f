"""The asyncio loopback transport, with clients as tasks of one process (fast)."""

from __future__ import annotations

import asyncio
import secrets

import numpy as np
import pytest

from secagg import MalformedMessage, TooFewSurvivors, keys
from secagg.client import SecAggClient, Stage
from secagg.config import RoundConfig
from secagg.server import SecAggServer
from secagg.transport import read_frame, run_client, serve_round


def _round(x: np.ndarray, t: int, drops: dict[int, str], timeout: float = 5.0):  # type: ignore[no-untyped-def]
    n, d = x.shape
    cfg = RoundConfig(n=n, t=t, d=d, session=secrets.token_bytes(16))
    signers = [keys.Signer() for _ in range(n)]
    ss = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, ss.verify_key) for i in range(n)]
    server = SecAggServer(cfg, ss, pki)

    async def main():  # type: ignore[no-untyped-def]
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        srv = asyncio.create_task(serve_round(server, stage_timeout=timeout, on_listening=port.set_result))
        p = await port
        runs = [
            asyncio.create_task(run_client(c, p, drop_at=drops.get(c.cid), timeout=timeout)) for c in clients
        ]
        stages = await asyncio.gather(*runs)
        return await srv, stages

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_round_over_loopback_tcp() -> None:
    x = np.arange(5 * 7, dtype=np.uint64).reshape(5, 7)
    res, stages = _round(x, t=3, drops={1: "masked_input", 4: "advertise_keys"})
    assert res.survivors == [0, 2, 3]
    assert res.sum.tolist() == x[[0, 2, 3]].sum(axis=0).tolist()
    assert stages == [Stage.DONE, Stage.SHARED, Stage.DONE, Stage.DONE, Stage.INIT]


def test_too_few_over_tcp_aborts() -> None:
    x = np.zeros((4, 2), dtype=np.uint64)
    with pytest.raises(TooFewSurvivors):
        _round(x, t=3, drops={0: "masked_input", 1: "masked_input"})


def test_frames_are_validated() -> None:
    async def feed(data: bytes) -> bytes | None:
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        return await read_frame(r)

    assert asyncio.run(feed((3).to_bytes(4, "little") + b"abc")) == b"abc"
    assert asyncio.run(feed(b"")) is None
    with pytest.raises(MalformedMessage, match="frame body: got 2 bytes; want 3"):
        asyncio.run(feed((3).to_bytes(4, "little") + b"ab"))
    with pytest.raises(MalformedMessage, match="frame header"):
        asyncio.run(feed(b"\x01\x00"))
    with pytest.raises(MalformedMessage, match="frame length"):
        asyncio.run(feed((2**31).to_bytes(4, "little")))


def test_frame_length_is_checked_before_the_body_is_read() -> None:
    async def feed(data: bytes, cap: int) -> bytes | None:
        r = asyncio.StreamReader()
        r.feed_data(data)  # no body follows: the check must not wait for it
        r.feed_eof()
        return await read_frame(r, lambda: cap)

    with pytest.raises(MalformedMessage, match="frame length: got 1000000; want <= 300"):
        asyncio.run(feed((10**6).to_bytes(4, "little"), 300))


def test_max_message_bounds_every_message_of_a_round() -> None:
    from secagg import messages as m
    from secagg.driver import run_round

    n, d = 6, 11
    out = run_round(np.zeros((n, d), np.uint64), t=5, active=True)
    assert out.channel is not None
    sizes = [(m.peek(msg.payload)[0], len(msg.payload)) for msg in out.channel.transcript]
    assert {k for k, _ in sizes} == set(m.Kind)
    for kind, size in sizes:
        assert size <= m.max_message([kind], n, d, word_bytes=4), kind
    assert max(s for k, s in sizes if k is m.Kind.MASKED) == m.max_message([m.Kind.MASKED], n, d, 4)


def test_an_unauthenticated_peer_cannot_make_the_server_buffer_a_large_frame() -> None:
    n, d = 3, 4
    x = np.ones((n, d), dtype=np.uint64)
    cfg = RoundConfig(n=n, t=2, d=d, session=secrets.token_bytes(16))
    signers = [keys.Signer() for _ in range(n)]
    ss = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, ss.verify_key) for i in range(n)]
    server = SecAggServer(cfg, ss, pki)

    async def main():  # type: ignore[no-untyped-def]
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        srv = asyncio.create_task(serve_round(server, stage_timeout=5, on_listening=port.set_result))
        p = await port
        reader, writer = await asyncio.open_connection("127.0.0.1", p)
        writer.write((1 << 29).to_bytes(4, "little") + b"x" * 1024)  # claims 512 MiB
        await writer.drain()
        cut = await asyncio.wait_for(reader.read(), 10)  # the server closes it at once
        runs = [asyncio.create_task(run_client(c, p, timeout=5)) for c in clients]
        await asyncio.gather(*runs)
        writer.close()
        return await srv, cut

    res, cut = asyncio.run(asyncio.wait_for(main(), 60))
    assert cut == b""
    assert res.survivors == [0, 1, 2]
    assert res.sum.tolist() == x.sum(axis=0).tolist()
