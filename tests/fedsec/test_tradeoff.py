"""Sweep reports keep every swept key apart and carry each row's epsilon; the trade-off table/figure."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from fedsec.sweep import sweep
from fedsec.tradeoff import _pareto, blocks, swept_keys, tradeoff_rows
from tests.fedsec.sim_helpers import tiny


@pytest.fixture(scope="module")
def dp_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny(
        train={"rounds": 3},
        dp={"mode": "user", "order": "clip_rule_noise", "clip": 1.0, "noise_multiplier": 1.0},
        attack={"name": "alie", "f": 2},
        defense=[{"rule": "mean"}, {"rule": "median"}],
        sweep={"dp.noise_multiplier": [0.5, 4.0], "train.seed": [0, 1], "attack.f": [0, 2]},
        output={"plots": True},
    )
    out = tmp_path_factory.mktemp("dp_sweep")
    sweep(cfg, out=out)
    return out


def _read(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_groups_keep_noise_multipliers_apart_and_count_only_seeds(dp_sweep: Path) -> None:
    groups = _read(dp_sweep / "groups.csv")
    # 2 defenses x 2 noise multipliers x 2 attack settings, each with its 2 seeds (not 4, not 6).
    assert len(groups) == 8
    assert {g["seeds"] for g in groups} == {"2"}
    assert {g["seed_list"] for g in groups} == {"0 1"}
    eps = {(g["defense"], g["dp.noise_multiplier"], g["attack_label"]): float(g["epsilon"]) for g in groups}
    # Each row its own epsilon: q = 1, 3 rounds; z = 0.5 spends far more than z = 4.
    assert eps[("mean", "0.5", "none")] > 10 * eps[("mean", "4.0", "none")]
    assert eps[("mean", "4.0", "none")] == pytest.approx(eps[("median", "4.0", "alie")])
    guarantee = {g["defense"]: g["guarantee"] for g in groups}
    assert guarantee == {"mean": "proven", "median": "heuristic"}


def test_report_shows_swept_keys_as_swept_and_the_tradeoff(dp_sweep: Path) -> None:
    report = (dp_sweep / "report.md").read_text()
    assert "| swept dp.noise_multiplier | 0.5, 4.0 |" in report
    assert "swept: each row of the results table carries its own epsilon" in report
    assert "## Privacy-accuracy trade-off" in report
    assert "| epsilon | delta | accountant | guarantee |" in report
    assert "## Table 1 layout (dp.noise_multiplier=0.5)" in report
    assert "## Table 1 layout (dp.noise_multiplier=4.0)" in report
    assert (dp_sweep / "tradeoff.png").stat().st_size > 10_000
    rows = _read(dp_sweep / "tradeoff.csv")
    assert len(rows) == 8
    assert {r["panel"] for r in rows} == {"none, beta=0.3", "alie, beta=0.3"}
    assert all(r["guarantee"] == ("proven" if r["defense"] == "mean" else "heuristic") for r in rows)
    # In each panel the most private point and the most accurate point are Pareto-optimal.
    for panel in {r["panel"] for r in rows}:
        pts = [r for r in rows if r["panel"] == panel]
        least_eps = min(pts, key=lambda r: (float(r["epsilon"]), -float(r["max_acc_mean"])))
        best = max(pts, key=lambda r: (float(r["max_acc_mean"]), -float(r["epsilon"])))
        assert least_eps["pareto"] == "True" and best["pareto"] == "True"


def test_pareto_marks_only_undominated_points() -> None:
    pts = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (4.0, 0.7), (8.0, 0.9), (0.5, 0.1)]
    assert _pareto(pts) == [True, True, False, False, True, True]


def test_swept_keys_ignore_seed_defense_and_output() -> None:
    cfgs = [
        {"train.seed": s, "defense.rule": d, "output.dir": o, "dp.noise_multiplier": z, "data.beta": 0.5}
        for s, d, o, z in [(0, "mean", "a", 1.0), (1, "median", "b", 2.0)]
    ]
    assert swept_keys([{}, {}], cfgs) == ["dp.noise_multiplier"]


def _group(defense: str, z: float, eps: float | None, acc: float, **kw: Any) -> dict[str, Any]:
    return {
        "defense": defense, "attack_label": "alie", "beta": 0.5, "dp.noise_multiplier": z,
        "noise_multiplier": z, "epsilon": eps, "delta": 1e-5, "guarantee": "proven", "seeds": 3,
        "max_acc_mean": acc, "max_acc_std": 0.01, "final_acc_mean": acc - 0.1, "final_acc_std": 0.02, **kw,
    }  # fmt: skip


def test_tradeoff_rows_skip_missing_and_infinite_epsilon_and_split_other_keys() -> None:
    groups = [
        _group("mean", 0.0, float("inf"), 0.9),
        _group("mean", 1.0, 80.0, 0.8),
        _group("mean", 8.0, None, 0.7),
        _group("median", 1.0, 80.0, 0.6, **{"dp.order": "local_noise_rule"}),
    ]
    rows = tradeoff_rows(groups, ["dp.noise_multiplier", "dp.order"])
    assert [(r["defense"], r["epsilon"]) for r in rows] == [("mean", 80.0), ("median", 80.0)]
    assert rows[1]["line"] == "median (dp.order=local_noise_rule)"
    assert [r["pareto"] for r in rows] == [True, False]
    assert [t for t, _ in blocks(groups, ["dp.noise_multiplier", "attack.f"])] == [
        "dp.noise_multiplier=0.0", "dp.noise_multiplier=1.0", "dp.noise_multiplier=8.0",
    ]  # fmt: skip


def test_swept_threat_model_marks_only_what_was_swept() -> None:
    from fedsec.tradeoff import swept_threat_model

    tm = {"attack": "alie", "byzantine_actual": "5 of 25", "data_split": "dirichlet beta=0.3", "dp": {}}
    only_f = swept_threat_model(tm, ["attack.f"])
    assert only_f["byzantine_actual"].startswith("swept") and only_f["attack"] == "alie"
    assert only_f["dp"] == {} and only_f["data_split"] == "dirichlet beta=0.3"
    names = swept_threat_model(tm, ["attack.name", "data.beta", "dp.noise_multiplier"])
    assert names["byzantine_actual"] == "5 of 25"
    assert names["attack"].startswith("swept") and names["data_split"].startswith("swept")
    assert str(names["dp"]).startswith("swept")
