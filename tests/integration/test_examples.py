"""Every example config runs end to end at a reduced size (slow)."""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fedsec.cli import main
from fedsec.config import Config, SweepConfig
from fedsec.run import run
from fedsec.sweep import sweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_example_at_reduced_size(tmp_path: Path) -> None:
    res = run(ROOT / "examples/quickstart.toml", out=tmp_path, overrides=["train.rounds=3", "eval.every=3"])
    assert len(res.units) == 6
    assert {"accuracy.png", "label_histogram.png", "runtime.png", "report.md"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_stress_digits_example_at_reduced_size(tmp_path: Path) -> None:
    cfg = Config.from_toml(ROOT / "examples/stress_digits.toml", ["train.rounds=2", "train.seed=0"])
    small = dataclasses.replace(
        cfg, sweep=SweepConfig(grid={"attack.name": ("alie", "ipm"), "attack.strength": (0.0, 8.0)})
    )
    res = sweep(small, out=tmp_path)
    assert len(res.ran) == 2 * 2 * 5
    assert (tmp_path / "heatmap_alie.png").is_file() and (tmp_path / "heatmap_ipm.png").is_file()
    assert "Table 1 layout" in (tmp_path / "report.md").read_text()


def test_dp_vs_robustness_example_at_reduced_size(tmp_path: Path) -> None:
    cfg = Config.from_toml(ROOT / "examples/dp_vs_robustness.toml", ["train.rounds=2", "eval.every=1"])
    small = dataclasses.replace(
        cfg, sweep=SweepConfig(grid={"dp.noise_multiplier": (0.5, 8.0), "train.seed": (0, 1)})
    )
    res = sweep(small, out=tmp_path)
    assert len(res.ran) == 2 * 2 * 4
    report = (tmp_path / "report.md").read_text()
    assert "## Privacy-accuracy trade-off" in report and (tmp_path / "tradeoff.png").is_file()
    rows = (tmp_path / "tradeoff.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4  # header + (noise multiplier x defense), seeds averaged only


def test_stress_mnist1d_example_at_reduced_size(tmp_path: Path) -> None:
    over = [
        "train.rounds=2",
        "eval.every=1",
        "data.options={n_train=500, n_test=100}",
        "data.min_samples=2",
        f'data.data_dir="{tmp_path / "data"}"',
    ]
    cfg = Config.from_toml(ROOT / "examples/stress_mnist1d.toml", over)
    small = dataclasses.replace(
        cfg, sweep=SweepConfig(grid={"attack.name": ("alie", "ipm"), "attack.strength": (2.5, 8.0)})
    )
    res = sweep(small, out=tmp_path / "runs")
    assert len(res.ran) == 2 * 2 * 5
    assert {(s["dataset"], s["rounds"]) for s in res.ran} == {("mnist1d", 2)}
    assert (tmp_path / "data" / "mnist1d").is_dir()
    report = (tmp_path / "runs" / "report.md").read_text()
    # the paper's layout: one row per (beta block, attack), the five defenses as columns
    assert "| setting | attack | CCLIP | CMLS | DnC | RFA(buck) | trMean(NNM) |" in report
    assert "| ALIE (z=8) |" in report and "| IPM (ε=2.5) |" in report and "IPM (worst ε)" in report


def _idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_paper_fmnist_example_on_small_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = ROOT / "examples/paper_fmnist.toml"
    # Without the data: one clear line naming the expected path, exit code 2.
    assert (
        main(
            [
                "run",
                str(cfg_path),
                "--set",
                f'data.data_dir="{tmp_path / "none"}"',
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("fedsec: error: ") and "train-images-idx3-ubyte.gz" in err
    # With small files in the FMNIST IDX format.
    d = tmp_path / "fmnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 60)):
        _idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(d / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    over = [
        f'data.data_dir="{tmp_path}"',
        "data.min_samples=2",
        "train.rounds=2",
        "eval.every=1",
        "defense.f=5",
    ]
    res = run(cfg_path, out=tmp_path / "run", overrides=over)
    assert len(res.units) == 5 and all(u.summary["rounds"] == 2 for u in res.units)
