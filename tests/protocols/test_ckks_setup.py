"""Setup messages (CKKS public context, Paillier modulus) are signed by the key holder and validated.

Each case rewrites one setup message in flight, to one party, through the round's transport hook, and
checks the typed error: a bad signature is an ``AuthenticationError``; a payload the key holder did sign
but that does not parse or fit the parameters is a ``SetupError`` (never TenSEAL's untyped "failed to
parse stream"). A rewritten modulus used to make the Paillier mean wrong by 1.1-1.7 with every client
accepted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import tenseal as ts

import protocols
from protocols.ckks import SetupError
from protocols.ckks.driver import Message
from protocols.ckks.messages import Identity, Kind
from protocols.ckks.setup import load_paillier_modulus, load_public_context, seal_setup
from protocols.paillier_mean import PaillierMean
from secagg.errors import AuthenticationError

X = np.random.default_rng(2).uniform(-0.5, 0.5, size=(4, 30))


def flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 1
    return bytes(b)


def to_client(i: int, rewrite: Callable[[bytes], bytes]) -> Callable[[Message], bytes]:
    def hook(m: Message) -> bytes:
        if m.phase == "setup" and m.receiver == f"client[{i}]":
            return rewrite(m.payload)
        return m.payload

    return hook


def run_ckks(hook: Callable[[Message], bytes]) -> None:
    proto = protocols.make("ckks_mean")
    proto.intercept = hook
    proto.run(X)


def test_flipped_context_bit_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="key_holder"):
        run_ckks(to_client(2, lambda p: flip(p, len(p) // 2)))


def test_foreign_context_in_flight_is_refused() -> None:
    other = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    other.make_context_public()
    forged = Identity.generate("key_holder").seal(Kind.CONTEXT, [other.serialize()])
    with pytest.raises(AuthenticationError, match="key_holder"):
        run_ckks(to_client(1, lambda p: forged))


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\x00" * 64, "context does not parse"),
        (None, "context does not parse"),  # the real context, truncated
        (b"", "empty CONTEXT payload"),
    ],
)
def test_signed_but_malformed_context_is_a_setup_error(payload: bytes | None, needle: str) -> None:
    proto = protocols.make("ckks_mean")
    proto.run(X[:1])  # key holder and server exist; client 1 joins below
    kh = proto.key_holder
    assert kh is not None
    real = kh.client_context()
    data = real[: len(real) // 3] if payload is None else payload
    msg = seal_setup(kh.identity, Kind.CONTEXT, data)
    with pytest.raises(SetupError, match=needle):
        load_public_context(msg, kh.identity.verify_key, proto.params, "client[1]")


def test_context_of_other_parameters_is_a_setup_error() -> None:
    ident = Identity.generate("key_holder")
    small = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[40, 20, 40])
    small.make_context_public()
    msg = seal_setup(ident, Kind.CONTEXT, small.serialize())
    params = protocols.make("ckks_mean").params
    with pytest.raises(SetupError, match="got a context with N=4096, 100 modulus bits; want N=8192"):
        load_public_context(msg, ident.verify_key, params, "client[0]")


def test_server_needs_relinearization_keys() -> None:
    ident = Identity.generate("key_holder")
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    public = ctx.serialize(save_secret_key=False, save_relin_keys=False, save_galois_keys=False)
    msg = seal_setup(ident, Kind.CONTEXT, public)
    params = protocols.make("ckks_mean").params
    load_public_context(msg, ident.verify_key, params, "client[0]")  # enough for a client
    with pytest.raises(SetupError, match="without relinearization keys"):
        load_public_context(msg, ident.verify_key, params, "server", relin=True)


# ------------------------------------------------------------------------------------- Paillier
def make_paillier() -> PaillierMean:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 1024-bit test key
        p = protocols.make("paillier_mean", key_bits=1024)
    assert isinstance(p, PaillierMean)
    return p


def test_flipped_paillier_modulus_bit_is_refused() -> None:
    proto = make_paillier()
    proto.intercept = to_client(1, lambda p: flip(p, len(p) - 5))
    with pytest.raises(AuthenticationError, match="key_holder"):
        proto.run(X)


def test_paillier_modulus_of_the_wrong_size_is_a_setup_error() -> None:
    ident = Identity.generate("key_holder")
    msg = seal_setup(ident, Kind.PAILLIER_KEY, (2**1000 + 1).to_bytes(126, "big"))
    with pytest.raises(SetupError, match="got a 1001-bit modulus"):
        load_paillier_modulus(msg, ident.verify_key, 1024, "client[0]")
    even = seal_setup(ident, Kind.PAILLIER_KEY, (2**1023).to_bytes(128, "big"))
    with pytest.raises(SetupError, match="want an odd 1024-bit n"):
        load_paillier_modulus(even, ident.verify_key, 1024, "client[0]")
