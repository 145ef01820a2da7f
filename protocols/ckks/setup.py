"""Authenticated setup: the key holder signs the public CKKS context and the Paillier modulus.

Every client and the server verify a setup message against the key holder's Ed25519 identity key
(the identity keys themselves are assumed authentic: distributed out of band, as a PKI would; the
simulation hands them over directly). A setup message is a signed frame (:mod:`protocols.ckks.messages`)
of kind ``CONTEXT`` or ``PAILLIER_KEY`` with one part. It carries no round stamp check: parties that
join in a later round receive the same setup.

Then the payload is validated, so that a random, truncated or foreign context never surfaces as
TenSEAL's untyped "failed to parse stream":

* a CKKS context must parse, hold no secret key, hold a public key, have the expected ``N`` and total
  modulus bits ``sum(coeff_mod_bit_sizes)``, and the evaluation keys the receiver needs;
* a Paillier modulus must have exactly ``key_bits`` bits and be odd.

Failures raise :class:`SetupError` (a :class:`secagg.MalformedMessage`); a bad signature raises
:class:`secagg.AuthenticationError`.
"""

from __future__ import annotations

from typing import Any

import tenseal as ts

from protocols.ckks.messages import Identity, Kind, open_message
from protocols.ckks.params import CKKSParams
from secagg.errors import MalformedMessage


class SetupError(MalformedMessage):
    """A setup message (public context, public key) does not parse or does not fit the parameters."""


def seal_setup(identity: Identity, kind: Kind, payload: bytes) -> bytes:
    """The key holder's signed setup message carrying ``payload``."""
    return identity.seal(kind, [bytes(payload)])


def open_setup(msg: bytes, key_holder_vk: bytes, kind: Kind, who: str) -> bytes:
    """Verify the key holder's signature on a setup message and return its payload."""
    (payload,) = open_message(msg, key_holder_vk, "key_holder", kind, 1, None)
    if not payload:
        raise SetupError(f"{who}: got an empty {kind.name} payload; want a serialized key")
    return payload


def load_public_context(
    msg: bytes,
    key_holder_vk: bytes,
    params: CKKSParams,
    who: str,
    *,
    relin: bool = False,
    galois: bool = False,
) -> Any:
    """Open, parse and validate a signed public CKKS context (see the module docstring).

    Returns the ``tenseal.Context``. ``relin`` / ``galois``: the receiver needs those evaluation keys.
    """
    data = open_setup(msg, key_holder_vk, Kind.CONTEXT, who)
    try:
        ctx = ts.context_from(data)
        key_parms = ctx.seal_context().data.key_context_data().parms()
        degree = int(key_parms.poly_modulus_degree())
        bits = int(ctx.seal_context().data.key_context_data().total_coeff_modulus_bit_count())
    except (ValueError, RuntimeError, TypeError) as e:
        raise SetupError(
            f"{who}: context does not parse ({e}); want a serialized TenSEAL CKKS context"
        ) from e
    if ctx.is_private():
        raise SetupError(f"{who}: got a context holding the secret key; want a public context")
    if not ctx.has_public_key():
        raise SetupError(f"{who}: got a context without a public key; want one")
    want_bits = sum(params.coeff_mod_bit_sizes)
    if degree != params.poly_modulus_degree or bits != want_bits:
        raise SetupError(
            f"{who}: got a context with N={degree}, {bits} modulus bits; "
            f"want N={params.poly_modulus_degree}, {want_bits} bits"
        )
    if relin and not ctx.has_relin_keys():
        raise SetupError(f"{who}: got a context without relinearization keys; want them")
    if galois and not ctx.has_galois_keys():
        raise SetupError(f"{who}: got a context without Galois keys; want rotation keys")
    return ctx


def load_paillier_modulus(msg: bytes, key_holder_vk: bytes, key_bits: int, who: str) -> int:
    """Open and validate a signed Paillier modulus: ``key_bits`` bits exactly, odd."""
    n = int.from_bytes(open_setup(msg, key_holder_vk, Kind.PAILLIER_KEY, who), "big")
    if n.bit_length() != key_bits or n % 2 == 0:
        raise SetupError(
            f"{who}: got a {n.bit_length()}-bit modulus (odd: {n % 2 == 1}); want an odd {key_bits}-bit n"
        )
    return n
