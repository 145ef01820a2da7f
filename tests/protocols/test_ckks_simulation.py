"""End to end: the federated simulation aggregates through ``ckks_multi_krum`` and matches plaintext."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fedsec.config import Config
from fedsec.run import run as fedsec_run


def config(protocol: dict[str, Any]) -> Config:
    return Config.from_dict(
        {
            "data": {"dataset": "digits", "n_clients": 7, "partition": "iid"},
            "model": {"name": "mlp"},  # 4,810 parameters: two CKKS chunks per update
            "train": {"mode": "fedsgd", "rounds": 4, "lr": 0.2, "seed": 0, "device": "cpu"},
            "attack": {"name": "sign_flip", "f": 1},
            "eval": {"every": 2},
            # A non-plain protocol fixes its own rule; its f defaults to attack.f.
            "defense": [{"rule": "multi_krum" if protocol["name"] == "plain" else "mean"}],
            "protocol": protocol,
            "output": {"plots": False},
        }
    )


@pytest.mark.slow
def test_simulation_with_ckks_multi_krum_matches_plaintext_accuracy() -> None:
    plain = fedsec_run(config({"name": "plain"}), write=False).units[0]
    # Gradients of the first rounds can exceed 1 in a coordinate: widen the encodable range (Krum's
    # distances then reach 4 d B^2 = 4 * 4810 * 16 < 2^19, still decryptable at the default scale).
    enc = fedsec_run(
        config({"name": "ckks_multi_krum", "kwargs": {"params": {"value_range": 4.0}}}), write=False
    ).units[0]
    a, b = plain.summary["max_accuracy"], enc.summary["max_accuracy"]
    assert not math.isnan(b) and b > 0.3  # it learned (chance is 0.1 on 10 digits)
    # The encrypted aggregate equals the plaintext one to ~1e-7, so the runs agree up to float noise.
    assert abs(a - b) <= 0.02, (a, b)
    print(f"max accuracy: plain {a:.4f}, ckks_multi_krum {b:.4f}")
