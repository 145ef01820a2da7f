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
