"""The three parties of the CKKS protocols: clients, the aggregation server, the key holder.

Trust model (DESIGN.md): clients encrypt under a public CKKS key; the server holds ciphertexts and
evaluation keys (relinearization, rotations) but no secret key; the key holder holds the secret key and
decrypts only what a protocol's leakage states. Server and key holder do not collude and are
honest-but-curious; Byzantine clients may send arbitrary (signed) ciphertexts.

Decryptions the server sees: the server receives the decryption of a ciphertext it computed itself (the
aggregate). Li and Micciancio (EUROCRYPT 2021, "On the Security of Homomorphic Encryption on Approximate
Numbers") show that exact approximate decryptions together with their ciphertexts can reveal the secret
key (IND-CPA-D). The key holder therefore floods every value it releases that derives continuously from
a decryption -- the aggregate, and the clip factors that scale it -- with Gaussian noise of standard
deviation ``CKKSParams.flood_std`` (:mod:`protocols.ckks.flooding`). The default margin over the CKKS
error is heuristic (a few bits per value), not a proven security level; see that module.

Parties exchange signed frames of bytes only (:mod:`protocols.ckks.messages`); a party never holds
another party's Python objects. The pure computations (chunking, squared distances summed over
chunks, blinding) are module-level functions; the classes only hold keys and parse messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import tenseal as ts

from protocols.ckks.checks import MalformedUpload
from protocols.ckks.distances import DistanceEvaluator
from protocols.ckks.flooding import flood, uniform01
from protocols.ckks.messages import Identity, Kind, array_part, open_message, parse_array
from protocols.ckks.params import CKKSParams
from protocols.ckks.setup import load_public_context
from secagg.errors import MalformedMessage, ProtocolAbort

Vec: TypeAlias = Any  # tenseal.CKKSVector (TenSEAL ships no type information)
Update: TypeAlias = list[Vec]  # one ciphertext per chunk of N/2 coordinates


# ----------------------------------------------------------------------------------------------- helpers
def chunk_rows(x: np.ndarray, slots: int) -> list[np.ndarray]:
    """Split a ``(d,)`` vector into zero-padded chunks of exactly ``slots`` values.

    Full chunks matter: TenSEAL replicates a shorter vector across the slots, which would make a
    rotation-sum over all slots count its entries several times.
    """
    k = -(-x.shape[0] // slots)
    padded = np.zeros(k * slots, dtype=np.float64)
    padded[: x.shape[0]] = x
    return [padded[i * slots : (i + 1) * slots] for i in range(k)]


def load_vector(ctx: ts.Context, part: bytes, *, levels: int, slots: int, scale: float, what: str) -> Vec:
    """Deserialize one ciphertext and check its shape, level and scale (:class:`MalformedMessage`)."""
    try:
        vec = ts.ckks_vector_from(ctx, part)
        cts = vec.ciphertext()
        size = vec.size()
    except (ValueError, RuntimeError, TypeError) as e:
        raise MalformedMessage(f"{what}: ciphertext does not load ({e}); want a CKKS vector") from e
    if len(cts) != 1 or size != slots:
        raise MalformedMessage(f"{what}: got {len(cts)} ciphertexts of {size} slots; want 1 of {slots}")
    ct = cts[0]
    if ct.size() != 2 or ct.coeff_modulus_size() != levels:
        raise MalformedMessage(
            f"{what}: got a size-{ct.size()} ciphertext at {ct.coeff_modulus_size()} primes; "
            f"want size 2 at {levels} primes"
        )
    if not math.isclose(ct.scale, scale, rel_tol=1e-9):
        raise MalformedMessage(f"{what}: got scale {ct.scale:.6g}; want {scale:.6g}")
    return vec


def sum_vectors(vecs: Sequence[Vec]) -> Vec:
    """Homomorphic sum of ciphertexts at the same level (a new object; a single input is returned as is).

    Avoids ``CKKSVector.copy()``, which deep-copies through serialization together with the context's
    evaluation keys (about a second with Galois keys at N = 8192).
    """
    if len(vecs) == 1:
        return vecs[0]
    acc = vecs[0].add(vecs[1])
    for v in vecs[2:]:
        acc.add_(v)
    return acc


def sq_distance(a: Update, b: Update) -> Vec:
    """Encrypted ``||a - b||^2``: squared differences summed over all chunks, then ONE rotation-sum.

    Cost per pair: ``k`` subtractions, ``k`` ciphertext squarings (relinearize + rescale), ``k - 1``
    additions and ``log2(N/2)`` rotations, where ``k`` is the number of chunks. Depth 1. After the
    rotation-sum every slot holds the same total, so the ciphertext carries nothing but the distance.
    """
    acc: Vec | None = None
    for x, y in zip(a, b, strict=True):
        diff = x.sub(y)
        diff.square_()
        acc = diff if acc is None else acc.add_(diff)
    assert acc is not None
    return acc.sum()


def sq_norm(a: Update) -> Vec:
    """Encrypted ``||a||^2`` (squares summed over chunks, one rotation-sum). Depth 1."""
    acc: Vec | None = None
    for x in a:
        sq = x.square()
        acc = sq if acc is None else acc.add_(sq)
    assert acc is not None
    return acc.sum()


# ----------------------------------------------------------------------------------------------- parties
class CKKSClient:
    """A client: checks its update's range and encrypts it chunk by chunk under the public key."""

    def __init__(
        self, index: int, params: CKKSParams, context: bytes, identity: Identity, key_holder_vk: bytes
    ) -> None:
        """``context``: the key holder's signed public context (:mod:`protocols.ckks.setup`), verified
        against ``key_holder_vk`` and validated against ``params``."""
        self.index = index
        self.name = f"client[{index}]"
        self.params = params
        self.identity = identity
        self._ctx = load_public_context(context, key_holder_vk, params, self.name)

    def encrypt(self, x: np.ndarray) -> bytes:
        """``UPDATE`` message: one fresh ciphertext per chunk; refuses out-of-range updates."""
        self.params.check_update(x, self.name)
        parts = [ts.ckks_vector(self._ctx, c).serialize() for c in chunk_rows(x, self.params.slots)]
        return self.identity.seal(Kind.UPDATE, parts)


