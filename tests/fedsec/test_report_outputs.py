"""Report tables (pure functions on summaries), the stress search helpers, atomic run directories."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import run_summary

from fedsec.errors import ConfigError
from fedsec.outputs import RunWriter, clean_partials, ensure_writable_dir, is_finished, jsonable, slug
from fedsec.report import group_runs, heatmap_cells, runtime_rows
from fedsec.stress import _midpoints, worst_cases


def _summary(label: str, attack: str, strength: float | None, beta: float, seed: int, acc: float) -> dict:
    return run_summary(
        label, attack, strength, beta, seed, acc,
        final_accuracy=acc - 0.01, agg_seconds_mean=0.001 if label == "mean" else 0.01,
    )  # fmt: skip


RUNS = [
    _summary(d, a, s, b, seed, acc)
    for d, base in (("mean", 0.9), ("median", 0.85))
    for a, s, dmg in (("alie", 2.5, 0.1), ("alie", 8.0, 0.3), ("ipm", 2.5, 0.2), ("alie", 10.0, 0.05))
    for b in (0.1, 0.5)
    for seed, acc in ((0, base - dmg * (1 + (b == 0.1)) - (0.05 if d == "median" and a == "ipm" else 0)),)
    for acc in (acc, acc)
] + [_summary("mean", "alie", 8.0, 0.1, 1, 0.2)]


def test_group_runs_means_and_stds_over_seeds() -> None:
    groups = group_runs(RUNS)
    g = next(g for g in groups if (g["defense"], g["attack_label"], g["beta"]) == ("mean", "alie(8)", 0.1))
    vals = [
        r["max_accuracy"]
        for r in RUNS
        if (r["label"], r["strength"], r["beta"], r["attack"]) == ("mean", 8.0, 0.1, "alie")
    ]
    assert g["seeds"] == len(vals) == 3
    assert g["max_acc_mean"] == pytest.approx(np.mean(vals)) and g["max_acc_std"] == pytest.approx(
        np.std(vals)
    )


def test_heatmap_cells_shape_and_missing_cells() -> None:
    cells = heatmap_cells(group_runs(RUNS), "alie")
    strengths, betas, m = cells["median"]
    assert strengths == [2.5, 8.0, 10.0] and betas == [0.1, 0.5] and m.shape == (2, 3)
    assert m[0, 1] == pytest.approx(0.85 - 0.6)
    sparse = heatmap_cells(group_runs([*RUNS, _summary("krum", "alie", 2.5, 0.5, 0, 0.7)]), "alie")
    assert np.isnan(sparse["krum"][2][0, 0]) and sparse["krum"][2][1, 0] == pytest.approx(0.7)


def test_runtime_rows_sorted_fastest_first() -> None:
    rows = runtime_rows(group_runs(RUNS))
    assert [r["defense"] for r in rows] == ["mean", "median"]
    assert rows[0]["agg_ms_per_round"] == pytest.approx(1.0)


def test_worst_cases_and_midpoints() -> None:
    runs = [
        {"label": "cc", "beta": 0.1, "strength": s, "max_accuracy": a}
        for s, a in ((0.0, 0.9), (2.5, 0.5), (2.5, 0.6), (5.0, 0.7))
    ]
    (row,) = worst_cases(runs)
    assert row["worst_strength"] == 2.5 and row["worst_max_acc"] == pytest.approx(0.55)
    assert row["worst_std"] == pytest.approx(0.05) and row["acc_at_0"] == 0.9
    assert _midpoints([0.0, 2.5, 5.0], 2.5) == [1.25, 3.75]
    assert _midpoints([0.0, 2.5, 5.0], 0.0) == [1.25]


def test_run_writer_commits_atomically_and_replaces_an_older_run(tmp_path: Path) -> None:
    final = tmp_path / "run"
    w = RunWriter(final)
    w.write_text("a.txt", "1")
    w.append_metrics({"round": 1, "loss": float("nan")})
    assert not final.exists()  # nothing visible before commit
    w.write_json("summary.json", {"config_hash": "abc", "x": math.inf})
    w.commit()
    assert (final / "a.txt").read_text() == "1"
    assert (final / "metrics.jsonl").read_text() == '{"loss": null, "round": 1}\n'
    assert is_finished(final, "abc") and not is_finished(final, "other")
    w2 = RunWriter(final)
    w2.write_text("b.txt", "2")
    w2.commit()
    assert sorted(p.name for p in final.iterdir()) == ["b.txt", "metrics.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_run_writer_abort_and_partial_cleanup(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run")
    w.write_text("a.txt", "1")
    w.abort()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".x.partial-12").mkdir()
    (tmp_path / "kept").mkdir()
    assert clean_partials(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]


def test_ensure_writable_dir(tmp_path: Path) -> None:
    assert ensure_writable_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r"output.dir: got .*not writable"):
        ensure_writable_dir(tmp_path / "f" / "sub")


def test_slug_and_jsonable() -> None:
    assert slug("trimmed_mean(nnm)") == "trimmed_mean-nnm"
    assert slug("RFA(buck)") == "RFA-buck" and slug("()") == "run"
    assert jsonable({"a": (1.0, float("nan"))}) == {"a": [1.0, None]}
