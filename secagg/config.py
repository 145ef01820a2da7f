"""Round configuration shared by the client and the server of the masking protocol."""

from __future__ import annotations

from dataclasses import dataclass

from secagg.errors import SecAggError
from secagg.graph import min_threshold, neighbours, tolerated_corrupt
from secagg.messages import SESSION_BYTES


@dataclass(frozen=True)
class RoundConfig:
    """Public parameters of one secure-aggregation round.

    Attributes:
        n: number of clients, ids ``0 .. n-1`` (Shamir evaluation point of client i is i + 1).
        t: Shamir threshold; with the complete graph also the minimum number of survivors. With SecAgg+ it
            is the threshold within each neighbourhood (a client and its k neighbours).
        d: vector length.
        bits: ring Z_{2^bits}, 1 <= bits <= 62.
        session: 16-byte round identifier (domain-separates masks, signatures and the graph).
        k: neighbour degree for SecAgg+ (even, < n - 1), or ``None`` for the complete graph. The graph is a
            function of ``session`` (see :mod:`secagg.graph` for who may fix it).
        active: run the consistency check (signatures over the survivor list) of the active variant; the
            server may then be malicious, and t must exceed (m + corrupt) / 2 for m share holders.
        corrupt: c, the number of clients among any client's share holders that may collude with the
            server; refused unless t withstands it (:func:`secagg.graph.min_threshold`).
        min_survivors: the survivor floor: the server and every honest client refuse to unmask a sum of
            fewer inputs. ``None``: ``max(t, ceil(n / 2))``. The released sum then covers at least
            ``min_survivors`` inputs, of which at most the colluding clients' are known to the server.
    """

    n: int
    t: int
    d: int
    bits: int = 32
    session: bytes = bytes(SESSION_BYTES)
    k: int | None = None
    active: bool = False
    corrupt: int = 0
    min_survivors: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 2:
            raise SecAggError(f"RoundConfig.n: got {self.n!r}; want an int >= 2")
        if not isinstance(self.d, int) or self.d < 1:
            raise SecAggError(f"RoundConfig.d: got {self.d!r}; want an int >= 1")
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 62:
            raise SecAggError(f"RoundConfig.bits: got {self.bits!r}; want an int in [1, 62]")
        if not isinstance(self.session, bytes) or len(self.session) != SESSION_BYTES:
            raise SecAggError(f"RoundConfig.session: got {self.session!r}; want {SESSION_BYTES} bytes")
        if self.k is not None and (not isinstance(self.k, int) or self.k < 2 or self.k % 2):
            raise SecAggError(f"RoundConfig.k: got {self.k!r}; want None or an even int >= 2")
        size = self.holders_size
        if not isinstance(self.t, int) or not 1 <= self.t <= size:
            raise SecAggError(
                f"RoundConfig.t: got {self.t!r}; want an int in [1, {size}] (neighbourhood size)"
            )
        c = self.corrupt
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < size:
            raise SecAggError(f"RoundConfig.corrupt: got {c!r}; want an int in [0, {size})")
        if tolerated_corrupt(size, self.t, self.active) < c:
            variant = "active (malicious server): t > (m + c) / 2" if self.active else "passive: t > c"
            raise SecAggError(
                f"RoundConfig.t: got t={self.t} for m={size} share holders and c={c} colluders; want "
                f"t >= {min_threshold(size, c, self.active)} ({variant})"
            )
        floor = self.min_survivors
        if floor is not None and (
            isinstance(floor, bool) or not isinstance(floor, int) or not self.t <= floor <= self.n
        ):
            raise SecAggError(
                f"RoundConfig.min_survivors: got {floor!r}; want None or an int in [t={self.t}, n={self.n}]"
            )

    @property
    def survivor_floor(self) -> int:
        """The fewest inputs a released sum may cover (``min_survivors``, default ``max(t, ceil(n/2))``)."""
        return self.min_survivors if self.min_survivors is not None else max(self.t, (self.n + 1) // 2)

    @property
    def complete(self) -> bool:
        return self.k is None or self.k >= self.n - 1

    @property
    def holders_size(self) -> int:
        """How many clients hold shares of one client's secrets: itself and its neighbours."""
        return self.n if self.complete else int(self.k) + 1  # type: ignore[arg-type]

    @property
    def word_bytes(self) -> int:
        return 4 if self.bits <= 32 else 8

    def graph(self) -> tuple[tuple[int, ...], ...]:
        return neighbours(self.n, None if self.complete else self.k, self.session)
