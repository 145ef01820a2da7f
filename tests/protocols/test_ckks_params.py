"""CKKS parameter validation: the frozen parameter set, the per-protocol depth/range check, bad kwargs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import protocols
from protocols.ckks import CKKSParameterError, CKKSParams
from secagg.errors import EncodingError


def test_defaults_have_depth_one_and_4096_slots() -> None:
    p = CKKSParams()
    assert (p.depth, p.slots, p.max_decryptable) == (1, 4096, 2.0**19)
    assert p.n_chunks(61_706) == 16
    assert p.n_chunks(4096) == 1 and p.n_chunks(4097) == 2


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"poly_modulus_degree": 1000}, "poly_modulus_degree=1000"),
        ({"coeff_mod_bit_sizes": (60, 60)}, "at least 3 primes"),
        ({"coeff_mod_bit_sizes": (60, 40, 40, 40, 60)}, "want <= 218"),  # 240 bits > 128-bit bound
        ({"coeff_mod_bit_sizes": (60, 30, 60)}, "middle prime"),
        ({"coeff_mod_bit_sizes": (60, 40, 70)}, "[20, 60]"),
        ({"coeff_mod_bit_sizes": (40, 40, 60)}, "q_0 > scale + 1"),
        ({"global_scale_bits": 10}, "global_scale_bits=10"),
        ({"value_range": 0.0}, "value_range=0.0"),
        ({"value_range": math.inf}, "value_range=inf"),
        ({"n_threads": 0}, "n_threads=0"),
    ],
)
def test_invalid_parameter_sets_are_refused(kw: dict, needle: str) -> None:
    with pytest.raises(CKKSParameterError, match="got") as e:
        CKKSParams(**kw)
    assert needle in str(e.value)


def test_lists_are_frozen_to_tuples() -> None:
    p = CKKSParams(coeff_mod_bit_sizes=[60, 40, 40, 60])  # type: ignore[arg-type]
    assert p.coeff_mod_bit_sizes == (60, 40, 40, 60) and p.depth == 2
    with pytest.raises(AttributeError):
        p.depth = 3  # type: ignore[misc]


def test_require_checks_depth_and_range() -> None:
    p = CKKSParams()
    p.require(depth=1, max_magnitude=2.0**19 - 1, what="x")
    with pytest.raises(CKKSParameterError, match="want depth >= 2"):
        p.require(depth=2, max_magnitude=1.0, what="x")
    with pytest.raises(CKKSParameterError, match=r"want < 5\.243e"):
        p.require(depth=1, max_magnitude=2.0**19, what="x")


def test_check_update_rejects_out_of_range_and_non_finite() -> None:
    p = CKKSParams(value_range=0.5)
    p.check_update(np.array([0.5, -0.5]), "client[0]")
    with pytest.raises(EncodingError, match=r"client\[1\]: got max \|x\| = 0.6; want <= value_range = 0.5"):
        p.check_update(np.array([0.1, -0.6]), "client[1]")
    with pytest.raises(EncodingError, match="non-finite"):
        p.check_update(np.array([0.1, np.nan]), "client[2]")


def test_protocol_refuses_a_dimension_its_parameters_cannot_decrypt() -> None:
    # Krum's squared distances reach 4 d B^2: 4 * 200_000 * 1 > 2^19, refused before any key is made.
    proto = protocols.make("ckks_multi_krum", f=1)
    with pytest.raises(CKKSParameterError, match="ckks_multi_krum: values up to 8e"):
        proto.run(np.zeros((5, 200_000), dtype=np.float32))
    assert proto.key_holder is None


def test_protocol_refuses_too_shallow_parameters() -> None:
    # A depth-0 chain cannot exist (3 primes minimum), so emulate a protocol that needs depth 2.
    proto = protocols.make("ckks_norm_clip", clip=1.0)
    proto.depth = 2
    with pytest.raises(CKKSParameterError, match="want depth >= 2"):
        proto.run(np.zeros((3, 8), dtype=np.float32))


@pytest.mark.parametrize(
    ("name", "kw", "needle"),
    [
        ("ckks_krum", {"f": -1}, "f=-1"),
        ("ckks_multi_krum", {"f": 1, "m": 0}, "m=0"),
        ("ckks_trimmed_mean", {"f": 1.5}, "f=1.5"),
        ("ckks_norm_clip", {"clip": 0.0}, "clip=0.0"),
        ("ckks_krum", {"f": 1, "workers": 0}, "workers=0"),
        ("ckks_norm_clip", {"clip": math.nan}, "clip=nan"),
        ("ckks_mean", {"params": {"poly_modulus": 8192}}, "poly_modulus"),
        ("ckks_mean", {"params": "fast"}, "got params of type str"),
    ],
)
def test_bad_protocol_arguments(name: str, kw: dict, needle: str) -> None:
    with pytest.raises(CKKSParameterError) as e:
        protocols.make(name, **kw)
    assert needle in str(e.value)


def test_unknown_keyword_and_name_are_refused() -> None:
    with pytest.raises(TypeError):
        protocols.make("ckks_krum", f=1, m=3)  # Krum has no m
    with pytest.raises(KeyError, match="ckks_krum"):
        protocols.make("ckks_kurm", f=1)


def test_params_accepted_as_dict() -> None:
    proto = protocols.make("ckks_mean", params={"coeff_mod_bit_sizes": [60, 40, 40, 60], "value_range": 2.0})
    assert proto.params == CKKSParams(coeff_mod_bit_sizes=(60, 40, 40, 60), value_range=2.0)
