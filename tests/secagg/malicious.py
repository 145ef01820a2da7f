"""A malicious server played against the real client objects of the masking protocol.

The harness runs AdvertiseKeys, ShareKeys and MaskedInputCollection honestly through a real
:class:`secagg.SecAggServer` (so it holds every masked input and every share ciphertext), then takes over:
it tells each client whatever survivor list it likes (signed with the server's real key, so the clients
cannot tell it from an honest server), forwards whatever consistency signatures it collected, and keeps
every share the clients send back. Colluding clients hand over every share they hold.

Colluding clients also sign any survivor list the server makes up.

What the attacker learned is judged on its view alone: how many distinct holders sent it a share of a
client's self-mask seed and of its mask key, and whether it can reconstruct both secrets and strip the
masks from that client's masked input.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from secagg import ProtocolAbort, keys, masking, prg, shamir
from secagg import messages as m
from secagg.client import SecAggClient
from secagg.config import RoundConfig
from secagg.server import SecAggServer

#: decides the survivor list told to each client: (client id, U3 as the server saw it) -> list
ListChoice = Callable[[int, list[int]], list[int]]


@dataclass
class View:
    """Everything the malicious server (and its colluding clients) holds after the round."""

    cfg: RoundConfig
    x: np.ndarray
    masked: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # id -> (c_pk, s_pk)
    seed_shares: dict[int, dict[int, int]] = field(default_factory=dict)  # v -> holder -> share
    key_shares: dict[int, dict[int, int]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # client -> why it refused to unmask

    def counts(self, v: int) -> tuple[int, int]:
        return len(self.seed_shares.get(v, {})), len(self.key_shares.get(v, {}))

    def both_revealed(self, v: int) -> bool:
        s, k = self.counts(v)
        return s >= self.cfg.t and k >= self.cfg.t

    def recover_input(self, v: int) -> np.ndarray | None:
        """Strip every mask from v's masked input with the reconstructed secrets (None if it cannot)."""
        if not self.both_revealed(v) or v not in self.masked:
            return None
        t = self.cfg.t
        b = shamir.reconstruct(list(self.seed_shares[v].items())[:t], t)
        sk = shamir.reconstruct(list(self.key_shares[v].items())[:t], t)
        cfg, bits = self.cfg, self.cfg.bits
        acc = masking.bytes_to_words(self.masked[v], bits).astype(np.uint64)
        s_pk_v = self.keys[v][1]
        masks = [(b, masking.self_domain(cfg.session, v), -1)]
        for u in cfg.graph()[v]:
            if u in self.keys:
                s_pk_u = self.keys[u][1]
                seed = masking.pair_seed(sk, s_pk_u, cfg.session, v, u, s_pk_v, s_pk_u)
                masks.append((seed, masking.pair_domain(cfg.session, v, u), -masking.pair_sign(v, u)))
        acc = acc.astype(prg.word_dtype(bits))
        prg.add_masks(acc, masks, bits=bits)
        return masking.reduce(acc, bits).astype(np.uint64)


def attack(
    x: np.ndarray,
    cfg: RoundConfig,
    choose: ListChoice,
    *,
    corrupt: Sequence[int] = (),
    drop_before_masking: Sequence[int] = (),
    again: ListChoice | None = None,
) -> View:
    """Run one round against the real clients with the survivor lists that ``choose`` makes up;
    ``again`` makes the server send each client a second unmasking request with another list (and
    every signature it holds on that list) after its first answer."""
    n = cfg.n
    signers = [keys.Signer() for _ in range(n)]
    server_signer = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, server_signer.verify_key) for i in range(n)]
    honest = SecAggServer(cfg, server_signer, pki)
    view = View(cfg=cfg, x=x)

    def forge(to: int, kind: m.Kind, body: bytes) -> bytes:
        return m.pack(m.Envelope(kind, cfg.session, m.SERVER, to, body), server_signer)

    def body_of(msg: bytes) -> bytes:
        return m.unpack(msg, session=cfg.session, receiver=m.SERVER, verify_key_of=pki.get).body

    for c in clients:
        honest.receive(c.start())
    down = honest.advance()
    for c, msg in down.items():
        honest.receive(clients[c].handle(msg))
    for c, msg in honest.advance().items():
        if c in drop_before_masking:
            continue
        reply = clients[c].handle(msg)
        view.masked[c] = body_of(reply)
    view.keys = {v: (c_pk, s_pk) for v, (c_pk, s_pk, _) in honest._keys.items()}
    u3 = sorted(view.masked)
    told = {c: sorted(choose(c, list(u3))) for c in u3}

    def keep(c: int, reply: bytes) -> None:
        for v, what, share in m.decode_unmask(body_of(reply), n):
            bucket = view.seed_shares if what is m.What.SELF_SEED else view.key_shares
            bucket.setdefault(v, {})[c + 1] = shamir.decode_share(share)

    sigs: dict[tuple[int, ...], list[tuple[int, bytes]]] = {}
    if cfg.active:
        for c in u3:
            try:
                reply = clients[c].handle(forge(c, m.Kind.SURVIVORS, m.encode_ids(told[c])))
            except ProtocolAbort as e:
                view.refused[c] = f"{type(e).__name__}: {e}"
                continue
            sigs.setdefault(tuple(told[c]), []).append((c, body_of(reply)))
        for lst, got in sigs.items():  # colluders sign every list the server makes up
            have = {v for v, _ in got}
            stmt = m.survivors_statement(cfg.session, list(lst))
            got.extend((c, signers[c].sign(stmt)) for c in corrupt if c in lst and c not in have)
    for c in u3:
        if c in view.refused:
            continue
        lst = told[c]
        body = m.encode_unmask_request(lst, sorted(sigs.get(tuple(lst), [])))
        try:
            reply = clients[c].handle(forge(c, m.Kind.UNMASK_REQUEST, body))
        except ProtocolAbort as e:
            view.refused[c] = f"{type(e).__name__}: {e}"
            continue
        keep(c, reply)
        if again is not None:
            lst = sorted(again(c, list(u3)))
            body = m.encode_unmask_request(lst, sorted(sigs.get(tuple(lst), [])))
            try:
                keep(c, clients[c].handle(forge(c, m.Kind.UNMASK_REQUEST, body)))
            except ProtocolAbort as e:
                view.refused.setdefault(c, f"second request: {type(e).__name__}: {e}")
    for c in corrupt:  # colluders hand over both shares of every secret they hold
        for v, (sk_sh, b_sh) in clients[c]._held.items():
            view.key_shares.setdefault(v, {})[c + 1] = shamir.decode_share(sk_sh)
            view.seed_shares.setdefault(v, {})[c + 1] = shamir.decode_share(b_sh)
    return view


def split_target(cfg: RoundConfig, target: int) -> ListChoice:
    """The split-survivor-list attack on ``target``: half of its neighbours are told it survived (they
    return shares of its self-mask seed), the other half that it dropped (shares of its mask key)."""
    nbrs = list(cfg.graph()[target])
    told_dropped = set(nbrs[len(nbrs) // 2 :])

    def choose(c: int, u3: list[int]) -> list[int]:
        return [v for v in u3 if v != target] if c in told_dropped else u3

    return choose


def session() -> bytes:
    return secrets.token_bytes(16)


def uniform_inputs(n: int, d: int, bits: int) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(secrets.token_bytes(4), "little"))  # test data, not keys
    return rng.integers(0, 1 << bits, size=(n, d), dtype=np.uint64)
