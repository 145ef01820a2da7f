"""Loopback TCP transport (asyncio, 127.0.0.1 only) so that clients can run as separate processes.

Frames are ``length u32 (little-endian) | message``, where a message is exactly what
:mod:`secagg.messages` defines; the transport adds no trust. A connection is bound to a client id by its
first message that the server accepts (it carries the client's signature), and later messages on that
connection must come from the same id. Frame lengths are checked before a byte of the body is read:
an unbound connection may send only an AdvertiseKeys message (under 300 bytes), a bound one at most the
largest message of the current or previous stage for the round's (n, d)
(:func:`secagg.messages.max_message`), and a client reads at most the largest server message; a longer
frame closes the connection, so no peer makes the other buffer more than the protocol needs.

Each stage waits until every eligible client has sent a message
or ``stage_timeout`` seconds pass; clients that stay silent are dropouts. The server closes every
connection when the round ends (EOF tells clients the round is over).

PKI provisioning for separate processes (:func:`run_local_round`): each client process generates its
own signing key and sends only its verify key to the parent, which distributes the key directory;
no secret crosses a process boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg import keys
from secagg import messages as m
from secagg.channel import reason_of
from secagg.client import CLIENT_TRANSITIONS, SecAggClient, Stage
from secagg.config import RoundConfig
from secagg.errors import MalformedMessage, ProtocolAbort, SecAggError
from secagg.server import SERVER_TRANSITIONS, SecAggServer

HOST = "127.0.0.1"
MAX_FRAME = 1 << 30


async def read_frame(
    reader: asyncio.StreamReader, limit: Callable[[], int] = lambda: MAX_FRAME
) -> bytes | None:
    """One frame, or ``None`` on a clean EOF before its header; ``limit()`` (read after the header)
    caps its length."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise MalformedMessage(f"frame header: got {len(e.partial)} bytes; want 4") from e
        return None
    size = int.from_bytes(head, "little")
    cap = min(limit(), MAX_FRAME)
    if size > cap:
        raise MalformedMessage(f"frame length: got {size}; want <= {cap}")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise MalformedMessage(f"frame body: got {len(e.partial)} bytes; want {size}") from e


def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(len(data).to_bytes(4, "little") + data)


