"""Identifiable abort for ``secagg_normbound``: name the clients that broke the link check, exclude them,
and complete the round with the others.

Runs only after the link check of :mod:`protocols.secagg_normbound` failed (an honest round costs
nothing extra). Notation, in the masking round's client indices: client u masked the ring vector
``x_u = [q_u ; limbs(r_u)]`` (D = d + limbs entries) as

    y_u = x_u + p_u + sum_{v in N_u} sgn(u, v) m_uv          (mod 2^bits)

with ``p_u = PRG(b_u)``, ``m_uv = PRG(s_uv)`` and N_u its neighbours that shared keys
(:mod:`secagg.masking`). For an integer vector z let ``P(z) = <z[:d], G> + (sum_k z[d+k] 2^(w k)) h``
(the Pedersen key of the round, w the limb width), so ``P(x_u) = C_u``, u's commitment.

Extended pads. From the same seed s_uv a second stream ``v_uv`` of ``LAMBDA = 48`` bits (domain
``"blame"``) gives the integer pad ``M_uv = m_uv + 2^bits v_uv``. Over the integers
``x_u + p_u + sum_v sgn(u, v) m_uv = y_u + 2^bits k_u`` with carries ``|k_u| <= |N_u| + 1``.

1. ``blame_commit`` (every survivor u): ``e_u = k_u + sum_v sgn(u, v) v_uv`` (int64) and
   ``Q_u = P(sum_v sgn(u, v) M_uv)``. The server, which knows ``y_u`` and ``p_u`` (b_u was
   reconstructed and checked against u's hash commitment at unmasking), checks per client

       P(y_u - p_u + 2^bits e_u) == C_u + Q_u.                                  (per-client check)

   Honest u: the left side is ``P(x_u + sum_v sgn(u, v) M_uv)``, so it holds. If ``Q_u`` is the true
   pad commitment, the check forces ``y_u - pads + 2^bits e_u`` to open C_u; the difference of the
   first d entries is below ``2^(bits + 64) << l``, so by binding they equal q_u: u masked its
   committed vector. A client that masked another vector fails and is named.
2. ``blame_prove``: every kept u reveals ``s_uv`` for each named neighbour v (and nothing else). Over the
   kept set H the server computes the exact integer sum
   ``Z = sum_H (y_u - p_u + 2^bits e_u) - sum_{u in H, v not in H} sgn(u, v) M_uv`` (dropped v: seed from
   v's reconstructed mask key; named v: the revealed seed; pads inside H cancel) and checks
   ``P(Z) == sum_H C_u`` (final link). If every u in H told the truth about Q_u, this is the sum of the
   per-client checks, so it holds, and binding gives ``Z[:d] = sum_H q_u`` exactly: the aggregate.
3. ``blame_pairs`` (only when the final link fails: someone in H lied about ``Q_u`` to cover a wrong
   vector): every u in H sends ``P_uv = P(sgn(u, v) M_uv)`` per neighbour. The server names u if
   ``sum_v P_uv != Q_u`` or a ``P_uv`` differs from the pad of a seed it knows (dropped or named v);
   within H a pair with ``P_uv + P_vu != 0`` is a dispute, and both reveal ``s_uv`` (``blame_prove``):
   on the same seed the server recomputes the pad and names whoever's commitment differs. Then step 2
   again; at most ``max_passes`` passes, each naming at least one client.

An honest client is never named: every naming is an equation over that client's own messages and
values that are fixed for it (y_u, the verified b_u, C_u, seeds it revealed itself or that the server
reconstructed against the partner's public key). Two parties that reveal *different* seeds for one pair
cannot be told apart without a proof of the Diffie-Hellman value: the round then aborts with
:class:`BlameUnresolved`, which names the disputed pair and blames no one.

What the server learns in a blame round (recorded in the protocol's leakage):
- the unmasked sum over all survivors including the cheaters' masked vectors (from the failed check),
  hence with the final aggregate the sum of the named clients' masked vectors (their own data);
- ``e_u`` for every survivor: the carries k_u padded by lambda-bit pads; over any honest pair the pads
  are independent and uniform, so the e's reveal (up to statistical distance ``<= 2 (n + 1) 2^-48`` per
  entry and pair) only ``sum_u k_u``, which already follows from the released sum;
- ``Q_u`` (a commitment to pseudorandom pads: nothing beyond y_u);
- for every named client c and each kept neighbour u, the seed ``s_uc``, hence u's pad with c. u's
  input stays hidden by its pads with the other kept clients: what the server can compute is the
  sum over H, the protocol's output. A disputed pair's seed is revealed too (one party is a cheater,
  who knows it already).
Every survivor of the masking round must answer the blame steps: one that is gone cannot be checked,
and removing its contribution would reveal its input, so the round then aborts with the
:class:`LinkCheckFailed` (``SecAggNormBound`` does so when a simulated dropout left after masking).
The kept set must still hold ``min_survivors`` clients (else :class:`secagg.TooFewSurvivors`, before
any seed is revealed). Assumption: an honest-but-curious server, as for the protocol's
confidentiality. A malicious server that names an honest u learns u's input (its pads are revealed
and b_u is known), exactly as by claiming u dropped after masking; clients cannot check a naming.

Cost (bytes / MSMs of dimension D): ``blame_commit`` 8D + 32 bytes and one MSM per survivor, one MSM
per survivor at the server; ``blame_prove`` 32 bytes per revealed seed and one MSM (final link);
``blame_pairs`` 32 bytes and one MSM per neighbour and survivor, only when a ``Q_u`` was false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from protocols.base import Meter
from secagg import masking, prg
from secagg.driver import RoundOutput
from secagg.errors import ProtocolAbort, SecAggError, TooFewSurvivors
from secagg.normbound import CommitmentKey, LinkCheckFailed, combine
from secagg.normbound.errors import MalformedProof
from secagg.normbound.group import IDENTITY, L, add, decode_point

LAMBDA = 48
"""Bits of the extension pads v_uv that hide the carries."""
SEED_BYTES = 32


class BlameUnresolved(LinkCheckFailed):
    """The link check failed and a disputed pair could not be resolved (its two members revealed
    different seeds); it names the pairs, blames no one."""

    def __init__(self, message: str, pairs: Sequence[tuple[int, int]]) -> None:
        super().__init__(message)
        self.pairs = list(pairs)


def blame_domain(session: bytes, u: int, v: int) -> bytes:
    lo, hi = min(u, v), max(u, v)
    return prg.domain(b"blame", session, lo, hi)


@dataclass(frozen=True)
class RingLayout:
    """How a masked ring vector maps to the commitment: ``P(z) = <z[:d], G> + (sum_k z[d+k] 2^(wk)) h``."""

    key: CommitmentKey
    d: int
    bits: int
    w: int
    session: bytes

    def commit(self, z: np.ndarray) -> bytes:
        """P(z) for an integer (object) vector z of length D."""
        r = sum(int(z[self.d + k]) << (self.w * k) for k in range(len(z) - self.d)) % L
        return self.key.commit(z[: self.d], r)

    def self_pad(self, seed: bytes, u: int, size: int) -> np.ndarray:
        dom = masking.self_domain(self.session, u)
        return prg.expand(seed, size, bits=self.bits, domain=dom).astype(object)

    def pair_pad(self, seed: bytes, u: int, v: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``sgn(u, v) m_uv`` and ``sgn(u, v) v_uv`` (object ints): u's share of the pair's pads."""
        s = masking.pair_sign(u, v)
        lo = prg.expand(seed, size, bits=self.bits, domain=masking.pair_domain(self.session, u, v))
        hi = prg.expand(seed, size, bits=LAMBDA, domain=blame_domain(self.session, u, v))
        return s * lo.astype(object), s * hi.astype(object)

    def extended(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return low + high * (1 << self.bits)


class BlameClient:
    """Client side of the blame steps (index ``u`` in the masking round).

    Args:
        layout: the round's layout.
        u: the client's index in the masking round.
        x: the integer vector it masked, ``[q ; limbs(r)]``.
        self_seed, pair_seeds: its seeds (:meth:`secagg.client.SecAggClient.mask_seeds`).
        lie: fault injection: a point added to ``Q_u`` and to its first pair commitment (a client that
            commits to a wrong mask).
    """

    def __init__(
        self,
        layout: RingLayout,
        u: int,
        x: np.ndarray,
        self_seed: bytes,
        pair_seeds: Mapping[int, bytes],
        lie: bytes | None = None,
    ) -> None:
        self.lay, self.u, self.x = layout, u, np.asarray(x).astype(object)
        self.self_seed, self.pair_seeds, self.lie = self_seed, dict(pair_seeds), lie
        self._pads = {v: layout.pair_pad(s, u, v, len(self.x)) for v, s in self.pair_seeds.items()}

    def commit_message(self) -> bytes:
        """``e_u`` (int64 little-endian) || ``Q_u``."""
        D, two = len(self.x), 1 << self.lay.bits
        low = np.zeros(D, dtype=object)
        high = np.zeros(D, dtype=object)
        for lo, hi in self._pads.values():
            low, high = low + lo, high + hi
        tot = self.x + self.lay.self_pad(self.self_seed, self.u, D) + low
        k = (tot - tot % two) // two
        e = np.array((k + high).tolist(), dtype=np.int64)
        Q = self.lay.commit(self.lay.extended(low, high))
        if self.lie is not None:
            Q = add(Q, self.lie)
        return e.astype("<i8").tobytes() + Q

    def pair_message(self) -> bytes:
        """``P_uv`` for every neighbour v, in increasing v."""
        out = []
        for j, v in enumerate(sorted(self._pads)):
            P = self.lay.commit(self.lay.extended(*self._pads[v]))
            out.append(add(P, self.lie) if self.lie is not None and j == 0 else P)
        return b"".join(out)

    def reveal(self, partners: Sequence[int]) -> bytes:
        """The seeds ``s_uv`` for the requested neighbours (refuses anyone else)."""
        bad = [v for v in partners if v not in self.pair_seeds]
        if bad:
            raise SecAggError(f"reveal: got partners {bad}; want neighbours of client {self.u}")
        return b"".join(self.pair_seeds[v] for v in partners)


@dataclass
class ServerView:
    """What the server holds after the failed link check (masking-round indices)."""

    layout: RingLayout
    commitments: Mapping[int, bytes]
    survivors: list[int]
    partners: Mapping[int, list[int]]
    masked: Mapping[int, np.ndarray]
    self_seeds: Mapping[int, bytes]
    dropped_seed: Callable[[int, int], bytes]
    floor: int
    name: Callable[[int], str]


@dataclass
class BlameOutcome:
    """Kept clients, named ones (with the reason), the exact sum of the kept ``q``, what was revealed."""

    kept: list[int]
    blamed: dict[int, str]
    total: np.ndarray
    revealed: list[tuple[int, int]] = field(default_factory=list)
    disputes: list[tuple[int, int]] = field(default_factory=list)


class _Run:
    def __init__(self, view: ServerView, clients: Mapping[int, BlameClient], meter: Meter) -> None:
        self.v, self.clients, self.meter = view, clients, meter
        self.D = len(next(iter(view.masked.values())))
        self.blamed: dict[int, str] = {}
        self.seeds: dict[tuple[int, int], bytes] = {}  # (u, v) -> s_uv revealed by u
        self.e: dict[int, np.ndarray] = {}
        self.Q: dict[int, bytes] = {}
        self.P: dict[int, dict[int, bytes]] | None = None
        self.disputes: list[tuple[int, int]] = []

    def _ask(self, u: int, phase: str, call: Callable[[], bytes]) -> bytes:
        with self.meter.time(self.v.name(u), phase):
            msg = call()
        return self.meter.send(self.v.name(u), "server", phase, msg)

    def commit_phase(self) -> None:
        lay, two = self.v.layout, 1 << self.v.layout.bits
        for u in self.v.survivors:
            msg = self._ask(u, "blame_commit", self.clients[u].commit_message)
            with self.meter.time("server", "blame_commit"):
                try:
                    if len(msg) != 8 * self.D + 32:
                        raise MalformedProof(f"blame_commit: got {len(msg)} bytes; want {8 * self.D + 32}")
                    e = np.frombuffer(msg[: 8 * self.D], dtype="<i8").astype(object)
                    Q = decode_point(msg[8 * self.D :], "Q_u")
                except ProtocolAbort as err:
                    self.blamed[u] = f"{type(err).__name__}: {err}"
                    continue
                self.e[u], self.Q[u] = e, Q
                p = lay.self_pad(self.v.self_seeds[u], u, self.D)
                lhs = lay.commit(self.v.masked[u].astype(object) - p + e * two)
                if lhs != add(self.v.commitments[u], Q):
                    self.blamed[u] = (
                        "per-client check: got P(y_u - p_u + 2^bits e_u) != C_u + Q_u; want equal (masked "
                        "a vector other than the committed one, or a false pad commitment)"
                    )

    def kept(self) -> list[int]:
        return [u for u in self.v.survivors if u not in self.blamed]

    def reveal_named(self, kept: list[int]) -> None:
        for u in kept:
            want = [w for w in self.v.partners[u] if w in self.blamed and (u, w) not in self.seeds]
            if want:
                self._take_seeds(u, want)

    def _take_seeds(self, u: int, want: list[int]) -> None:
        msg = self._ask(u, "blame_prove", lambda: self.clients[u].reveal(want))
        if len(msg) != SEED_BYTES * len(want):
            self.blamed[u] = f"blame_prove: got {len(msg)} bytes; want {SEED_BYTES * len(want)}"
            return
        for j, w in enumerate(want):
            self.seeds[(u, w)] = msg[SEED_BYTES * j : SEED_BYTES * (j + 1)]

    def _outside_seed(self, u: int, w: int) -> bytes:
        return self.seeds[(u, w)] if w in self.blamed else self.v.dropped_seed(u, w)

    def exact_sum(self, kept: list[int]) -> np.ndarray:
        lay, two = self.v.layout, 1 << self.v.layout.bits
        z = np.zeros(self.D, dtype=object)
        inside = set(kept)
        for u in kept:
            z = z + self.v.masked[u].astype(object) - lay.self_pad(self.v.self_seeds[u], u, self.D)
            z = z + self.e[u] * two
            for w in self.v.partners[u]:
                if w not in inside:
                    z = z - lay.extended(*lay.pair_pad(self._outside_seed(u, w), u, w, self.D))
        return z

    def pair_phase(self, kept: list[int]) -> bool:
        """Collect the pair commitments (once); name the clients they convict; True if any was named."""
        lay = self.v.layout
        if self.P is None:
            self.P = {}
            for u in kept:
                ids = self.v.partners[u]
                msg = self._ask(u, "blame_pairs", self.clients[u].pair_message)
                with self.meter.time("server", "blame_pairs"):
                    try:
                        if len(msg) != 32 * len(ids):
                            raise MalformedProof(f"blame_pairs: got {len(msg)} bytes; want {32 * len(ids)}")
                        self.P[u] = {w: decode_point(msg[32 * j : 32 * j + 32]) for j, w in enumerate(ids)}
                    except ProtocolAbort as err:
                        self.blamed[u] = f"{type(err).__name__}: {err}"
        before = len(self.blamed)
        kept = self.kept()
        for u in kept:
            with self.meter.time("server", "blame_pairs"):
                self._check_pairs(u, set(kept))
        for u, w in self.disputes:
            if u in self.blamed or w in self.blamed or (u, w) in self.seeds:
                continue
            self._take_seeds(u, [w])
            self._take_seeds(w, [u])
            s_uw, s_wu = self.seeds.get((u, w)), self.seeds.get((w, u))
            if s_uw is None or s_uw != s_wu:
                continue
            with self.meter.time("server", "blame_prove"):
                for a, b in ((u, w), (w, u)):
                    if self.P[a][b] != lay.commit(lay.extended(*lay.pair_pad(s_uw, a, b, self.D))):
                        self.blamed[a] = (
                            f"dispute with client {b}: got a pad commitment that the pair seed refutes"
                        )
        return len(self.blamed) > before

    def _check_pairs(self, u: int, kept: set[int]) -> None:
        assert self.P is not None
        lay, P = self.v.layout, self.P[u]
        if combine(list(P.values())) != self.Q[u]:
            self.blamed[u] = "blame_pairs: got pair commitments that do not sum to Q_u; want sum_v P_uv = Q_u"
            return
        for w, Puw in P.items():
            if w in kept:
                if u < w and add(Puw, self.P.get(w, {}).get(u, IDENTITY)) != IDENTITY:
                    self.disputes.append((u, w)) if (u, w) not in self.disputes else None
                continue
            if Puw != lay.commit(lay.extended(*lay.pair_pad(self._outside_seed(u, w), u, w, self.D))):
                self.blamed[u] = f"blame_pairs: got a pad commitment with client {w} that its seed refutes"
                return


def identify_and_exclude(
    view: ServerView, clients: Mapping[int, BlameClient], meter: Meter, max_passes: int = 4
) -> BlameOutcome:
    """Run the blame steps of the module docstring; return the kept clients and their exact sum.

    Raises:
        TooFewSurvivors: fewer than ``view.floor`` clients would be kept.
        BlameUnresolved: the final link still fails and the disputes cannot be resolved.
    """
    run = _Run(view, clients, meter)
    run.commit_phase()
    for _ in range(max_passes):
        kept = run.kept()
        if len(kept) < view.floor:
            raise TooFewSurvivors(
                f"blame: got {len(kept)} clients left after naming {sorted(run.blamed)}; "
                f"want at least min_survivors={view.floor}"
            )
        run.reveal_named(kept)
        if run.kept() != kept:  # a malformed reveal named its sender: reveal again without it
            continue
        with meter.time("server", "blame_prove"):
            z = run.exact_sum(kept)
            ok = view.layout.commit(z) == combine([view.commitments[u] for u in kept])
        if ok:
            total = np.array(z[: view.layout.d].tolist(), dtype=np.int64)
            revealed = sorted(k for k in run.seeds if k[0] not in run.blamed)
            return BlameOutcome(kept, dict(run.blamed), total, revealed, list(run.disputes))
        if not run.pair_phase(kept):
            break
    raise BlameUnresolved(
        f"blame: got a final link check that fails over {run.kept()} with disputed pairs {run.disputes} "
        f"(named so far: {sorted(run.blamed)}); want a resolvable dispute",
        run.disputes,
    )


def blame_round(
    out: RoundOutput,
    layout: RingLayout,
    commitments: Mapping[int, bytes],
    inputs: Mapping[int, np.ndarray],
    meter: Meter,
    name: Callable[[int], str],
    lies: Mapping[int, bytes] | None = None,
) -> BlameOutcome:
    """:func:`identify_and_exclude` after a masking round ``out`` (indices of that round): the server's
    view from its party object, each survivor's :class:`BlameClient` from its seeds and the integer
    vector ``inputs[u]`` it masked; ``lies``: fault injection (:class:`BlameClient`)."""
    server = out.server
    if server is None:
        raise SecAggError("blame_round: got a masking round without its server; want RoundOutput.server")
    graph, u2 = server.cfg.graph(), set(server.sets["U2"])
    view = ServerView(
        layout=layout,
        commitments=commitments,
        survivors=list(out.survivors),
        partners={u: sorted(w for w in graph[u] if w in u2) for u in out.survivors},
        masked={u: masking.bytes_to_words(server.masked[u], layout.bits) for u in out.survivors},
        self_seeds={u: server.secrets[u] for u in out.survivors},
        dropped_seed=server.dropped_pair_seed,
        floor=server.cfg.survivor_floor,
        name=name,
    )
    clients = {
        u: BlameClient(layout, u, inputs[u], *out.clients[u].mask_seeds(), lie=(lies or {}).get(u))
        for u in out.survivors
    }
    return identify_and_exclude(view, clients, meter)
