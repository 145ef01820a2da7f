"""Key agreement, authenticated encryption and signatures for the masking protocol (libsodium via PyNaCl).

- Key agreement (Bonawitz et al., CCS 2017, ``KA``): X25519. The agreed 32-byte seed is
  ``BLAKE2b-256(key = X25519(sk_u, pk_v), message = context)`` where the context binds the session, both
  ids and both public keys; libsodium rejects low-order points (all-zero shared secret), which surfaces
  as :class:`secagg.MalformedMessage`.
- Authenticated encryption of shares (``AE``): ``crypto_box`` (X25519 + XSalsa20-Poly1305) with a
  random 24-byte nonce; a forged or altered ciphertext raises :class:`secagg.AuthenticationError`.
- Signatures (``SIG``): Ed25519 over ``BLAKE2b-512`` of the signed bytes (pre-hashing keeps large
  masked-input messages cheap to sign). A public-key infrastructure that maps each client id (and the
  server) to its verify key is assumed, as in the active variant of Bonawitz et al.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from secagg.errors import AuthenticationError, MalformedMessage

KEY_BYTES = 32
SIG_BYTES = 64
BOX_OVERHEAD = 24 + 16  # nonce + Poly1305 tag


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; the secret never appears in ``repr``."""

    sk: bytes = field(repr=False)
    pk: bytes

    @staticmethod
    def generate() -> KeyPair:
        sk = nacl.utils.random(KEY_BYTES)
        return KeyPair(sk=sk, pk=nacl.bindings.crypto_scalarmult_base(sk))


def public_from_secret(sk: bytes) -> bytes:
    """X25519 public key of a 32-byte secret (used to verify a reconstructed secret key)."""
    return nacl.bindings.crypto_scalarmult_base(sk)


def check_public_key(pk: bytes, what: str = "public key") -> None:
    """Reject keys of the wrong length and low-order points (X25519 with them gives all zeros)."""
    if not isinstance(pk, bytes) or len(pk) != KEY_BYTES:
        raise MalformedMessage(f"{what}: got {len(pk) if isinstance(pk, bytes) else pk!r}; want 32 bytes")
    try:
        nacl.bindings.crypto_scalarmult(b"\x09" + bytes(31), pk)
    except (nacl.exceptions.RuntimeError, RuntimeError, nacl.exceptions.CryptoError) as e:
        raise MalformedMessage(f"{what}: got a low-order X25519 point; want a valid public key") from e


def agree(sk: bytes, peer_pk: bytes, context: bytes) -> bytes:
    """X25519 shared secret hashed with ``context`` into a 32-byte seed."""
    try:
        shared = nacl.bindings.crypto_scalarmult(sk, peer_pk)
    except (nacl.exceptions.RuntimeError, RuntimeError, nacl.exceptions.CryptoError) as e:
        raise MalformedMessage("key agreement: got a low-order peer key; want a valid X25519 point") from e
    return blake2b(context, size=32, key=shared, person=b"fedsec.ka.v1")


def box(sk: bytes | nacl.public.PrivateKey, peer_pk: bytes) -> nacl.public.Box:
    """A precomputed ``crypto_box`` between ``sk`` and ``peer_pk`` (one X25519 per peer, reused)."""
    try:
        priv = sk if isinstance(sk, nacl.public.PrivateKey) else nacl.public.PrivateKey(sk)
        return nacl.public.Box(priv, nacl.public.PublicKey(peer_pk))
    except (nacl.exceptions.RuntimeError, RuntimeError, nacl.exceptions.CryptoError, ValueError) as e:
        raise MalformedMessage(
            "encryption key: got a low-order or malformed key; want a valid X25519 point"
        ) from e


def seal(channel: nacl.public.Box, plaintext: bytes) -> bytes:
    """``nonce || crypto_box(plaintext)`` with a random nonce from libsodium."""
    return bytes(channel.encrypt(plaintext))


def open_sealed(channel: nacl.public.Box, ciphertext: bytes) -> bytes:
    """Inverse of :func:`seal`; raises :class:`AuthenticationError` on any alteration."""
    try:
        return bytes(channel.decrypt(ciphertext))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError) as e:
        raise AuthenticationError("share ciphertext: got one that does not decrypt; want a valid box") from e


def blake2b(data: bytes | memoryview, *, size: int, person: bytes, key: bytes = b"") -> bytes:
    """BLAKE2b (RFC 7693) of ``data``: ``size`` bytes, optional ``key``, personalization ``person``
    (at most 16 bytes, zero-padded as libsodium does). Computed by hashlib, which reads a memoryview
    without copying; the digests equal libsodium's ``crypto_generichash_blake2b_salt_personal``."""
    return hashlib.blake2b(data, digest_size=size, key=key, person=person).digest()


def digest(data: bytes | memoryview, person: bytes) -> bytes:
    """BLAKE2b-512 with a personalization string (at most 16 bytes)."""
    return blake2b(data, size=64, person=person)


def commit(secret: bytes, context: bytes) -> bytes:
    """A 32-byte hash commitment to a high-entropy secret (the self-mask seed), bound to ``context``."""
    return blake2b(context, size=32, key=secret, person=b"fedsec.commit")


class Signer:
    """An Ed25519 signing key; ``sign`` signs BLAKE2b-512(data) under a personalization."""

    def __init__(self, key: nacl.signing.SigningKey | None = None) -> None:
        self._key = key or nacl.signing.SigningKey.generate()
        self.verify_key: bytes = bytes(self._key.verify_key)

    def __repr__(self) -> str:
        return f"Signer(verify_key={self.verify_key.hex()[:16]}...)"

    def sign(self, data: bytes | memoryview, person: bytes = b"fedsec.sig") -> bytes:
        return bytes(self._key.sign(digest(data, person)).signature)


def verify(
    verify_key: bytes, data: bytes | memoryview, signature: bytes, person: bytes = b"fedsec.sig"
) -> None:
    """Raise :class:`AuthenticationError` unless ``signature`` is valid on ``data`` under ``verify_key``."""
    try:
        nacl.signing.VerifyKey(verify_key).verify(digest(data, person), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError) as e:
        raise AuthenticationError(
            "signature: got one that does not verify; want a valid Ed25519 signature"
        ) from e
