"""The simulation runs ``secagg_normbound`` (projection-check proofs) on the digits MLP for 3 rounds and
matches the same rule in the clear (slow: a few seconds per proof on 2 cores)."""

from __future__ import annotations

import pytest
import torch

from fedsec.config import Config
from fedsec.simulation import simulate

pytestmark = pytest.mark.slow


def test_digits_mlp_three_rounds_under_normbound_proofs() -> None:
    mech = {"bound": 50.0, "frac_bits": 4}
    cfg = Config.from_dict(
        {
            "name": "normbound-digits",
            "data": {"dataset": "digits", "n_clients": 4, "partition": "iid", "min_samples": 8},
            "model": {"name": "mlp"},
            "train": {"mode": "fedsgd", "rounds": 3, "lr": 0.1, "batch_size": 32, "threads": 1},
            "eval": {"every": 3},
            "output": {"plots": False},
            "defense": [
                {"rule": "mean"},
                {"rule": "mean", "mechanism": "secagg_normbound", "mechanism_kwargs": mech},
            ],
        }
    )
    clear, proven = (simulate(unit) for unit in cfg.units())
    assert proven.summary["protocol"] == "secagg_normbound"
    # every client proved its bound (none rejected) and the secure sum is exact up to the encoding
    torch.testing.assert_close(proven.weights, clear.weights, rtol=0.0, atol=0.05)
    meter = proven.summary["protocol_meter"]
    assert any(k.endswith("commit_prove") and v["bytes_sent"] > 0 for k, v in meter.items()), meter
