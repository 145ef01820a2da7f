"""The client of the masking protocol (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al., CCS 2020).

A client is driven by bytes: :meth:`SecAggClient.start` returns its AdvertiseKeys message and
:meth:`SecAggClient.handle` consumes one server message and returns the reply. Its stage moves only
along :data:`CLIENT_TRANSITIONS`.

Error semantics: a message that fails to decode or authenticate (it may come from the network, not the
server) is rejected with :class:`secagg.MalformedMessage` / :class:`secagg.AuthenticationError` /
:class:`secagg.StageError` and leaves the client's state unchanged. A validly signed server message that
asks for something unsafe (too few peers, a survivor list that changed, a substituted key, invalid
consistency signatures) aborts the client for good (stage ``ABORTED``) with a typed ``ProtocolAbort``.

What a client enforces against a malicious server (see :mod:`secagg.graph` for the argument):

- it answers one unmasking request, revealing for each neighbour v a share of v's self-mask seed (v in
  the survivor list) or of v's mask key (v not in it), never both;
- the survivor list holds the client itself, only neighbours that shared keys with it, at least t of its
  share holders (SecAgg+) and at least ``min_survivors`` clients in all (the survivor floor: a server
  cannot have it help unmask the sum of a few inputs);
- active variant: the list it is asked to unmask is the one it signed, and at least t of its own share
  holders (itself and its neighbours) signed that same list -- signatures of other clients are not
  counted, since they hold none of the shares this client releases.

A server that hands out different lists (the split-survivor-list attack) therefore never holds t shares
of both secrets of an honest client while t > (m + c) / 2 (:class:`secagg.RoundConfig` refuses less).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import nacl.public
import nacl.utils
import numpy as np

from secagg import keys, masking, prg, shamir
from secagg import messages as m
from secagg.config import RoundConfig
from secagg.errors import AuthenticationError, MalformedMessage, ProtocolAbort, StageError, TooFewSurvivors
from secagg.messages import Kind


class Stage(Enum):
    INIT = "init"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    CONFIRMED = "confirmed"
    DONE = "done"
    ABORTED = "aborted"


#: (stage, incoming kind) -> next stage. SURVIVORS only in the active variant; UNMASK_REQUEST from
#: MASKED only in the passive one (checked in :meth:`SecAggClient.handle`).
CLIENT_TRANSITIONS: dict[tuple[Stage, Kind], Stage] = {
    (Stage.ADVERTISED, Kind.KEYS): Stage.SHARED,
    (Stage.SHARED, Kind.CIPHERTEXTS): Stage.MASKED,
    (Stage.MASKED, Kind.SURVIVORS): Stage.CONFIRMED,
    (Stage.MASKED, Kind.UNMASK_REQUEST): Stage.DONE,
    (Stage.CONFIRMED, Kind.UNMASK_REQUEST): Stage.DONE,
}


class SecAggClient:
    """One client holding ring elements ``x`` (shape ``(d,)``, values < 2^bits).

    Args:
        cid: the client's id in ``0 .. n-1``.
        x: its (already encoded) input.
        config: the round's public parameters.
        signer: the client's Ed25519 key registered in the PKI.
        pki: verify keys of all clients by id.
        server_key: the server's verify key.
    """

    def __init__(
        self,
        cid: int,
        x: np.ndarray,
        config: RoundConfig,
        signer: keys.Signer,
        pki: Mapping[int, bytes],
        server_key: bytes,
    ) -> None:
        if not 0 <= cid < config.n:
            raise ValueError(f"client id: got {cid}; want 0 <= id < n={config.n}")
        arr = np.asarray(x)
        if arr.shape != (config.d,) or arr.dtype.kind not in "ui":
            raise ValueError(f"input: got shape {arr.shape} dtype {arr.dtype}; want ({config.d},) integers")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << config.bits):
            raise ValueError(f"input: got values outside [0, 2^{config.bits}); want ring elements")
        self.cid = cid
        self.cfg = config
        self.stage = Stage.INIT
        self._x = arr
        self._signer = signer
        self._pki = dict(pki)
        self._server_key = server_key
        self._nbrs = frozenset(config.graph()[cid])
        self._c = keys.KeyPair.generate()
        self._c_priv = nacl.public.PrivateKey(self._c.sk)
        self._s = keys.KeyPair.generate()
        self._b = nacl.utils.random(32)
        self._peer_keys: dict[int, tuple[bytes, bytes]] = {}
        self._boxes: dict[int, nacl.public.Box] = {}
        self._held: dict[int, tuple[bytes, bytes]] = {}  # v -> (share of s_v^SK, share of b_v)
        self._u2: list[int] = []
        self._u3: list[int] | None = None

    def __repr__(self) -> str:
        return f"SecAggClient(id={self.cid}, stage={self.stage.value})"

    # ------------------------------------------------------------------------------------------------
    def _send(self, kind: Kind, body: bytes) -> bytes:
        env = m.Envelope(kind, self.cfg.session, self.cid, m.SERVER, body)
        return m.pack(env, self._signer)

    def start(self) -> bytes:
        """AdvertiseKeys: the two public keys, signed (INIT -> ADVERTISED)."""
        if self.stage is not Stage.INIT:
            raise StageError(f"start: got stage {self.stage.value}; want init")
        stmt = m.key_statement(self.cfg.session, self.cid, self._c.pk, self._s.pk)
        body = m.encode_advertise(self._c.pk, self._s.pk, self._signer.sign(stmt))
        self.stage = Stage.ADVERTISED
        return self._send(Kind.ADVERTISE, body)

    def handle(self, data: bytes) -> bytes:
        """Consume one server message and return the reply (see the module docstring for errors)."""
        if self.stage in (Stage.DONE, Stage.ABORTED, Stage.INIT):
            raise StageError(
                f"client {self.cid}: got a message in stage {self.stage.value}; want an active round"
            )
        env = m.unpack(
            data,
            session=self.cfg.session,
            receiver=self.cid,
            verify_key_of=lambda s: self._server_key if s == m.SERVER else None,
        )
        nxt = CLIENT_TRANSITIONS.get((self.stage, env.kind))
        wrong_variant = (env.kind is Kind.SURVIVORS and not self.cfg.active) or (
            env.kind is Kind.UNMASK_REQUEST and self.stage is Stage.MASKED and self.cfg.active
        )
        if nxt is None or wrong_variant:
            allowed = [k.name for (s, k) in CLIENT_TRANSITIONS if s is self.stage]
            raise StageError(
                f"client {self.cid}: got {env.kind.name} in stage {self.stage.value}; want {allowed}"
            )
        handler = {
            Kind.KEYS: self._on_keys,
            Kind.CIPHERTEXTS: self._on_ciphertexts,
            Kind.SURVIVORS: self._on_survivors,
            Kind.UNMASK_REQUEST: self._on_unmask_request,
        }[env.kind]
        try:
            reply = handler(env.body)
        except ProtocolAbort:
            self.stage = Stage.ABORTED
            raise
        self.stage = nxt
        return reply

    def _need(self, have: int, what: str) -> None:
        if have < self.cfg.t:
            raise TooFewSurvivors(f"client {self.cid}: {what}: got {have}; want at least t={self.cfg.t}")

    # ------------------------------------------------------------------------------------------------
    def _on_keys(self, body: bytes) -> bytes:
        entries = m.decode_keys(body, self.cfg.n)
        holders = self._nbrs | {self.cid}
        seen_pks: set[bytes] = set()
        for vid, c_pk, s_pk, sig in entries:
            if vid not in holders:
                raise MalformedMessage(f"KEYS: got id {vid}; want one of this client's neighbours")
            if len(c_pk) != keys.KEY_BYTES or len(s_pk) != keys.KEY_BYTES:
                raise MalformedMessage(f"KEYS: got a key of the wrong length for client {vid}; want 32 bytes")
            vk = self._pki.get(vid)
            if vk is None:
                raise AuthenticationError(f"KEYS: got id {vid} without a registered signing key")
            keys.verify(vk, m.key_statement(self.cfg.session, vid, c_pk, s_pk), sig)
            if c_pk in seen_pks or s_pk in seen_pks or c_pk == s_pk:
                raise MalformedMessage(f"KEYS: got a repeated public key (client {vid}); want distinct keys")
            seen_pks |= {c_pk, s_pk}
            self._peer_keys[vid] = (c_pk, s_pk)
            # low-order points are refused here (box) and in key agreement (MalformedMessage)
            if vid != self.cid:
                self._boxes[vid] = keys.box(self._c_priv, c_pk)
        if self._peer_keys.get(self.cid) != (self._c.pk, self._s.pk):
            raise AuthenticationError(f"KEYS: client {self.cid}'s own keys missing or substituted")
        self._need(len(entries), "clients with advertised keys in the neighbourhood")
        ids = sorted(self._peer_keys)
        xs = [v + 1 for v in ids]
        sk_shares, b_shares = shamir.share_many([self._s.sk, self._b], self.cfg.t, xs)
        cts = []
        for v, ys, yb in zip(ids, sk_shares, b_shares):
            sk_sh, b_sh = shamir.encode_share(ys), shamir.encode_share(yb)
            if v == self.cid:
                self._held[v] = (sk_sh, b_sh)
                continue
            plain = m.encode_share_plain(self.cid, v, sk_sh, b_sh)
            cts.append((v, keys.seal(self._boxes[v], plain)))
        commit_b = keys.commit(self._b, self.cfg.session + self.cid.to_bytes(4, "little"))
        return self._send(Kind.SHARES, m.encode_shares(commit_b, cts))

    def _on_ciphertexts(self, body: bytes) -> bytes:
        entries = m.decode_ciphertexts(body, self.cfg.n)
        held = {}
        for v, ct in entries:
            if v == self.cid or v not in self._peer_keys:
                raise MalformedMessage(f"CIPHERTEXTS: got sender {v}; want a neighbour with advertised keys")
            plain = keys.open_sealed(self._boxes[v], ct)
            frm, to, sk_sh, b_sh = m.decode_share_plain(plain)
            if (frm, to) != (v, self.cid):
                raise AuthenticationError(f"share ciphertext: got ({frm} -> {to}); want ({v} -> {self.cid})")
            shamir.decode_share(sk_sh)
            shamir.decode_share(b_sh)
            held[v] = (sk_sh, b_sh)
        self._held.update(held)
        self._u2 = sorted([*held, self.cid])
        self._need(len(self._u2), "clients that shared keys in the neighbourhood")
        sess, u, bits = self.cfg.session, self.cid, self.cfg.bits
        acc = masking.to_words(self._x, bits)
        sk, pk = self._s.sk, self._s.pk
        pairs = (
            (
                masking.pair_seed(sk, self._peer_keys[v][1], sess, u, v, pk, self._peer_keys[v][1]),
                masking.pair_domain(sess, u, v),
                masking.pair_sign(u, v),
            )
            for v in self._u2
            if v != u
        )
        prg.add_masks(acc, [(self._b, masking.self_domain(sess, u), 1), *pairs], bits=bits)
        masking.reduce(acc, bits)
        return self._send(Kind.MASKED, masking.words_to_bytes(acc))

    def mask_seeds(self) -> tuple[bytes, dict[int, bytes]]:
        """The seeds this client masked with: its self-mask seed b_u and ``{v: s_uv}`` for every
        neighbour v in its U2 (for its owner's identifiable-abort step, e.g.
        :mod:`protocols.normbound_blame`; never sent as such by the masking protocol)."""
        if not self._u2:
            raise StageError(f"mask_seeds: got stage {self.stage.value}; want a client that has masked")
        sess, u, sk, pk = self.cfg.session, self.cid, self._s.sk, self._s.pk
        pairs = {
            v: masking.pair_seed(sk, self._peer_keys[v][1], sess, u, v, pk, self._peer_keys[v][1])
            for v in self._u2
            if v != u
        }
        return self._b, pairs

    def _check_survivors(self, ids: list[int]) -> None:
        if self.cid not in ids:
            raise ProtocolAbort(f"survivor list: got one without client {self.cid}; want it included")
        u2 = set(self._u2)
        local = [v for v in ids if v in self._nbrs or v == self.cid]
        if any(v not in u2 for v in local):
            raise ProtocolAbort("survivor list: got a neighbour that never shared keys; want a subset of U2")
        self._need(len(ids) if self.cfg.complete else len(local), "survivors")
        floor = self.cfg.survivor_floor
        if len(ids) < floor:
            raise TooFewSurvivors(
                f"client {self.cid}: survivor list: got {len(ids)} clients; want at least "
                f"min_survivors={floor} (the released sum must cover that many inputs)"
            )

    def _on_survivors(self, body: bytes) -> bytes:
        ids = m.decode_ids(body, self.cfg.n)
        self._check_survivors(ids)
        self._u3 = ids
        sig = self._signer.sign(m.survivors_statement(self.cfg.session, ids))
        return self._send(Kind.CONSISTENCY, sig)

    def _on_unmask_request(self, body: bytes) -> bytes:
        ids, sigs = m.decode_unmask_request(body, self.cfg.n)
        if self.cfg.active:
            if ids != self._u3:
                raise ProtocolAbort("UNMASK_REQUEST: got a survivor list different from the signed one")
            stmt = m.survivors_statement(self.cfg.session, ids)
            holders = self._nbrs | {self.cid}
            counted = 0
            for v, sig in sigs:
                vk = self._pki.get(v)
                if v not in ids or vk is None:
                    raise AuthenticationError(f"consistency signature: got signer {v}; want a survivor")
                if v in holders:  # only this client's share holders vouch for the list it acts on
                    keys.verify(vk, stmt, sig)
                    counted += 1
            self._need(counted, "consistency signatures from this client's share holders")
        else:
            if sigs:
                raise MalformedMessage("UNMASK_REQUEST: got signatures in the passive variant; want none")
            self._check_survivors(ids)
        u3 = set(ids)
        out: list[m.UnmaskEntry] = []
        for v in self._u2:
            sk_sh, b_sh = self._held[v]
            out.append((v, m.What.SELF_SEED, b_sh) if v in u3 else (v, m.What.MASK_KEY, sk_sh))
        return self._send(Kind.UNMASK, m.encode_unmask(out))
