"""Fuzz: the HE (CKKS, Paillier) and prio/VDAF message decoders and handlers on mutated bytes.

Mutations as in :mod:`test_fuzz_secagg` (bit flips, truncations, extensions, a rewritten leading
count, random bodies). Contracts:

- a pure decoder (VDAF field vectors, Prio3 and PINE shares, the HE frame): the typed error
  (:class:`secagg.errors.SecAggError`, whose family holds ``VdafError`` and ``MalformedMessage``), or a
  value whose canonical encoding is the input -- a decoder accepts exactly the encodings it produces;
- a signed HE message (frame, setup context, Paillier modulus): the typed error unless the bytes are
  the ones the sender signed; a payload the key holder did sign but which does not parse or fit the
  parameters gives :class:`protocols.ckks.SetupError`, never TenSEAL's untyped exception;
- a prio server's report handler: it records a typed reason and returns ``None``, or queries the
  report (whose proof then decides); it never raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import nacl.utils
import numpy as np
import tenseal as ts
from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_secagg import MUTATIONS, _mutate

from protocols.ckks.messages import Identity, Kind, decode_frame, encode_frame, open_message
from protocols.ckks.params import CKKSParams
from protocols.ckks.setup import load_paillier_modulus, load_public_context, seal_setup
from protocols.prio import PrioClient, PrioServer
from secagg.errors import SecAggError
from secagg.vdaf.field import Field64, Field128
from secagg.vdaf.pine import PineParams
from secagg.vdaf.pine_vdaf import Pine
from secagg.vdaf.prio3 import NONCE_SIZE, prio3_sum_vec

Codec = tuple[bytes, Callable[[bytes], Any], Callable[[Any], bytes]]


@functools.cache
def vdaf_codecs() -> dict[str, Codec]:
    """name -> (a valid encoding, decode, encode), from real shards and verifier shares."""
    p3 = prio3_sum_vec(4, 3, 2)
    ctx, key, nonce = b"fuzz", nacl.utils.random(32), nacl.utils.random(NONCE_SIZE)
    public, shares = p3.shard(ctx, [1, 2, 3, 0], nonce, nacl.utils.random(p3.RAND_SIZE))
    _, vs = p3.verify_init(key, ctx, 0, nonce, public, shares[0])
    pine = Pine(PineParams(dimension=4, l2_norm_bound=1.0, num_frac_bits=15, num_wr_checks=20), 3)
    leader = PrioServer(0, pine, key, ctx)
    to_leader, to_helper = PrioClient(0, pine, ctx).reports(np.array([0.1, -0.2, 0.0, 0.3]))
    head = 16 + 4 * 32
    pvs = leader.receive(0, to_leader)
    assert pvs is not None
    return {
        "field64": (
            Field64.encode_vec(np.arange(5, dtype=np.uint64)),
            Field64.decode_vec,
            Field64.encode_vec,
        ),
        "field128": (
            Field128.encode_vec(
                Field128.decode_vec(Field128.encode_vec(np.array([1, 2**100], dtype=object)))
            ),
            Field128.decode_vec,
            Field128.encode_vec,
        ),
        "prio3_public": (p3.encode_public_share(public), p3.decode_public_share, p3.encode_public_share),
        "prio3_leader": (
            p3.encode_input_share(shares[0]),
            lambda b: p3.decode_input_share(0, b),
            p3.encode_input_share,
        ),
        "prio3_helper": (
            p3.encode_input_share(shares[1]),
            lambda b: p3.decode_input_share(1, b),
            p3.encode_input_share,
        ),
        "prio3_verifier": (p3.encode_verifier_share(vs), p3.decode_verifier_share, p3.encode_verifier_share),
        "pine_leader": (
            to_leader[head:],
            lambda b: pine.decode_input_share(0, b),
            pine.encode_input_share,
        ),
        "pine_helper": (
            to_helper[head:],
            lambda b: pine.decode_input_share(1, b),
            pine.encode_input_share,
        ),
        "pine_verifier": (
            pine.encode_verifier_share(pvs),
            pine.decode_verifier_share,
            pine.encode_verifier_share,
        ),
    }


VDAF_NAMES = [
    "field64",
    "field128",
    "prio3_public",
    "prio3_leader",
    "prio3_helper",
    "prio3_verifier",
    "pine_leader",
    "pine_helper",
    "pine_verifier",
]


def _same(a: bytes, b: bytes) -> bool:
    return bytes(a) == bytes(b)


@FUZZ
@given(
    name=st.sampled_from(VDAF_NAMES),
    op=MUTATIONS,
    pos=st.integers(0, 100_000),
    val=st.integers(0, 255),
)
def test_vdaf_decoders_on_mutated_bytes(name: str, op: str, pos: int, val: int) -> None:
    valid, decode, encode = vdaf_codecs()[name]
    data = _mutate(valid, op, pos, val)
    res, detail = outcome(
        "decode/vdaf", lambda: decode(data), (SecAggError,), lambda v: _same(encode(v), data)
    )
    expect("decode/vdaf", res, detail, (name, op, data[:64]))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), op=MUTATIONS, pos=st.integers(0, 100_000), val=st.integers(0, 255))
def test_prio_report_handler_on_mutated_reports(seed: int, op: str, pos: int, val: int) -> None:
    """A mutated report is refused with a recorded typed reason; when both servers do query it, the
    proof decides, and a mutated report never passes as the honest one (its nonce or shares differ)."""
    codecs = vdaf_codecs()
    assert codecs  # the PINE instance is built
    pine = Pine(PineParams(dimension=4, l2_norm_bound=1.0, num_frac_bits=15, num_wr_checks=20), 3)
    key, ctx = nacl.utils.random(32), b"fuzz"
    x = np.random.default_rng(seed).uniform(-0.4, 0.4, 4)
    reports = PrioClient(0, pine, ctx).reports(x)
    who = pos % 2
    sent = [reports[0], reports[1]]
    sent[who] = _mutate(sent[who], op, pos // 2, val)
    servers = [PrioServer(0, pine, key, ctx), PrioServer(1, pine, key, ctx)]

    def run() -> bool:
        vs = [srv.receive(0, r) for srv, r in zip(servers, sent, strict=True)]
        for srv, v in zip(servers, vs, strict=True):
            if v is None and 0 not in srv.rejected:
                return False  # refused without a recorded reason
        if vs[0] is None or vs[1] is None:
            return True
        msg = pine.verifier_shares_to_message(ctx, [vs[0], vs[1]])
        ok = servers[0].finish(0, msg, None) and servers[1].finish(0, msg, None)
        if not ok:
            return True
        got = pine.unshard([srv.agg_share([0]) for srv in servers], 1)
        return bool(np.allclose(got, x, atol=2.0**-14))

    res, detail = outcome("decode/prio_report", run, (SecAggError,), bool)
    expect("decode/prio_report", res, detail, (op, who, pos, val))


@functools.cache
def he_setup() -> tuple[Identity, CKKSParams, bytes, bytes]:
    """The key holder's identity, CKKS parameters, a public context and an odd 1024-bit modulus."""
    params = CKKSParams()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes)
    )
    ctx.make_context_public()
    n = (1 << 1023) | int.from_bytes(nacl.utils.random(128), "big") | 1
    return Identity.generate("key_holder"), params, ctx.serialize(), n.to_bytes(128, "big")