@dataclass
class ServeResult:
    sum: np.ndarray
    survivors: list[int]
    dropped: list[int]
    rejected: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Serving:
    """The server side of one TCP round: connections, the clients they are bound to, the message queue."""

    server: SecAggServer
    queue: asyncio.Queue[tuple[asyncio.StreamWriter, bytes]] = field(default_factory=asyncio.Queue)
    writers: dict[int, asyncio.StreamWriter] = field(default_factory=dict)
    bound: dict[asyncio.StreamWriter, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    conns: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    gone: set[int] = field(default_factory=set)
    unbound_gone: int = 0

    def limit_for(self, writer: asyncio.StreamWriter) -> int:
        """The largest frame this connection may send now (see the module docstring)."""
        cfg, server = self.server.cfg, self.server
        if writer not in self.bound:
            return m.max_message([m.Kind.ADVERTISE], cfg.n, cfg.d, cfg.word_bytes)
        stages = list(SERVER_TRANSITIONS)
        if server.stage not in SERVER_TRANSITIONS:
            return m.ENVELOPE_OVERHEAD
        i = stages.index(server.stage)
        kinds = [SERVER_TRANSITIONS[s][0] for s in stages[max(0, i - 1) : i + 1]]
        return m.max_message(kinds, cfg.n, cfg.d, cfg.word_bytes)

    async def on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.append(task)
        try:
            while (frame := await read_frame(reader, lambda: self.limit_for(writer))) is not None:
                await self.queue.put((writer, frame))
        except MalformedMessage as e:
            self.rejected.append((self.server.stage.value, reason_of(e)))
            writer.close()
            if writer not in self.bound:
                return  # a stranger that broke the framing: not a client that dropped
        except ConnectionError:
            pass
        await self.queue.put((writer, b""))  # the connection is gone

    async def collect(self, expected: set[int], stage_timeout: float) -> None:
        """Feed the server this stage's messages until every expected client sent one or time runs out."""
        phase = self.server.stage.value
        got: set[int] = set()
        deadline = time.monotonic() + stage_timeout
        while len(got) + self.unbound_gone * (phase == "advertise_keys") < len(expected):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                writer, frame = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                break
            if not frame:  # a closed connection: its client is a dropout
                if writer in self.bound:
                    self.gone.add(self.bound[writer])
                    expected.discard(self.bound[writer])
                else:
                    self.unbound_gone += 1
                continue
            try:
                _, sender = m.peek(frame)
                if writer in self.bound and self.bound[writer] != sender:
                    raise MalformedMessage(f"connection of client {self.bound[writer]}: got sender {sender}")
                self.server.receive(frame)
            except ProtocolAbort as e:
                self.rejected.append((phase, reason_of(e)))
                continue
            self.bound[writer] = sender
            self.writers[sender] = writer
            got.add(sender)

    async def send(self, out: Mapping[int, bytes]) -> None:
        """The server's messages of the next stage to the clients still connected."""
        for cid, msg in out.items():
            w = self.writers.get(cid)
            if w is not None and not w.is_closing():
                write_frame(w, msg)
        for w in list(self.writers.values()):
            with contextlib.suppress(ConnectionError):
                await w.drain()


async def serve_round(
    server: SecAggServer,
    *,
    port: int = 0,
    stage_timeout: float = 10.0,
    on_listening: Any = None,
) -> ServeResult:
    """Run ``server`` over TCP on 127.0.0.1:``port`` until the round ends (or aborts).

    ``on_listening(port)`` is called once the socket is bound (``port=0`` picks a free port).
    """
    st = _Serving(server)
    srv = await asyncio.start_server(st.on_conn, HOST, port)
    try:
        if on_listening is not None:
            on_listening(srv.sockets[0].getsockname()[1])
        expected: set[int] = set(range(server.cfg.n))
        while server.stage in SERVER_TRANSITIONS:
            await st.collect(expected, stage_timeout)
            out = server.advance()
            await st.send(out)
            expected = set(out) - st.gone
    finally:
        for w in st.conns:
            w.close()
        if st.tasks:
            await asyncio.wait(st.tasks, timeout=5)
        srv.close()
        with contextlib.suppress(Exception):
            await srv.wait_closed()
    assert server.result is not None
    return ServeResult(server.result, server.survivors, server.dropped, st.rejected)


async def run_client(
    client: SecAggClient, port: int, *, drop_at: str | None = None, timeout: float = 30.0
) -> Stage:
    """Run one client against 127.0.0.1:``port``; returns its final stage.

    ``drop_at`` (a phase name of :data:`secagg.driver.PHASES`) simulates a crash: the client disconnects
    instead of sending its message of that phase.
    """
    from secagg.driver import PHASES  # the phase names live with the in-process driver

    if drop_at is not None and drop_at not in PHASES:
        raise SecAggError(f"drop_at: got {drop_at!r}; want None or one of {PHASES}")
    reader, writer = await asyncio.open_connection(HOST, port)
    cfg = client.cfg
    from_server = [m.Kind.KEYS, m.Kind.CIPHERTEXTS, m.Kind.SURVIVORS, m.Kind.UNMASK_REQUEST]
    cap = m.max_message(from_server, cfg.n, cfg.d, cfg.word_bytes)
    reply_phase = {
        Stage.SHARED: "share_keys",
        Stage.MASKED: "masked_input",
        Stage.CONFIRMED: "consistency_check",
        Stage.DONE: "unmasking",
    }
    try:
        if drop_at == "advertise_keys":
            return client.stage
        write_frame(writer, client.start())
        await writer.drain()
        while True:
            frame = await asyncio.wait_for(read_frame(reader, lambda: cap), timeout)
            if frame is None:
                return client.stage
            if drop_at is not None:
                with contextlib.suppress(MalformedMessage):
                    nxt = CLIENT_TRANSITIONS.get((client.stage, m.peek(frame)[0]))
                    if nxt is not None and reply_phase.get(nxt) == drop_at:
                        return client.stage  # crash instead of answering
            try:
                reply = client.handle(frame)
            except ProtocolAbort:
                if client.stage is Stage.ABORTED:
                    return client.stage
                continue  # a message that failed validation: ignore it
            write_frame(writer, reply)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def client_main(
    cid: int, x: np.ndarray, cfg: RoundConfig, conn: Any, drop_at: str | None = None, timeout: float = 30.0
) -> None:
    """Entry point of a client process: register a fresh verify key through ``conn``, then run."""
    signer = keys.Signer()
    conn.send(signer.verify_key)
    pki, server_key, port = conn.recv()
    client = SecAggClient(cid, x, cfg, signer, pki, server_key)
    stage = asyncio.run(run_client(client, port, drop_at=drop_at, timeout=timeout))
    conn.send(stage.value)
    conn.close()


def run_local_round(
    inputs: np.ndarray,
    *,
    t: int,
    bits: int = 32,
    k: int | None = None,
    active: bool = False,
    dropouts: Mapping[int, str] | None = None,
    stage_timeout: float = 10.0,
    session: bytes | None = None,
) -> tuple[ServeResult, dict[int, str]]:
    """Run one round with each client in its own process, over TCP on 127.0.0.1.

    Returns the server's result and each client's final stage.
    """
    x = np.asarray(inputs)
    n, d = x.shape
    sess = session if session is not None else secrets.token_bytes(16)
    cfg = RoundConfig(n=n, t=t, d=d, bits=bits, session=sess, k=k, active=active)
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    drops = dict(dropouts or {})
    for i in range(n):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=client_main, args=(i, x[i], cfg, child, drops.get(i)), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        pki = {}
        for i, p_conn in enumerate(pipes):
            if not p_conn.poll(60):
                raise SecAggError(f"client process {i}: got no verify key within 60 s; want registration")
            pki[i] = p_conn.recv()
        server_signer = keys.Signer()
        server = SecAggServer(cfg, server_signer, pki)

        def listening(port: int) -> None:
            for p_conn in pipes:
                p_conn.send((pki, server_signer.verify_key, port))

        result = asyncio.run(serve_round(server, stage_timeout=stage_timeout, on_listening=listening))
        stages = {
            i: (p_conn.recv() if p_conn.poll(stage_timeout) else "unknown") for i, p_conn in enumerate(pipes)
        }
        return result, stages
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
