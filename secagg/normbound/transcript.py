"""Fiat-Shamir transcript over SHA-512 with length-prefixed, labelled messages.

Every message is absorbed as ``u64le(len(label)) || label || u64le(len(data)) || data`` into one running
SHA-512 state, so two different message sequences never produce the same byte stream. A challenge with
label ``lab`` is ``SHA-512(state || u64le(len("challenge")) || "challenge" || u64le(len(lab)) || lab || ctr)``
read little-endian and reduced modulo l (a 512-bit value reduced mod a 253-bit prime: statistical distance
< 2^-250 from uniform); ``ctr`` is a one-byte counter that only moves past the (negligible) zero value.
The challenge is then absorbed under ``"challenge:" + lab``, so later challenges depend on earlier ones.

The proofs absorb the whole statement before the first challenge: protocol name and version, the
parameters (d, b, slack bits, bound B), the generators' label, the context (session id, round, client
id) and the commitment. A proof made for another client, round or session therefore yields different
challenges and does not verify (no replay). Reference: the strong Fiat-Shamir transform (Bernhard,
Pereira and Warinschi, ASIACRYPT 2012: hash the statement, not only the prover's messages).

>>> t = Transcript(b"example")
>>> t.append(b"x", b"\\x01")
>>> 0 < t.challenge(b"c") < L
True
"""

from __future__ import annotations

import hashlib

from secagg.normbound.group import L, scalar_bytes


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


class Transcript:
    """A running SHA-512 hash of labelled messages that yields challenges modulo l."""

    def __init__(self, domain: bytes) -> None:
        self._h = hashlib.sha512()
        self.append(b"domain", domain)

    def append(self, label: bytes, data: bytes) -> None:
        """Absorb ``data`` under ``label``."""
        self._h.update(_frame(bytes(label)) + _frame(bytes(data)))

    def append_int(self, label: bytes, value: int) -> None:
        """Absorb a non-negative integer (minimal big-endian bytes, length-prefixed)."""
        if value < 0:
            raise ValueError(f"append_int: got {value}; want a non-negative integer")
        self.append(label, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))

    def append_scalar(self, label: bytes, k: int) -> None:
        """Absorb a scalar mod l (canonical 32 bytes)."""
        self.append(label, scalar_bytes(k))

    def challenge(self, label: bytes) -> int:
        """A non-zero challenge modulo l bound to everything absorbed so far; it is absorbed too."""
        for ctr in range(256):
            h = self._h.copy()
            h.update(_frame(b"challenge") + _frame(bytes(label)) + bytes([ctr]))
            c = int.from_bytes(h.digest(), "little") % L
            if c != 0:
                self.append(b"challenge:" + bytes(label), scalar_bytes(c))
                return c
        raise RuntimeError("transcript: 256 zero challenges in a row (SHA-512 is broken)")  # pragma: no cover

    def digest(self) -> bytes:
        """The current state as 64 bytes (for known-answer tests; absorbs nothing)."""
        return self._h.copy().digest()
