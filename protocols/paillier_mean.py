"""``paillier_mean``: the classic additively homomorphic baseline (Paillier, EUROCRYPT 1999).

Round:
1. setup: the key holder generates a Paillier key pair and publishes the modulus ``n``.
2. upload: each client encodes its update with :class:`secagg.encoding.FixedPoint` (ring
   ``Z_{2^b}``, scale derived for ``n_clients`` summands, unbiased stochastic rounding), packs
   ``s = floor((|n| - 2) / w)`` ring elements into one plaintext in slots of ``w = b + ceil(log2 n_clients)``
   bits (``P = sum_k v_k 2^(w k)``), and encrypts each plaintext: ``c = (1 + n P) r^n mod n^2`` with
   ``r`` drawn from libsodium.
3. aggregate: the server multiplies the clients' ciphertexts slot-wise modulo ``n^2`` -- the
   encryption of the sum of the packed plaintexts. A slot's integer sum is below
   ``n_clients * 2^b <= 2^w``, so slots never carry into each other, and ``sum P < 2^(|n| - 2) < n``
   so the sum never wraps modulo ``n``.
4. decrypt: the key holder decrypts the sums only, unpacks the slots, reduces each modulo ``2^b`` and
   decodes the ring sum (``FixedPoint.decode_sum``); the server divides by ``n_clients``.

Setup: the key holder signs the modulus; clients and the server verify it against the key holder's
identity key and check its size (:mod:`protocols.ckks.setup`). The server verifies the final reply
with the key holder key it was sent at setup.

Byzantine clients, stated plainly: the key holder decrypts only the sum, so it cannot name a client,
and nothing bounds one client's contribution (no range proof). It refuses (:class:`ByzantineInputError`,
no client named) every sum honest inputs cannot produce: a slot above ``n (2^b - 1)``, bits above the
last slot, a signed ring sum beyond ``n ceil(B 2^f)`` (:func:`check_packed_sums`,
:func:`check_ring_sums`); a plaintext under a foreign key or from a tampered modulus is refused with
overwhelming probability. What passes is a sum honest inputs could give: a Byzantine client can move
the mean anywhere within ``[-B, B]`` per coordinate (a word that carries into the next slot moves that
slot by one unit), never beyond.

Leakage:
    server: the aggregate (the released mean).
    key_holder: the aggregate (the sum of the fixed-point encodings).

Cost: one ``2|n|``-bit modular exponentiation per packed plaintext (``r^n mod n^2``), which dominates;
the wire carries ``|n| / 4`` bytes per ciphertext. Keys: phe generates the primes with Python's
``random.SystemRandom`` (the OS CSPRNG); the encryption randomness ``r`` comes from libsodium.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.utils
import numpy as np
import torch
from phe import paillier

from protocols.base import PROTOCOLS, Leakage, Meter, RoundResult
from protocols.channel import Channel, Message
from protocols.ckks.checks import ByzantineInputError
from protocols.ckks.driver import as_stack, refuse_weights
from protocols.ckks.messages import Identity, Kind, array_part, open_message, parse_array
from protocols.ckks.setup import load_paillier_modulus, open_setup, seal_setup
from secagg.encoding import FixedPoint
from secagg.errors import EncodingError, MalformedMessage, ProtocolAbort


class PaillierParameterError(ValueError):
    """An invalid Paillier parameter set ("got X; want Y")."""


@dataclass(frozen=True)
class PaillierParams:
    """Paillier baseline parameters.

    Attributes:
        key_bits: modulus size ``|n|``; 2048 or more (1024 is accepted for tests with a loud warning).
        ring_bits: ``b``, the fixed-point ring ``Z_{2^b}`` of :class:`secagg.encoding.FixedPoint`.
        value_range: every coordinate satisfies ``|x| <= value_range`` (clients refuse otherwise).
    """

    key_bits: int = 2048
    ring_bits: int = 32
    value_range: float = 1.0

    def __post_init__(self) -> None:
        kb = self.key_bits
        if not isinstance(kb, int) or isinstance(kb, bool) or kb < 1024 or kb % 256:
            raise PaillierParameterError(
                f"got key_bits={kb!r}; want a multiple of 256, >= 1024 (>= 2048 outside tests)"
            )
        if kb < 2048:
            warnings.warn(
                f"paillier key_bits={kb} is below 2048 bits: about 80-bit security; use for tests only",
                stacklevel=3,
            )
        rb = self.ring_bits
        if not isinstance(rb, int) or isinstance(rb, bool) or not 8 <= rb <= 62:
            raise PaillierParameterError(f"got ring_bits={rb!r}; want an int in [8, 62]")
        v = self.value_range
        if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise PaillierParameterError(f"got value_range={v!r}; want a finite number > 0")

    def slot_bits(self, n_clients: int) -> int:
        """``w = b + ceil(log2 n_clients)``: room for the integer sum of ``n_clients`` ring elements."""
        return self.ring_bits + max(0, math.ceil(math.log2(n_clients)))

    def per_plaintext(self, n_clients: int) -> int:
        """Values packed per Paillier plaintext."""
        return (self.key_bits - 2) // self.slot_bits(n_clients)

    def encoding(self) -> FixedPoint:
        return FixedPoint(bits=self.ring_bits, clip=float(self.value_range))


# ----------------------------------------------------------------------------------------------- packing
def pack(words: np.ndarray, w: int, s: int) -> list[int]:
    """Pack non-negative integers (< 2^w) ``s`` per big integer: ``P = sum_k v_k 2^(w k)``."""
    out = []
    vals = [int(v) for v in words.tolist()]
    for start in range(0, len(vals), s):
        acc = 0
        for k, v in enumerate(vals[start : start + s]):
            acc |= v << (w * k)
        out.append(acc)
    return out


def unpack(ints: list[int], w: int, s: int, d: int) -> np.ndarray:
    """Inverse of :func:`pack` for ``d`` values (as Python ints, which may exceed 64 bits)."""
    mask = (1 << w) - 1
    vals: list[int] = []
    for p in ints:
        vals += [(p >> (w * k)) & mask for k in range(s)]
    return np.array(vals[:d], dtype=object)


def _random_unit(n: int) -> int:
    """``r`` uniform in ``Z_n^*`` from libsodium (rejection on the negligible non-units)."""
    nbytes = (n.bit_length() + 7) // 8 + 16
    while True:
        r = int.from_bytes(nacl.utils.random(nbytes), "big") % n
        if r > 1 and math.gcd(r, n) == 1:
            return r


def _ct_bytes(pub: paillier.PaillierPublicKey) -> int:
    return (pub.nsquare.bit_length() + 7) // 8


def upload_bytes(params: PaillierParams, n_clients: int, d: int) -> int:
    """Bytes of one client's upload: ``ceil(d / s)`` ciphertexts in a signed frame.

    With ``s`` = :meth:`PaillierParams.per_plaintext` slots per plaintext, ``|n|`` = ``key_bits``, a
    ciphertext in ``Z_(n^2)`` of ``C = ceil(2 |n| / 8)`` bytes, a 14-byte frame header, a 4-byte
    length per part and a 64-byte Ed25519 signature (:mod:`protocols.ckks.messages`)::

        upload = 64 + 14 + ceil(d / s) (4 + C)

    e.g. 594 bytes for ``d <= 56`` at 2048 bits and 10 clients (``w = 36``, ``s = 56``); the expansion
    over a float32 upload (``4 d`` bytes) tends to ``C / (4 s) ~ w / 16``, about 2.25x there.

    >>> upload_bytes(PaillierParams(), n_clients=10, d=8)
    594
    """
    chunks = -(-d // params.per_plaintext(n_clients))
    return 64 + 14 + chunks * (4 + (2 * params.key_bits + 7) // 8)


# ----------------------------------------------------------------------------------------------- checks
def check_packed_sums(ints: list[int], p: PaillierParams, n_clients: int, d: int) -> None:
    """Key holder: every decrypted packed sum must be one that honest clients can produce.

    Honest words are ring elements ``v < 2^b`` (two's complement), so each slot's integer sum is at most
    ``n (2^b - 1)`` (the headroom the slot width ``w = b + ceil(log2 n)`` leaves for ``n`` summands) and
    nothing lies above the last used slot. A sum outside that (a plaintext under a foreign key, a
    tampered modulus, a client's word of ``2^b`` or more that does not carry away) raises
    :class:`ByzantineInputError`; the key holder sees only the sum, so no client is named.
    """
    w, s = p.slot_bits(n_clients), p.per_plaintext(n_clients)
    top = n_clients * ((1 << p.ring_bits) - 1)
    mask = (1 << w) - 1
    for k, v in enumerate(ints):
        used = min(s, d - k * s)
        slots = [(v >> (w * j)) & mask for j in range(used)]
        if v >> (w * used) or max(slots) > top:
            raise ByzantineInputError(
                f"key_holder: packed sum {k} has a slot above n (2^b - 1) = {top} or bits above slot "
                f"{used}; want every slot in [0, {top}] (a client's plaintext outside the encoding)"
            )


def check_ring_sums(ring: np.ndarray, p: PaillierParams, n_clients: int) -> None:
    """Key holder: the signed ring sums must satisfy ``|sum| <= n ceil(B 2^f)`` (the honest range)."""
    enc = p.encoding()
    bound = n_clients * enc.max_abs(enc.scale_bits(n_clients))
    signed = enc.to_signed(ring)
    if signed.size and int(np.abs(signed).max()) > bound:
        j = int(np.argmax(np.abs(signed)))
        raise ByzantineInputError(
            f"key_holder: coordinate {j} of the sum is {int(signed[j])} in ring units; want |sum| <= "
            f"{bound} = n ceil(B 2^f) (a client's input outside value_range)"
        )


# ----------------------------------------------------------------------------------------------- parties
class PaillierClient:
    """Encodes, packs and encrypts an update under the key holder's public modulus.

    ``modulus``: the key holder's signed ``PAILLIER_KEY`` setup message, verified against
    ``key_holder_vk`` and validated (:func:`protocols.ckks.setup.load_paillier_modulus`)."""

    def __init__(
        self, index: int, params: PaillierParams, modulus: bytes, identity: Identity, key_holder_vk: bytes
    ) -> None:
        self.name = f"client[{index}]"
        self.params = params
        self.identity = identity
        self.pub = paillier.PaillierPublicKey(
            load_paillier_modulus(modulus, key_holder_vk, params.key_bits, self.name)
        )

    def encrypt(self, x: np.ndarray, n_clients: int) -> bytes:
        p = self.params
        if not np.isfinite(x).all():
            raise EncodingError(f"{self.name}: got a non-finite entry; want finite values")
        peak = float(np.abs(x).max())
        if peak > p.value_range:
            raise EncodingError(
                f"{self.name}: got max |x| = {peak:.6g}; want <= value_range = {p.value_range}"
            )
        words = p.encoding().encode(x, n_summands=n_clients)
        size = _ct_bytes(self.pub)
        cts = [
            self.pub.raw_encrypt(m, r_value=_random_unit(self.pub.n)).to_bytes(size, "big")
            for m in pack(words, p.slot_bits(n_clients), p.per_plaintext(n_clients))
        ]
        return self.identity.seal(Kind.PAILLIER_UPDATE, cts)


class PaillierServer:
    """Multiplies ciphertexts modulo ``n^2``; holds no private key."""

    name = "server"

    def __init__(
        self, modulus: bytes, identity: Identity, key_holder_vk: bytes, key_bits: int | None = None
    ) -> None:
        """``modulus``: the key holder's signed ``PAILLIER_KEY`` message (verified against
        ``key_holder_vk``; ``key_bits``: the expected size, ``None`` to take the modulus' own)."""
        n = int.from_bytes(open_setup(modulus, key_holder_vk, Kind.PAILLIER_KEY, "server"), "big")
        n = load_paillier_modulus(modulus, key_holder_vk, key_bits or n.bit_length(), "server")
        self.pub = paillier.PaillierPublicKey(n)
        self.identity = identity
        self.key_holder_vk = key_holder_vk
        self.client_vks: dict[int, bytes] = {}

    def load_update(self, i: int, msg: bytes, count: int) -> list[int]:
        parts = open_message(
            msg, self.client_vks[i], f"client[{i}]", Kind.PAILLIER_UPDATE, count, self.identity.round
        )
        size, nsq = _ct_bytes(self.pub), self.pub.nsquare
        out = []
        for k, part in enumerate(parts):
            c = int.from_bytes(part, "big")
            if len(part) != size or not 0 < c < nsq or math.gcd(c, self.pub.n) != 1:
                raise MalformedMessage(
                    f"client[{i}] ciphertext {k}: got {len(part)} bytes / value outside Z*_(n^2); "
                    f"want {size} bytes encoding a unit modulo n^2"
                )
            out.append(c)
        return out

    def add(self, updates: list[list[int]]) -> bytes:
        """Homomorphic sum: the slot-wise product of the ciphertexts modulo ``n^2``."""
        nsq, size = self.pub.nsquare, _ct_bytes(self.pub)
        acc = list(updates[0])
        for u in updates[1:]:
            acc = [a * c % nsq for a, c in zip(acc, u, strict=True)]
        return self.identity.seal(Kind.PAILLIER_SUM, [c.to_bytes(size, "big") for c in acc])

    def read_plaintext(self, msg: bytes, d: int) -> np.ndarray:
        """The key holder's decrypted sum, verified with the key holder key this server was sent."""
        (part,) = open_message(msg, self.key_holder_vk, "key_holder", Kind.PLAINTEXT, 1, self.identity.round)
        return parse_array(part, "float64", d, "aggregate")


class PaillierKeyHolder:
    """Holds the private key; decrypts the aggregate only."""

    name = "key_holder"

    def __init__(self, params: PaillierParams, identity: Identity) -> None:
        self.params = params
        self.identity = identity
        self.pub, self._priv = paillier.generate_paillier_keypair(n_length=params.key_bits)
        self.server_vk: bytes | None = None

    def __repr__(self) -> str:
        return f"PaillierKeyHolder(params={self.params!r})"

    def modulus(self) -> bytes:
        """The signed ``PAILLIER_KEY`` setup message carrying ``n`` (big-endian)."""
        n = int(self.pub.n).to_bytes((self.pub.n.bit_length() + 7) // 8, "big")
        return seal_setup(self.identity, Kind.PAILLIER_KEY, n)

    def decrypt_sum(self, msg: bytes, count: int, n_clients: int, d: int) -> tuple[bytes, np.ndarray]:
        if self.server_vk is None:
            raise ProtocolAbort("key_holder: no server key registered; want setup first")
        parts = open_message(msg, self.server_vk, "server", Kind.PAILLIER_SUM, count, self.identity.round)
        p = self.params
        ints = [self._priv.raw_decrypt(int.from_bytes(c, "big")) for c in parts]
        check_packed_sums(ints, p, n_clients, d)
        slots = unpack(ints, p.slot_bits(n_clients), p.per_plaintext(n_clients), d)
        ring = np.array([v & ((1 << p.ring_bits) - 1) for v in slots], dtype=np.uint64)
        check_ring_sums(ring, p, n_clients)
        total = p.encoding().decode_sum(ring, n_summands=n_clients)
        return self.identity.seal(Kind.PLAINTEXT, [array_part(total, "float64")]), total


# ----------------------------------------------------------------------------------------------- round
@PROTOCOLS.register("paillier_mean")
class PaillierMean:
    """Packed fixed-point Paillier mean; see the module docstring for the round and its leakage.

    Args:
        key_bits, ring_bits, value_range: the fields of :class:`PaillierParams`.

    Attributes:
        transcript: the messages of the last round (sender, receiver, phase, payload).
    """

    name = "paillier_mean"

    def __init__(self, key_bits: int = 2048, ring_bits: int = 32, value_range: float = 1.0) -> None:
        self.params = PaillierParams(key_bits=key_bits, ring_bits=ring_bits, value_range=value_range)
        self.key_holder: PaillierKeyHolder | None = None
        self.server: PaillierServer | None = None
        self.clients: dict[int, PaillierClient] = {}
        self.transcript: list[Message] = []
        self.meter = Meter()
        self.round_id = 0
        #: Transport hook, as :attr:`protocols.ckks.CKKSRound.intercept`: may rewrite a message in flight.
        self.intercept: Callable[[Message], bytes] | None = None

    def _send(self, sender: str, receiver: str, phase: str, payload: bytes) -> bytes:
        channel = Channel(self.meter, self.transcript, intercept=self.intercept)
        return channel.deliver(sender, receiver, phase, payload)

    def _setup(self, n: int) -> tuple[PaillierKeyHolder, PaillierServer]:
        if self.key_holder is None or self.server is None:
            with self.meter.time("key_holder", "setup"):
                kh = PaillierKeyHolder(self.params, Identity.generate("key_holder"))
            sid = Identity.generate("server")
            kh.server_vk = self._send("server", "key_holder", "setup", sid.verify_key)
            mod = self._send("key_holder", "server", "setup", kh.modulus())
            # Identity keys are authentic by assumption (a PKI, out of band); the message is metered only.
            self._send("key_holder", "server", "setup", kh.identity.verify_key)
            vk = kh.identity.verify_key
            self.server = PaillierServer(mod, sid, vk, self.params.key_bits)
            self.key_holder = kh
        kh, server = self.key_holder, self.server
        vk = server.key_holder_vk
        for i in range(n):
            if i not in self.clients:
                name = f"client[{i}]"
                mod = self._send("key_holder", name, "setup", kh.modulus())
                client = PaillierClient(i, self.params, mod, Identity.generate(name), vk)
                server.client_vks[i] = self._send(name, "server", "setup", client.identity.verify_key)
                self.clients[i] = client
        return kh, server

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        refuse_weights("paillier_mean", weights, "the unweighted mean")
        x = as_stack(stack)
        n, d = x.shape
        self.transcript, self.meter = [], Meter()
        self.params.encoding().scale_bits(n)  # raises EncodingError if n summands could wrap the ring
        kh, server = self._setup(n)
        self.round_id += 1
        for ident in [kh.identity, server.identity, *(c.identity for c in self.clients.values())]:
            ident.round = self.round_id
        count = -(-d // self.params.per_plaintext(n))
        updates = []
        for i in range(n):
            name = f"client[{i}]"
            with self.meter.time(name, "upload"):
                msg = self.clients[i].encrypt(x[i], n)
            msg = self._send(name, "server", "upload", msg)
            with self.meter.time("server", "upload"):
                updates.append(server.load_update(i, msg, count))
        with self.meter.time("server", "aggregate"):
            agg = server.add(updates)
        agg = self._send("server", "key_holder", "decrypt", agg)
        with self.meter.time("key_holder", "decrypt"):
            reply, total = kh.decrypt_sum(agg, count, n, d)
        reply = self._send("key_holder", "server", "decrypt", reply)
        with self.meter.time("server", "decrypt"):
            mean = torch.as_tensor(server.read_plaintext(reply, d) / n, dtype=torch.float32)
        leak = Leakage({"server": {"aggregate": mean}, "key_holder": {"aggregate": torch.as_tensor(total)}})
        return RoundResult(aggregate=mean, accepted=list(range(n)), meter=self.meter, leakage=leak)


def describe(params: PaillierParams, n_clients: int, d: int) -> dict[str, Any]:
    """Packing figures for a round: values per plaintext, ciphertexts and bytes per client."""
    s = params.per_plaintext(n_clients)
    count = -(-d // s)
    return {"per_plaintext": s, "ciphertexts": count, "bytes": count * params.key_bits // 4}
