"""Key agreement, boxes, signatures, commitments: agreement, and rejection of bad inputs."""

from __future__ import annotations

import nacl.encoding
import nacl.hash
import numpy as np
import pytest

from secagg import AuthenticationError, MalformedMessage, keys


def test_key_agreement_is_symmetric_and_context_bound() -> None:
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    assert keys.agree(a.sk, b.pk, b"ctx") == keys.agree(b.sk, a.pk, b"ctx")
    assert keys.agree(a.sk, b.pk, b"ctx") != keys.agree(a.sk, b.pk, b"ctx2")
    assert keys.public_from_secret(a.sk) == a.pk
    assert "sk" not in repr(a)


def test_known_answer_x25519_rfc7748() -> None:
    # RFC 7748 section 6.1 test vector (Alice's key pair)
    sk = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    pk = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert keys.public_from_secret(sk) == pk


@pytest.mark.parametrize("pk", [bytes(32), bytes([1]) + bytes(31)])
def test_low_order_points_are_rejected(pk: bytes) -> None:
    a = keys.KeyPair.generate()
    with pytest.raises(MalformedMessage, match="low-order"):
        keys.check_public_key(pk)
    with pytest.raises(MalformedMessage, match="low-order"):
        keys.agree(a.sk, pk, b"")
    with pytest.raises(MalformedMessage):
        keys.box(a.sk, pk)
    with pytest.raises(MalformedMessage, match="want 32 bytes"):
        keys.check_public_key(pk[:31])


def test_box_detects_tampering() -> None:
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    ct = keys.seal(keys.box(a.sk, b.pk), b"share")
    assert keys.open_sealed(keys.box(b.sk, a.pk), ct) == b"share"
    bad = bytearray(ct)
    bad[-1] ^= 1
    with pytest.raises(AuthenticationError, match="does not decrypt"):
        keys.open_sealed(keys.box(b.sk, a.pk), bytes(bad))
    c = keys.KeyPair.generate()
    with pytest.raises(AuthenticationError):
        keys.open_sealed(keys.box(b.sk, c.pk), ct)


def test_signatures() -> None:
    s = keys.Signer()
    sig = s.sign(b"msg")
    keys.verify(s.verify_key, b"msg", sig)
    with pytest.raises(AuthenticationError):
        keys.verify(s.verify_key, b"msh", sig)
    with pytest.raises(AuthenticationError):
        keys.verify(s.verify_key, b"msg", sig, person=b"other")
    with pytest.raises(AuthenticationError):
        keys.verify(keys.Signer().verify_key, b"msg", sig)


def test_commitment_binds_secret_and_context() -> None:
    c = keys.commit(bytes(32), b"a")
    assert c == keys.commit(bytes(32), b"a")
    assert c != keys.commit(bytes(32), b"b") and c != keys.commit(bytes([1]) + bytes(31), b"a")


@pytest.mark.parametrize(
    ("size", "key", "person"),
    [
        (32, b"", b"fedsec.digest"),
        (64, b"", b""),
        (32, bytes(range(32)), b"fedsec.ka.v1"),
        (16, b"k", b"p" * 16),
    ],
)
def test_blake2b_equals_libsodium(size: int, key: bytes, person: bytes) -> None:
    """keys.blake2b (hashlib) gives libsodium's crypto_generichash_blake2b_salt_personal digests, for bytes
    and for a memoryview of a numpy array alike."""
    data = np.arange(1000, dtype=np.uint32)
    want = nacl.hash.blake2b(
        data.tobytes(),
        digest_size=size,
        key=key,
        person=person.ljust(16, b"\0"),
        encoder=nacl.encoding.RawEncoder,
    )
    assert keys.blake2b(data.tobytes(), size=size, key=key, person=person) == want
    assert keys.blake2b(memoryview(data).cast("B"), size=size, key=key, person=person) == want
    assert keys.blake2b(data.tobytes(), size=size, key=key + b"x", person=person) != want
