"""The channel over real sockets: :class:`TcpChannel` moves every frame over TCP on 127.0.0.1.

Same interface as the in-process :class:`secagg.channel.Channel` (it is a subclass): framing, metering,
the transcript, the fault hooks and the receiver's refusals are the channel's; only :meth:`carry` differs.
For each phase the receiving side listens on a fresh loopback port, every sender opens its own
connection and writes its frames with the transport's length prefix (:func:`secagg.transport.write_frame`),
and the receiving side reads them back with :func:`secagg.transport.read_frame` under the phase's size
cap (``limits``, e.g. from :func:`secagg.messages.max_message`): a longer frame is refused before its
body is read and its connection closed. Frames arrive in the order the sockets deliver them. The meter
counts the frame bytes, as in process (the 4-byte length prefix is the transport's, not the message's),
so a mechanism's figures are the same over either channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from secagg.channel import Channel, reason_of, sender_of
from secagg.errors import MalformedMessage
from secagg.transport import HOST, MAX_FRAME, read_frame, write_frame


@dataclass
class TcpChannel(Channel):
    """A :class:`Channel` whose frames cross loopback TCP sockets (see the module docstring).

    Args (besides :class:`Channel`'s):
        limits: largest frame, in bytes, a receiver accepts in each phase (default: the transport's cap).
        timeout: seconds a phase may take on the sockets before the missing frames count as lost.
    """

    limits: Mapping[str, int] = field(default_factory=dict)
    timeout: float = 30.0

    def carry(
        self, phase: str, wire: list[bytes], senders: Sequence[str] | None = None
    ) -> tuple[list[bytes], list[tuple[bytes, str]]]:
        """Send each sender's frames over its own connection; return what arrived and what was refused."""
        names = list(senders) if senders is not None else [sender_of(d) for d in wire]
        by_sender: dict[str, list[bytes]] = {}
        for name, data in zip(names, wire, strict=True):
            by_sender.setdefault(name, []).append(data)
        return asyncio.run(self._relay(self.limits.get(phase, MAX_FRAME), by_sender))

    async def _relay(
        self, cap: int, by_sender: Mapping[str, list[bytes]]
    ) -> tuple[list[bytes], list[tuple[bytes, str]]]:
        arrived: list[bytes] = []
        lost: list[tuple[bytes, str]] = []
        readers: list[asyncio.Task[None]] = []

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while (data := await read_frame(reader, lambda: cap)) is not None:
                    arrived.append(data)
            except MalformedMessage as e:
                lost.append((b"", reason_of(e)))
            finally:
                writer.close()

        def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            readers.append(asyncio.ensure_future(on_conn(reader, writer)))

        srv = await asyncio.start_server(track, HOST, 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            sends = [self._send(port, frames) for frames in by_sender.values()]
            await asyncio.wait_for(asyncio.gather(*sends), self.timeout)
            for _ in range(int(self.timeout * 1000)):  # every connection accepted before waiting on it
                if len(readers) >= len(by_sender):
                    break
                await asyncio.sleep(0.001)
            if readers:
                await asyncio.wait_for(asyncio.gather(*readers), self.timeout)
        finally:
            srv.close()
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        return arrived, lost

    @staticmethod
    async def _send(port: int, frames: Sequence[bytes]) -> None:
        _, writer = await asyncio.open_connection(HOST, port)
        try:
            for data in frames:
                write_frame(writer, data)
            await writer.drain()
        except ConnectionError:
            pass  # the receiver closed the connection: a refused (oversized) frame
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


#: the channels a mechanism's ``transport`` option names
TRANSPORTS: dict[str, type[Channel]] = {"inproc": Channel, "tcp": TcpChannel}


def open_channel(transport: str = "inproc", **kwargs: object) -> Channel:
    """A fresh channel of the named transport (``"inproc"`` or ``"tcp"``) with :class:`Channel`'s keywords."""
    if transport not in TRANSPORTS:
        raise MalformedMessage(f"transport: got {transport!r}; want one of {sorted(TRANSPORTS)}")
    return TRANSPORTS[transport](**kwargs)  # type: ignore[arg-type]
