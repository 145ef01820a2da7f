"""The ``fedsec`` command: help, run, sweep (resumable), report, stress, and exit code 2 on bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sim_helpers import tiny_toml

from fedsec.cli import build_parser, default_config, main


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("cmd", [[], ["run"], ["sweep"], ["report"], ["stress"]])
def test_every_help_reads_well(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fedsec") and len(out.splitlines()) > 5


def test_default_config_is_bundled_package_data() -> None:
    assert default_config().is_file() and default_config().name == "quickstart.toml"


def test_run_prints_a_table_and_writes_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tiny_toml(attack={"name": "alie", "f": 2}, defense=[{"rule": "mean"}, {"rule": "median"}])
    cfg = _write(tmp_path, text)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(cfg),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "train.rounds=4",
            "--set",
            "output.plots=true",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "max_acc" in printed and "median" in printed and "wrote" in printed
    assert {"mean", "median", "config.toml", "summary.csv", "report.md", "accuracy.png", "runtime.png"} <= {
        p.name for p in out.iterdir()
    }
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and "max_accuracy" in rows[0].split(",")
    assert (
        "rounds = 4" in (out / "config.toml").read_text()
        or '"rounds" = 4' in (out / "config.toml").read_text()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=-1"], "train.lr: got -1.0; want > 0"),
        (
            ["--set", "attack.f=4", "--set", 'attack.name="alie"'],
            "attack.f: got 4 with data.n_clients=8; want f < n/2",
        ),
        (["--set", "data.dataset=nope"], "nope"),
        (["--set", "train.epochs=3"], "train.epochs: got an unknown key"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    cfg = _write(tmp_path, tiny_toml())
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fedsec: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(p.name == "summary.json" for p in out.rglob("*"))


def test_unwritable_output_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, tiny_toml())
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["run", str(cfg), "--out", str(blocker / "sub"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "output.dir: got" in err and "not writable" in err


def test_missing_config_and_report_dir_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_sweep_is_resumable_and_report_draws_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tiny_toml(
        attack={"name": "alie", "f": 2, "strength": 1.0},
        defense=[{"rule": "mean"}, {"rule": "median"}],
        data={"partition": "dirichlet"},
        sweep={"attack.strength": [0.0, 4.0], "data.beta": [0.3, 1.0]},
    )
    cfg = _write(tmp_path, text)
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet", "--set", "train.rounds=2"]) == 0
    runs = sorted(p for p in out.iterdir() if (p / "summary.json").is_file())
    assert len(runs) == 8
    assert "8 run(s) done, 0 skipped" in capsys.readouterr().out
    # Simulate a sweep stopped midway: one run lost, one half-written directory left by a killed process.
    shutil.rmtree(runs[0])
    (out / f".{runs[1].name}.partial-999").mkdir()
    stamp = (runs[2] / "summary.json").stat().st_mtime_ns
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet", "--set", "train.rounds=2"]) == 0
    assert "1 run(s) done, 7 skipped" in capsys.readouterr().out
    assert (runs[0] / "summary.json").is_file()
    assert (runs[2] / "summary.json").stat().st_mtime_ns == stamp  # finished runs are not redone
    assert not list(out.glob(".*partial*"))
    assert main(["report", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "summary.csv",
        "groups.csv",
        "accuracy.png",
        "heatmap_alie.png",
        "runtime.png",
    } <= names
    report = (out / "report.md").read_text()
    assert "Table 1 layout" in report and "***" in report


def test_stress_finds_the_worst_strength(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tiny_toml(
        attack={"name": "ipm", "f": 3},
        defense=[{"rule": "mean"}],
        data={"partition": "dirichlet"},
        stress={"strengths": [0.0, 20.0], "betas": [1.0], "seeds": [0], "refine": 1},
    )
    cfg = _write(tmp_path, text)
    out = tmp_path / "stress"
    assert main(["stress", str(cfg), "--out", str(out), "--quiet", "--set", "train.rounds=4"]) == 0
    with open(out / "stress.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    rec = rows[0]
    # IPM with a large eps by 3 of 8 reverses the mean: the worst case is not the no-attack point.
    assert float(rec["worst_strength"]) > 0.0
    assert float(rec["worst_max_acc"]) < float(rec["acc_at_0"])
    assert rec["tried"] == "0, 10, 20"  # the grid, plus the refinement's midpoint next to the worst point
    assert "worst case" in capsys.readouterr().out


@pytest.mark.slow
def test_console_script_runs(tmp_path: Path) -> None:
    exe = shutil.which("fedsec", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the fedsec console script is not installed next to this interpreter")
    cfg = _write(tmp_path, tiny_toml())
    proc = subprocess.run(
        [exe, "run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "o" / "mean" / "summary.json").read_text())["rounds"] == 6
    bad = subprocess.run(
        [exe, "run", str(cfg), "--set", "train.lr=0"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "fedsec: error: train.lr: got 0.0; want > 0"


@pytest.mark.slow
def test_sweep_in_parallel_processes(tmp_path: Path) -> None:
    text = tiny_toml(attack={"name": "ipm", "f": 2}, sweep={"attack.strength": [0.5, 2.0]})
    cfg = _write(tmp_path, text)
    out = tmp_path / "par"
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    runs = [p for p in out.iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 2
    # The parallel result equals the sequential one (same config, same seed).
    seq = tmp_path / "seq"
    assert main(["sweep", str(cfg), "--out", str(seq), "--quiet"]) == 0
    for r in runs:
        a = [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (seq / r.name / "metrics.jsonl").read_text().splitlines()]
        strip = ("elapsed", "agg_seconds")
        assert [{k: v for k, v in m.items() if k not in strip} for m in a] == [
            {k: v for k, v in m.items() if k not in strip} for m in b
        ]
