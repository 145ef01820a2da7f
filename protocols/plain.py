"""The plaintext baseline: clients send their updates in the clear through the channel and the server
applies a robust rule to what arrived."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import robust
from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.channel import Channel, Fault, FrameError, open_channel

#: One byte naming the update's dtype, then its raw little-endian values.
_DTYPES = {0: torch.float32, 1: torch.float64, 2: torch.float16, 3: torch.bfloat16}
_CODES = {v: k for k, v in _DTYPES.items()}


def encode_update(row: torch.Tensor) -> bytes:
    """One ``(d,)`` update as wire bytes: a dtype code and the raw values (bit-exact round trip)."""
    if row.dtype not in _CODES:
        raise FrameError(f"got an update of dtype {row.dtype}; want one of {sorted(map(str, _CODES))}")
    raw = row.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()
    return bytes([_CODES[row.dtype]]) + raw


def decode_updates(payloads: Sequence[bytes], d: int) -> torch.Tensor:
    """Inverse of :func:`encode_update` for ``k`` rows at once: a ``(k, d)`` tensor of their dtype.

    Raises :class:`FrameError` unless every payload holds ``d`` values of one known dtype.
    """
    codes = {p[:1] for p in payloads}
    if len(codes) > 1 or any(not c or c[0] not in _DTYPES for c in codes):
        raise FrameError(f"got dtype codes {sorted(codes)}; want one of {sorted(_DTYPES)} for every row")
    dtype = _DTYPES[next(iter(codes))[0]] if codes else torch.float32
    size = torch.empty(0, dtype=dtype).element_size()
    buf = np.empty((len(payloads), d * size), np.uint8)
    for j, data in enumerate(payloads):
        if len(data) - 1 != d * size:
            raise FrameError(f"got {len(data) - 1} update bytes; want d * {size} = {d * size}")
        buf[j] = np.frombuffer(data, np.uint8, offset=1)
    return torch.from_numpy(buf).view(dtype)


def decode_update(data: bytes, d: int) -> torch.Tensor:
    """One row of :func:`decode_updates`."""
    return decode_updates([data], d)[0]


def upload_bytes(d: int) -> int:
    """Bytes one client sends per round in the clear: ``4 d`` (float32)."""
    return 4 * d


def client_frame_bytes(i: int, d: int, signed: bool = False) -> int:
    """Bytes client ``i`` sends per round: its float32 update in one :class:`protocols.channel.Frame`::

        18 (header) + len("client[i]") + len("server") + len("update") + 1 (dtype code) + 4 d [+ 64]

    (the 64-byte Ed25519 signature where the channel signs); e.g. 60 bytes for ``i < 10``, ``d = 5``.

    >>> client_frame_bytes(0, 5), client_frame_bytes(12, 5, signed=True)
    (60, 125)
    """
    return 18 + len(f"client[{i}]") + len("server") + len("update") + 1 + upload_bytes(d) + 64 * signed


@PROTOCOLS.register("plain")
class PlainAggregation:
    """No confidentiality: clients send their updates; the server runs ``rule`` on the rows that arrived.

    Each client's update travels as a :class:`protocols.channel.Frame` (kind ``"update"``, phase
    ``"upload"``) through a :class:`protocols.channel.Channel`, so the meter holds the real bytes and
    the fault hooks apply; a client whose frame is dropped or refused is not accepted.

    Leakage: the server learns every arriving client's update (``"updates"``) and the aggregate.

    Bytes per round (:func:`upload_bytes`): each client sends ``4 d`` (its float32 update) and receives
    nothing; the server receives ``4 n d``. This is the baseline of every expansion ratio.

    Args:
        rule: an aggregator name known to ``robust.make`` or an aggregator object; default ``"mean"``.
        faults: the channel's fault hooks (:func:`protocols.channel.drop` ...), applied every round.
        sign: sign every frame (Ed25519, libsodium) and refuse a frame that fails verification.
        **rule_kwargs: passed to ``robust.make`` when ``rule`` is a name.
    """

    name = "plain"
    #: the channel each round opens: ``"inproc"`` or ``"tcp"`` (:class:`protocols.channel.TcpChannel`)
    transport: str = "inproc"

    def __init__(
        self, rule: Any = "mean", *, faults: Sequence[Fault] = (), sign: bool = False, **rule_kwargs: Any
    ) -> None:
        self.rule = robust.make(rule, **rule_kwargs) if isinstance(rule, str) else rule
        self.faults = list(faults)
        self.sign = sign
        self.round_id = 0
        self.channel: Channel | None = None

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> RoundResult:
        """Run ``rule(arrived, **extras)``; ``extras``: the rule's per-round keywords (``root``, ``ids``)."""
        x = torch.as_tensor(stack)
        n, d = int(x.shape[0]), int(x.shape[1])
        self.round_id += 1
        ch = self.channel = open_channel(
            self.transport, faults=self.faults, sign=self.sign, round_id=self.round_id
        )
        senders = {f"client[{i}]": i for i in range(n)}
        ups = [(name, "server", encode_update(x[i])) for name, i in senders.items()]
        arrived = ch.exchange("upload", "update", ups)
        rows: dict[int, bytes] = {}
        with ch.meter.time("server", "upload"):
            for fr in arrived.frames:
                i = senders.get(fr.sender)
                if i is None or fr.receiver != "server":
                    arrived.refused.append(
                        (
                            fr.encode(),
                            f"got {fr.sender} -> {fr.receiver}; want a cohort client -> server",
                        )
                    )
                    continue
                rows[i] = fr.payload
            ids = sorted(rows)
            got = decode_updates([rows[i] for i in ids], d).to(x.device) if ids else x.new_zeros((0, d))
        with ch.meter.time("server", "aggregate"):
            out = self.rule(got, **(extras or {}))
        selected = getattr(self.rule, "last_selection", None)
        acc = [ids[int(i)] for i in selected] if selected is not None else ids
        leak = Leakage({"server": {"updates": "all", "aggregate": "released"}})
        return RoundResult(aggregate=out, accepted=acc, meter=ch.meter, leakage=leak)