class CKKSServer:
    """The aggregation server: evaluation keys only; computes on ciphertexts, never decrypts."""

    name = "server"

    def __init__(self, params: CKKSParams, context: bytes, identity: Identity, key_holder_vk: bytes) -> None:
        self.params = params
        self.identity = identity
        self.key_holder_vk = key_holder_vk
        self.client_vks: dict[int, bytes] = {}
        self.ctx = load_public_context(context, key_holder_vk, params, "server", relin=True)
        self.scale = 2.0**params.global_scale_bits
        self.top = len(params.coeff_mod_bit_sizes) - 1  # primes of a fresh ciphertext
        self._distances: DistanceEvaluator | None = None

    def distance_evaluator(self) -> DistanceEvaluator:
        """SEAL-level evaluator for pairwise distances (needs the Galois keys; made once)."""
        if self._distances is None:
            if not self.ctx.has_galois_keys():
                raise ProtocolAbort("server: got a context without Galois keys; want rotation keys")
            self._distances = DistanceEvaluator(self.ctx, self.scale, self.params.slots)
        return self._distances

    def load_update(self, i: int, msg: bytes, d: int) -> Update:
        """Open client ``i``'s signed upload. A signed upload that does not parse or validate is the
        client's own doing: :class:`protocols.ckks.checks.MalformedUpload` names it (a bad signature
        stays an :class:`secagg.AuthenticationError`: anyone on the path could have caused it)."""
        k = self.params.n_chunks(d)
        who = f"client[{i}]"
        try:
            parts = open_message(msg, self.client_vks[i], who, Kind.UPDATE, k, self.identity.round)
            what = f"update of {who}"
            return [
                load_vector(
                    self.ctx, p, levels=self.top, slots=self.params.slots, scale=self.scale, what=what
                )
                for p in parts
            ]
        except MalformedMessage as e:
            raise MalformedUpload(f"{who}: {e}", [i]) from e

    def open_from_key_holder(self, msg: bytes, kind: Kind, count: int | None = None) -> list[bytes]:
        return open_message(msg, self.key_holder_vk, "key_holder", kind, count, self.identity.round)

    def load_from_key_holder(self, msg: bytes, kind: Kind, count: int) -> list[Vec]:
        parts = self.open_from_key_holder(msg, kind, count)
        return [
            load_vector(
                self.ctx, p, levels=self.top, slots=self.params.slots, scale=self.scale, what=kind.name
            )
            for p in parts
        ]

    def seal(self, kind: Kind, vecs: Sequence[Vec]) -> bytes:
        return self.identity.seal(kind, [v.serialize() for v in vecs])

    def weighted_sum(self, updates: Sequence[Update], coeffs: Sequence[float] | None) -> Update:
        """``sum_i c_i * u_i`` chunkwise (plain scalars; depth 1); the plain sum when ``coeffs`` is None."""
        out = []
        for k in range(len(updates[0])):
            if coeffs is None:
                out.append(sum_vectors([u[k] for u in updates]))
            else:
                out.append(sum_vectors([u[k].mul(float(c)) for u, c in zip(updates, coeffs, strict=True)]))
        return out

    def encrypted_weighted_sum(self, updates: Sequence[Update], weights: Sequence[Update]) -> Update:
        """``sum_i w_i * u_i`` chunkwise with encrypted ``w_i`` (ciphertext products; depth 1)."""
        return [
            sum_vectors([u[k].mul(w[k]) for u, w in zip(updates, weights, strict=True)])
            for k in range(len(updates[0]))
        ]

    def blind(self, updates: Sequence[Update], d: int) -> tuple[list[Vec], np.ndarray, np.ndarray]:
        """Blind every coordinate with a fresh positive affine map shared by all clients.

        ``y_ij = a_j x_ij + b_j`` with ``a_j = 2^(8 u)``, ``b_j = a_j B (2 v - 1)``, ``u, v ~ U[0, 1)``
        from libsodium, fresh per coordinate and per call. Order-preserving per coordinate (``a_j > 0``),
        so ranks survive; location and scale of each column are hidden up to this distribution.
        Returns the blinded ciphertexts (client-major) and ``(a, b)`` (the server's secrets).
        """
        slots, k = self.params.slots, len(updates[0])
        a = np.exp2(8.0 * uniform01(k * slots))
        b = a * self.params.value_range * (2.0 * uniform01(k * slots) - 1.0)
        out: list[Vec] = []
        for u in updates:
            for c in range(k):
                sl = slice(c * slots, (c + 1) * slots)
                y = u[c].mul(a[sl].tolist())
                y.add_(b[sl].tolist())
                out.append(y)
        return out, a[:d], b[:d]


