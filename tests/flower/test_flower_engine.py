"""``fedsec run --engine flower`` on Flower's simulation engine (Ray, 2 CPUs, one SuperNode per client)
against the in-process engine, on the same seed and config.

Agreement tolerance: the global model after every round within ``1e-6 * max|w|`` (absolute). Both engines
compute the same updates from the same minibatches; only the batching of the gradient computation
differs (one client per node against the whole cohort at once), which may change float32 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")

from fedsec.cli import main
from fedsec.config import Config
from fedsec.run import run

pytestmark = pytest.mark.flower

#: Digits, 6 clients (5 a round), FedAvg with 2 local steps and worker momentum, one ALIE attacker
#: and a label-flipping data attack, Multi-Krum: cohort sampling, server-side attack, detection.
CONFIG: dict[str, Any] = {
    "name": "flower_agreement",
    "data": {"dataset": "digits", "n_clients": 6, "min_samples": 8, "beta": 0.5},
    "model": {"name": "mlp"},
    "train": dict(
        rounds=2,
        mode="fedavg",
        local_steps=2,
        clients_per_round=5,
        momentum=0.9,
        lr=0.1,
        batch_size=16,
        threads=1,
        seed=3,
    ),
    "attack": {"name": "alie", "f": 1, "data": "label_flip"},
    "eval": {"every": 1},
    "output": {"plots": False, "checkpoint_every": 1},
    "defense": [{"rule": "multi_krum"}],
}


def _rounds(unit_dir: Path) -> list[torch.Tensor]:
    return [torch.load(unit_dir / "checkpoints" / f"round_{t:05d}.pt")["weights"] for t in (1, 2)]


def test_flower_engine_matches_the_in_process_engine_round_by_round(tmp_path: Path) -> None:
    cfg = Config.from_dict(CONFIG)
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    run(cfg, out=tmp_path / "inprocess")
    assert main(["run", str(path), "--engine", "flower", "--out", str(tmp_path / "flower"), "--quiet"]) == 0

    a, b = tmp_path / "inprocess" / "multi_krum", tmp_path / "flower" / "multi_krum"
    for t, (wa, wb) in enumerate(zip(_rounds(a), _rounds(b)), start=1):
        assert torch.allclose(wa, wb, rtol=0, atol=1e-6 * float(wa.abs().max())), f"round {t}"
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sb["engine"].startswith("flower/") and not sa["engine"].startswith("flower/")
    for key in ("rounds", "byz_detection_tpr", "byz_detection_fpr", "byzantine_clients", "stopped"):
        assert sa[key] == sb[key], key
    assert sa["byz_detection_tpr"] is not None
    for phase, cost in sa["protocol_meter"].items():
        assert cost["bytes_sent"] == sb["protocol_meter"][phase]["bytes_sent"], phase
    rows_a, rows_b = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b))
    assert [r["accuracy"] for r in rows_a] == pytest.approx([r["accuracy"] for r in rows_b], abs=1e-6)
    files = {p.relative_to(tmp_path / "inprocess") for p in (tmp_path / "inprocess").rglob("*")}
    assert files == {p.relative_to(tmp_path / "flower") for p in (tmp_path / "flower").rglob("*")}
    assert (tmp_path / "flower" / "report.md").is_file()


@pytest.mark.slow
def test_flower_engine_dpsgd_under_secagg_reports_the_in_process_epsilon() -> None:
    """DP-SGD on the nodes, the mean under secure aggregation (over Flower messages: the nodes' privacy
    statements ride in their setup replies): the noise differs (Opacus draws it from the OS), the
    accounting does not: the run's epsilon (the largest over honest nodes, reported by the nodes
    themselves) equals the in-process run's; the meter holds the messages' bytes per phase."""
    from fedsec.flower import simulate as flower_simulate
    from fedsec.simulation import simulate

    cfg = Config.from_dict(
        {
            "data": {"dataset": "digits", "n_clients": 4, "min_samples": 8},
            "model": {"name": "mlp"},
            "train": {"rounds": 2, "batch_size": 8, "threads": 1},
            "dp": {"mode": "dpsgd", "noise_multiplier": 1.0},
            "output": {"plots": False},
            "defense": [{"rule": "mean", "mechanism": "secagg"}],
        }
    ).units()[0]
    a, b = simulate(cfg), flower_simulate(cfg)
    pa, pb = a.summary["privacy"], b.summary["privacy"]
    assert pa["epsilon"] > 0 and pb["epsilon"] == pytest.approx(pa["epsilon"], rel=1e-9)
    assert a.summary["protocol"] == b.summary["protocol"] == "secagg"
    sent = {k: v["bytes_sent"] for k, v in b.summary["protocol_meter"].items()}
    assert sent["client/masked_input"] > 0 and sent["server/setup"] > 0
    assert b.summary["engine"] == "flower/dpsgd"
