"""The server of the masking protocol (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al., CCS 2020).

The server collects one message per client per stage with :meth:`SecAggServer.receive` and closes the
stage with :meth:`SecAggServer.advance`, which returns the next messages by client id. Its stage moves
only along :data:`SERVER_TRANSITIONS`.

Every incoming message is validated completely before it changes any state: envelope, signature, stage,
sender eligibility (it must have survived the previous stage), no duplicates, and the body against the
server's own view (e.g. an Unmasking reply must hold exactly one share per neighbour in U2, of the
self-mask seed for survivors and of the mask key for dropped clients). A rejected message raises a typed
``ProtocolAbort`` subclass and is dropped; its sender counts as a dropout if nothing valid follows.

Reconstructed secrets are verified before use: a mask key against its advertised public key, a self-mask
seed against the client's hash commitment. A mismatch aborts with
:class:`secagg.AuthenticationError`; too few survivors abort with :class:`secagg.TooFewSurvivors`.
The output is never a wrong sum.

Leakage (honest-but-curious server): the sum of the survivors' inputs, the survivor set and the set of
clients that dropped at each stage. The server refuses to unmask fewer than ``min_survivors`` inputs
(:attr:`secagg.RoundConfig.survivor_floor`), and so does every honest client, so a malicious server that
pretends most clients dropped cannot obtain the sum of a few inputs either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum

import numpy as np

from secagg import keys, masking, prg, shamir
from secagg import messages as m
from secagg.config import RoundConfig
from secagg.errors import AuthenticationError, MalformedMessage, StageError, TooFewSurvivors
from secagg.messages import Kind


class ServerStage(Enum):
    COLLECT_KEYS = "advertise_keys"
    COLLECT_SHARES = "share_keys"
    COLLECT_MASKED = "masked_input"
    COLLECT_CONSISTENCY = "consistency_check"
    COLLECT_UNMASK = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


#: stage -> (the message kind it collects, the stage after it). COLLECT_MASKED goes to COLLECT_UNMASK
#: directly in the passive variant.
SERVER_TRANSITIONS: dict[ServerStage, tuple[Kind, ServerStage]] = {
    ServerStage.COLLECT_KEYS: (Kind.ADVERTISE, ServerStage.COLLECT_SHARES),
    ServerStage.COLLECT_SHARES: (Kind.SHARES, ServerStage.COLLECT_MASKED),
    ServerStage.COLLECT_MASKED: (Kind.MASKED, ServerStage.COLLECT_CONSISTENCY),
    ServerStage.COLLECT_CONSISTENCY: (Kind.CONSISTENCY, ServerStage.COLLECT_UNMASK),
    ServerStage.COLLECT_UNMASK: (Kind.UNMASK, ServerStage.DONE),
}


class SecAggServer:
    """The aggregating server.

    Args:
        config: the round's public parameters.
        signer: the server's Ed25519 key (its verify key is in every client's PKI).
        pki: verify keys of the clients by id.
    """

    def __init__(self, config: RoundConfig, signer: keys.Signer, pki: Mapping[int, bytes]) -> None:
        self.cfg = config
        self.stage = ServerStage.COLLECT_KEYS
        self._signer = signer
        self._pki = dict(pki)
        self._graph = config.graph()
        self._eligible: set[int] = set(range(config.n))
        self._got: dict[int, bytes] = {}  # sender -> validated body of the current stage
        self._keys: dict[int, tuple[bytes, bytes, bytes]] = {}  # id -> (c_pk, s_pk, key_sig)
        self._cts: dict[int, dict[int, bytes]] = {}  # sender -> recipient -> ciphertext
        self._commit: dict[int, bytes] = {}
        self._acc = np.zeros(config.d, dtype=prg.word_dtype(config.bits))
        self._sigs: dict[int, bytes] = {}
        self.sets: dict[str, list[int]] = {}  # U1 .. U5 as the server saw them
        self.masked: dict[int, bytes] = {}  # u in U3 -> its masked input (little-endian words)
        self.secrets: dict[int, bytes] = {}  # reconstructed: b_v (v in U3) or s_v^SK (v dropped)
        self.result: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"SecAggServer(stage={self.stage.value}, n={self.cfg.n})"

    @property
    def survivors(self) -> list[int]:
        """U3: the clients whose masked inputs are in the sum."""
        return self.sets.get("U3", [])

    @property
    def dropped(self) -> list[int]:
        u3 = set(self.survivors)
        return [i for i in range(self.cfg.n) if i not in u3]

    def _holders(self, v: int) -> set[int]:
        return {*self._graph[v], v}

    def _send(self, to: int, kind: Kind, body: bytes) -> bytes:
        return m.pack(m.Envelope(kind, self.cfg.session, m.SERVER, to, body), self._signer)

    # ------------------------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Validate and store one client message of the current stage (raises and stores nothing if bad)."""
        if self.stage not in SERVER_TRANSITIONS:
            raise StageError(f"server: got a message in stage {self.stage.value}; want an open stage")
        env = m.unpack(
            data,
            session=self.cfg.session,
            receiver=m.SERVER,
            verify_key_of=lambda s: self._pki.get(s) if 0 <= s < self.cfg.n else None,
        )
        want, _ = SERVER_TRANSITIONS[self.stage]
        if env.kind is not want:
            raise StageError(f"server: got {env.kind.name} in stage {self.stage.value}; want {want.name}")
        if env.sender not in self._eligible:
            raise StageError(
                f"server: got {env.kind.name} from client {env.sender}, not in the previous stage"
            )
        if env.sender in self._got:
            raise StageError(f"server: got a second {env.kind.name} from client {env.sender}; want one")
        check = {
            Kind.ADVERTISE: self._check_advertise,
            Kind.SHARES: self._check_shares,
            Kind.MASKED: self._check_masked,
            Kind.CONSISTENCY: self._check_consistency,
            Kind.UNMASK: self._check_unmask,
        }[env.kind]
        check(env.sender, env.body)
        self._got[env.sender] = env.body

    def _check_advertise(self, u: int, body: bytes) -> None:
        c_pk, s_pk, sig = m.decode_advertise(body)
        keys.check_public_key(c_pk, f"client {u} encryption key")
        keys.check_public_key(s_pk, f"client {u} mask key")
        keys.verify(self._pki[u], m.key_statement(self.cfg.session, u, c_pk, s_pk), sig)
        used = {pk for v, b in self._got.items() for pk in (b[:32], b[32:64])}
        if c_pk == s_pk or c_pk in used or s_pk in used:
            raise MalformedMessage(
                f"ADVERTISE from client {u}: got a public key already in use; want fresh keys"
            )

    def _check_shares(self, u: int, body: bytes) -> None:
        _, cts = m.decode_shares(body, self.cfg.n)
        want = sorted(v for v in self._graph[u] if v in self._keys)
        if [v for v, _ in cts] != want:
            raise MalformedMessage(
                f"SHARES from client {u}: got recipients {[v for v, _ in cts][:10]}; want {want[:10]}"
            )

    def _check_masked(self, u: int, body: bytes) -> None:
        if len(body) != self.cfg.d * self.cfg.word_bytes:
            raise MalformedMessage(
                f"MASKED from client {u}: got {len(body)} bytes; want d * {self.cfg.word_bytes} = "
                f"{self.cfg.d * self.cfg.word_bytes}"
            )

    def _check_consistency(self, u: int, body: bytes) -> None:
        if len(body) != keys.SIG_BYTES:
            raise MalformedMessage(f"CONSISTENCY from client {u}: got {len(body)} bytes; want 64")
        keys.verify(self._pki[u], m.survivors_statement(self.cfg.session, self.sets["U3"]), body)

    def _check_unmask(self, u: int, body: bytes) -> None:
        ids, what, _ = m.decode_unmask_arrays(body, self.cfg.n)
        u2, u3 = set(self.sets["U2"]), set(self.sets["U3"])
        want = sorted(v for v in self._holders(u) if v in u2)
        if ids.tolist() != want:
            raise MalformedMessage(f"UNMASK from client {u}: got ids {ids[:10].tolist()}; want {want[:10]}")
        expect = np.array(
            [int(m.What.SELF_SEED if v in u3 else m.What.MASK_KEY) for v in want], dtype=np.uint8
        )
        bad = np.flatnonzero(what != expect)
        if bad.size:
            v = want[int(bad[0])]
            raise MalformedMessage(
                f"UNMASK from client {u}: got {m.What(int(what[bad[0]])).name} for client {v}; "
                f"want {m.What(int(expect[bad[0]])).name}"
            )

    # ------------------------------------------------------------------------------------------------
    def advance(self) -> dict[int, bytes]:
        """Close the current stage; return the next messages by client id (empty when done)."""
        if self.stage not in SERVER_TRANSITIONS:
            raise StageError(f"server: advance in stage {self.stage.value}; want an open stage")
        stage = self.stage
        got = self._got
        self._got = {}
        out = {
            ServerStage.COLLECT_KEYS: self._after_keys,
            ServerStage.COLLECT_SHARES: self._after_shares,
            ServerStage.COLLECT_MASKED: self._after_masked,
            ServerStage.COLLECT_CONSISTENCY: self._after_consistency,
            ServerStage.COLLECT_UNMASK: self._after_unmask,
        }[stage](got)
        if self.stage is stage:  # the step did not pick a different next stage
            self.stage = SERVER_TRANSITIONS[stage][1]
        self._eligible = set(out) if out else set()
        return out

    def _closed(self, name: str, got: dict[int, bytes]) -> list[int]:
        ids = sorted(got)
        self.sets[name] = ids
        # the sum covers U3, which U1 and U2 bound from above: refuse early, not after the masking
        need, what = self.cfg.t, "t"
        if name in ("U1", "U2", "U3") and self.cfg.survivor_floor > need:
            need, what = self.cfg.survivor_floor, "min_survivors"
        if len(ids) < need:
            self.stage = ServerStage.ABORTED
            raise TooFewSurvivors(f"{name}: got {len(ids)} surviving clients; want at least {what}={need}")
        return ids

    def _after_keys(self, got: dict[int, bytes]) -> dict[int, bytes]:
        u1 = self._closed("U1", got)
        self._keys = {u: m.decode_advertise(got[u]) for u in u1}
        out = {}
        for u in u1:
            entries = [(v, *self._keys[v]) for v in sorted(self._holders(u)) if v in self._keys]
            out[u] = self._send(u, Kind.KEYS, m.encode_keys(entries))
        return out

    def _after_shares(self, got: dict[int, bytes]) -> dict[int, bytes]:
        u2 = self._closed("U2", got)
        for u in u2:
            commit_b, cts = m.decode_shares(got[u], self.cfg.n)
            self._commit[u] = commit_b
            self._cts[u] = dict(cts)
        out = {}
        for u in u2:
            fwd = [(v, self._cts[v][u]) for v in sorted(self._graph[u]) if v in self._cts]
            out[u] = self._send(u, Kind.CIPHERTEXTS, m.encode_ciphertexts(fwd))
        return out

    def _after_masked(self, got: dict[int, bytes]) -> dict[int, bytes]:
        u3 = self._closed("U3", got)
        dt = self._acc.dtype.newbyteorder("<")
        for u in u3:
            np.add(self._acc, np.frombuffer(got[u], dtype=dt), out=self._acc)
        self.masked = {u: got[u] for u in u3}
        if self.cfg.active:
            body = m.encode_ids(u3)
            return {u: self._send(u, Kind.SURVIVORS, body) for u in u3}
        self.stage = ServerStage.COLLECT_UNMASK
        body = m.encode_unmask_request(u3, [])
        return {u: self._send(u, Kind.UNMASK_REQUEST, body) for u in u3}

    def _after_consistency(self, got: dict[int, bytes]) -> dict[int, bytes]:
        u4 = self._closed("U4", got)
        u3 = self.sets["U3"]
        # each client counts only its own share holders' signatures: send it those
        return {
            u: self._send(
                u,
                Kind.UNMASK_REQUEST,
                m.encode_unmask_request(u3, [(v, got[v]) for v in u4 if v in self._holders(u)]),
            )
            for u in u4
        }

    def _after_unmask(self, got: dict[int, bytes]) -> dict[int, bytes]:
        u5 = self._closed("U5", got)
        u2, u3 = self.sets["U2"], set(self.sets["U3"])
        # secrets needed: every survivor's self-mask seed, and the mask key of each dropped client
        # that has a surviving neighbour (the others' pairwise masks never entered the sum)
        needed = {v for v in u2 if v in u3 or any(u in u3 for u in self._graph[v])}
        shares: dict[int, list[tuple[int, int]]] = {v: [] for v in sorted(needed)}
        t = self.cfg.t
        for w in u5:  # t shares per secret suffice; the rest stay unparsed
            ids, _, rows = m.decode_unmask_arrays(got[w], self.cfg.n)
            for j, v in enumerate(ids.tolist()):
                lst = shares.get(v)
                if lst is not None and len(lst) < t:
                    lst.append((w + 1, int.from_bytes(rows[j].tobytes(), "little")))
        secrets = self.secrets = self._reconstruct_all(shares)
        sess, bits, acc = self.cfg.session, self.cfg.bits, self._acc

        def masks() -> Iterator[tuple[bytes, bytes, int]]:
            for v in sorted(needed):
                if v in u3:
                    yield secrets[v], masking.self_domain(sess, v), -1
                    continue
                s_pk_v = self._keys[v][1]
                for u in self._graph[v]:
                    if u in u3:  # u added pair_sign(u, v) * PRG(s_uv); remove it.
                        s_pk_u = self._keys[u][1]
                        seed = masking.pair_seed(secrets[v], s_pk_u, sess, v, u, s_pk_v, s_pk_u)
                        yield seed, masking.pair_domain(sess, u, v), -masking.pair_sign(u, v)

        prg.add_masks(acc, masks(), bits=bits)
        self.result = masking.reduce(acc, bits).astype(np.uint64)
        return {}

    def dropped_pair_seed(self, u: int, v: int) -> bytes:
        """s_uv for a survivor u and a dropped neighbour v, from v's reconstructed mask key (after
        unmasking; the seed the server already used to remove u's pairwise mask with v)."""
        if v not in self.secrets or v in self.sets.get("U3", []) or u not in self._graph[v]:
            raise StageError(f"dropped_pair_seed: got ({u}, {v}); want a survivor and a dropped neighbour")
        s_pk_u, s_pk_v = self._keys[u][1], self._keys[v][1]
        return masking.pair_seed(self.secrets[v], s_pk_u, self.cfg.session, v, u, s_pk_v, s_pk_u)

    def _reconstruct_all(self, shares: dict[int, list[tuple[int, int]]]) -> dict[int, bytes]:
        """Reconstruct every needed secret from t shares and verify it against its commitment."""
        t, u3 = self.cfg.t, set(self.sets["U3"])
        lagrange: dict[tuple[int, ...], list[int]] = {}
        out = {}
        for v, sh in shares.items():
            what = "self-mask seed" if v in u3 else "mask key"
            if len(sh) < t:
                self.stage = ServerStage.ABORTED
                raise TooFewSurvivors(
                    f"unmasking client {v}'s {what}: got {len(sh)} shares from survivors; want at least t={t}"
                )
            base = sh[:t]
            xs = tuple(x for x, _ in base)
            lam = lagrange.get(xs)
            if lam is None:
                lam = lagrange[xs] = shamir.lagrange_at_zero(xs)
            val = sum(li * y for li, (_, y) in zip(lam, base)) % shamir.P
            ok = val < 1 << 256
            secret = val.to_bytes(32, "little") if ok else b""
            if ok and v in u3:
                ok = keys.commit(secret, self.cfg.session + v.to_bytes(4, "little")) == self._commit[v]
            elif ok:
                ok = keys.public_from_secret(secret) == self._keys[v][1]
            if not ok:
                self.stage = ServerStage.ABORTED
                raise AuthenticationError(
                    f"unmasking client {v}'s {what}: got shares that reconstruct a "
                    "value failing its commitment; want consistent shares"
                )
            out[v] = secret
        return out