class CKKSKeyHolder:
    """The key holder: generates the CKKS keys, decrypts only what a protocol's leakage states."""

    name = "key_holder"

    def __init__(self, params: CKKSParams, identity: Identity, *, rotations: bool) -> None:
        self.params = params
        self.identity = identity
        self.server_vk: bytes | None = None
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            n_threads=params.n_threads,
        )
        ctx.global_scale = 2.0**params.global_scale_bits
        ctx.generate_relin_keys()
        if rotations:
            ctx.generate_galois_keys()
        self._ctx = ctx
        self._rotations = rotations
        self.scale = 2.0**params.global_scale_bits

    def __repr__(self) -> str:
        return f"CKKSKeyHolder(params={self.params!r})"

    def client_context(self) -> bytes:
        """Public key only: what a client needs to encrypt."""
        return bytes(
            self._ctx.serialize(
                save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
            )
        )

    def server_context(self) -> bytes:
        """Evaluation keys (relinearization, rotations if the protocol needs them); no secret key."""
        return bytes(
            self._ctx.serialize(
                save_public_key=True,
                save_secret_key=False,
                save_galois_keys=self._rotations,
                save_relin_keys=True,
            )
        )

    def _open(self, msg: bytes, kind: Kind, count: int) -> list[bytes]:
        if self.server_vk is None:
            raise ProtocolAbort("key_holder: no server key registered; want setup first")
        return open_message(msg, self.server_vk, "server", kind, count, self.identity.round)

    def _decrypt_parts(self, parts: list[bytes], *, levels: int, slots: int, what: str) -> list[np.ndarray]:
        out = []
        for p in parts:
            vec = load_vector(self._ctx, p, levels=levels, slots=slots, scale=self.scale, what=what)
            out.append(np.asarray(vec.decrypt(), dtype=np.float64))
        return out

    def decrypt_scalars(self, msg: bytes, kind: Kind, count: int) -> np.ndarray:
        """Decrypt ``count`` rotation-summed ciphertexts (one value each, after one multiplication)."""
        parts = self._open(msg, kind, count)
        levels = len(self.params.coeff_mod_bit_sizes) - 2  # fresh level minus one rescale
        vals = self._decrypt_parts(parts, levels=levels, slots=1, what=kind.name)
        return np.array([v[0] for v in vals], dtype=np.float64)

    def decrypt_chunks(self, msg: bytes, kind: Kind, count: int, levels: int) -> np.ndarray:
        """Decrypt ``count`` full-slot ciphertexts at ``levels`` primes into one flat array."""
        parts = self._open(msg, kind, count)
        vals = self._decrypt_parts(parts, levels=levels, slots=self.params.slots, what=kind.name)
        return np.concatenate(vals) if vals else np.zeros(0)

    def release_aggregate(
        self,
        msg: bytes,
        count: int,
        levels: int,
        d: int,
        check: Callable[[np.ndarray], None] | None = None,
    ) -> bytes:
        """``PLAINTEXT`` reply: the first ``d`` decrypted aggregate values, each flooded with fresh
        ``N(0, flood_std^2)`` noise (:mod:`protocols.ckks.flooding`) -- never the exact decryption.

        ``check`` sees every decrypted slot (padding included) before anything is released and raises
        (:mod:`protocols.ckks.checks`) if the aggregate is outside what honest inputs can give."""
        flat = self.decrypt_chunks(msg, Kind.AGGREGATE, count, levels)
        if check is not None:
            check(flat)
        return self.plaintext(flood(flat[:d], self.params.flood_std))

    def excluded(self, culprits: Sequence[int]) -> bytes:
        """``EXCLUDED`` message: the clients whose decryptions left their range (sorted int64)."""
        return self.seal(Kind.EXCLUDED, [array_part(np.array(sorted(culprits), dtype=np.int64), "int64")])

    def flood_factors(self, factors: np.ndarray) -> np.ndarray:
        """Dimensionless factors (in [0, 1]) computed from decryptions, flooded at the aggregate's
        relative level ``flood_std / value_range`` before they are encrypted for the server."""
        return flood(factors, self.params.flood_std / self.params.value_range)

    def encrypt_replicated(self, values: Sequence[float]) -> list[bytes]:
        """One fresh ciphertext per value, the value in every slot."""
        return [ts.ckks_vector(self._ctx, [float(v)] * self.params.slots).serialize() for v in values]

    def encrypt_rows(self, rows: np.ndarray) -> list[bytes]:
        """Fresh ciphertexts of an ``(n, d)`` array, row-major, chunked like client updates."""
        out = []
        for r in rows:
            out += [ts.ckks_vector(self._ctx, c).serialize() for c in chunk_rows(r, self.params.slots)]
        return out

    def seal(self, kind: Kind, parts: list[bytes]) -> bytes:
        return self.identity.seal(kind, parts)

    def plaintext(self, values: np.ndarray) -> bytes:
        return self.identity.seal(Kind.PLAINTEXT, [array_part(values, "float64")])


def read_excluded(server: CKKSServer, msg: bytes, n: int) -> list[int]:
    """The server reads the key holder's ``EXCLUDED`` list: distinct sorted indices in ``[0, n)``."""
    (part,) = server.open_from_key_holder(msg, Kind.EXCLUDED, 1)
    if len(part) % 8:
        raise MalformedMessage(f"excluded list: got {len(part)} bytes; want a multiple of 8")
    out = parse_array(part, "int64", len(part) // 8, "excluded list").tolist()
    if out != sorted(set(out)) or any(not 0 <= i < n for i in out) or len(out) >= n:
        raise MalformedMessage(f"got excluded {out}; want fewer than {n} sorted distinct indices in [0, {n})")
    return [int(i) for i in out]


def read_plaintext(server: CKKSServer, msg: bytes, d: int) -> np.ndarray:
    """The server reads the key holder's decrypted aggregate."""
    (part,) = server.open_from_key_holder(msg, Kind.PLAINTEXT, 1)
    return parse_array(part, "float64", d, "decrypted aggregate")