HE_NAMES = ["frame", "signed_frame", "context", "signed_context", "modulus", "signed_modulus"]


@FUZZ
@given(name=st.sampled_from(HE_NAMES), op=MUTATIONS, pos=st.integers(0, 10**7), val=st.integers(0, 255))
def test_he_messages_on_mutated_bytes(name: str, op: str, pos: int, val: int) -> None:
    ident, params, context, modulus = he_setup()
    vk = ident.verify_key
    parts = [b"abc", bytes(range(40)), b""]
    frame = encode_frame(Kind.UPDATE, parts, 7)
    signed_ctx, signed_mod = (
        seal_setup(ident, Kind.CONTEXT, context),
        seal_setup(ident, Kind.PAILLIER_KEY, modulus),
    )
    cases: dict[str, tuple[bytes, Callable[[bytes], Any], Callable[[Any, bytes], bool] | None]] = {
        # a decoder accepts exactly the encodings it produces
        "frame": (
            frame,
            lambda b: decode_frame(b, Kind.UPDATE),
            lambda v, b: encode_frame(Kind.UPDATE, v, 7) == b,
        ),
        # signed: only the bytes the sender signed open
        "signed_frame": (
            bytes(ident._key.sign(frame)),
            lambda b: open_message(b, vk, "key_holder", Kind.UPDATE, 3, 7),
            lambda v, b: v == parts,
        ),
        "signed_context": (signed_ctx, lambda b: load_public_context(b, vk, params, "c"), lambda v, b: True),
        "signed_modulus": (signed_mod, lambda b: load_paillier_modulus(b, vk, 1024, "c"), lambda v, b: True),
        # a payload the key holder signed but mangled: validated after the signature
        "context": (
            context,
            lambda b: load_public_context(seal_setup(ident, Kind.CONTEXT, b), vk, params, "c"),
            None,
        ),
        "modulus": (
            modulus,
            lambda b: load_paillier_modulus(seal_setup(ident, Kind.PAILLIER_KEY, b), vk, 1024, "c"),
            None,
        ),
    }
    valid, decode, good = cases[name]
    data = _mutate(valid, op, pos, val)

    def check(v: Any) -> bool:
        if good is not None and name.startswith("signed_"):
            return data == valid and good(v, data)
        if name == "modulus":
            return int(v).bit_length() == 1024 and int(v) % 2 == 1
        if name == "context":
            return not v.is_private() and v.has_public_key()
        return good is not None and good(v, data)

    area = "decode/he"
    res, detail = outcome(area, lambda: decode(data), (SecAggError,), check)
    expect(area, res, detail, (name, op, pos, val))
