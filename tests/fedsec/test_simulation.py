"""End-to-end unit runs on a tiny synthetic task: outputs, determinism, detection, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from sim_helpers import tiny

import fedsec
import robust
from fedsec.errors import ConfigError
from fedsec.simulation import build_defense, simulate

TIMING = {"elapsed", "agg_seconds"}


def _strip(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in metrics]


def test_unit_run_writes_a_complete_run_directory(tmp_path: Path) -> None:
    cfg = tiny(
        attack={"name": "sign_flip", "f": 2}, defense={"rule": "multi_krum"}, output={"checkpoint_every": 3}
    )
    res = simulate(cfg, tmp_path / "run")
    d = tmp_path / "run"
    assert {p.name for p in d.iterdir()} >= {
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "summary.csv",
        "report.md",
        "label_histogram.csv",
        "checkpoints",
    }
    assert {p.name for p in (d / "checkpoints").iterdir()} == {"round_00003.pt", "round_00006.pt", "final.pt"}
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in lines] == [2, 4, 6]
    for m in lines:  # every record is traceable to its config
        assert m["config_hash"] == cfg.hash() and m["seed"] == 0 and m["version"] == fedsec.__version__
    summary = json.loads((d / "summary.json").read_text())
    assert summary["max_accuracy"] == max(m["accuracy"] for m in lines) == res.max_accuracy
    # Multi-Krum selects: the detection rates are measured and are rates.
    assert 0.0 <= summary["byz_detection_tpr"] <= 1.0 and 0.0 <= summary["byz_detection_fpr"] <= 1.0
    report = (d / "report.md").read_text()
    assert "Threat model" in report and "2 of 8" in report and "own gradients only" in report
    assert fedsec.Config.from_toml(d / "config.toml").hash() == cfg.hash()
    ck = torch.load(d / "checkpoints" / "final.pt")
    assert torch.equal(ck["weights"], res.weights)
    assert not list(tmp_path.glob(".*"))  # no partial directory left behind


def test_same_config_and_seed_give_identical_metrics() -> None:
    cfg = tiny(attack={"name": "alie", "f": 2}, defense={"rule": "dnc"}, train={"momentum": 0.5})
    a, b = simulate(cfg), simulate(cfg)
    assert _strip(a.metrics) == _strip(b.metrics)
    assert torch.equal(a.weights, b.weights)
    c = simulate(cfg.with_overrides(["train.seed=1"]))
    assert not torch.equal(a.weights, c.weights)


@pytest.mark.parametrize("engine", ["batched", "vmap", "loop"])
def test_every_engine_gives_the_same_run(engine: str) -> None:
    cfg = tiny(train={"mode": "fedavg", "local_steps": 2})
    a = simulate(cfg)
    b = simulate(cfg.with_overrides([f"train.engine={engine}"]))
    assert a.summary["engine"] == "batched" and b.summary["engine"] == engine
    torch.testing.assert_close(a.weights, b.weights, rtol=1e-4, atol=1e-5)


def test_training_learns_the_synthetic_task() -> None:
    res = simulate(tiny(train={"rounds": 20}))
    assert res.max_accuracy > 0.8  # three well separated classes; chance is 1/3


def test_byzantine_selection_is_recorded_per_evaluated_round() -> None:
    # A huge-norm attack is trivially caught by Krum: TPR 1 and FPR = (n - f - m) / (n - f) at m = n - f.
    cfg = tiny(attack={"name": "large_norm", "f": 2}, defense={"rule": "multi_krum"})
    res = simulate(cfg)
    assert res.summary["byz_detection_tpr"] == 1.0
    assert res.summary["byz_detection_fpr"] == 0.0
    assert all(m["byz_detection_tpr"] == 1.0 for m in res.metrics)


def test_mean_is_not_a_selection_rule_so_it_reports_no_rejections() -> None:
    res = simulate(tiny(attack={"name": "sign_flip", "f": 2}))
    assert res.summary.get("byz_detection_tpr", 0.0) == 0.0


def test_client_sampling_cohorts() -> None:
    res = simulate(tiny(train={"clients_per_round": 4}, attack={"name": "sign_flip", "f": 2}))
    assert res.summary["rounds"] == 6 and math.isfinite(res.max_accuracy)


def test_backdoor_success_rate_is_reported() -> None:
    res = simulate(tiny(attack={"data": "backdoor", "f": 3, "backdoor_target": 1, "backdoor_fraction": 1.0}))
    assert 0.0 <= res.summary["backdoor_success"] <= 1.0
    assert "backdoor_success" in res.metrics[-1]


def test_fltrust_gets_the_root_gradient() -> None:
    res = simulate(tiny(attack={"name": "sign_flip", "f": 2}, defense={"rule": "fltrust"}))
    assert res.max_accuracy > 0.5


def test_dataset_smaller_than_the_clients_is_a_config_error(tmp_path: Path) -> None:
    cfg = tiny(data={"options": {"n_samples": 20, "n_features": 4, "n_classes": 2}, "min_samples": 4})
    with pytest.raises(ConfigError, match=r"data.n_clients: got 8 clients x data.min_samples=4"):
        simulate(cfg, tmp_path / "run")
    assert not list(tmp_path.iterdir())


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"defense.rule: got 'krum2'"):
        build_defense(tiny(defense={"rule": "krum2"}))
    with pytest.raises(ConfigError, match=r"attack.name: got 'alei'"):
        simulate(tiny(attack={"name": "alei", "f": 1}))
    with pytest.raises(ConfigError, match=r"attack.strength: got 2.0 for 'sign_flip'"):
        simulate(tiny(attack={"name": "sign_flip", "f": 1, "strength": 2.0}))
    with pytest.raises(ConfigError, match=r"defense.rule 'median': got kwargs"):
        build_defense(tiny(defense={"rule": "median", "kwargs": {"tau": 1}}))


def test_an_interrupted_run_leaves_nothing_that_looks_like_a_result(tmp_path: Path) -> None:
    calls = []

    def boom(t: int, _n: int) -> None:
        calls.append(t)
        if t == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(tiny(), tmp_path / "run", progress=boom)
    assert calls == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_user_level_dp_reports_epsilon_and_stops_at_the_budget() -> None:
    pytest.importorskip("dp")
    import dp

    if not hasattr(dp, "DPFedAvg"):
        pytest.skip("dp.DPFedAvg not available")
    cfg = tiny(
        dp={"mode": "user", "noise_multiplier": 1.0, "clip": 1.0, "budget_epsilon": 5.0},
        train={"rounds": 50, "clients_per_round": 4},
    )
    res = simulate(cfg)
    p = res.summary["privacy"]
    assert p["epsilon"] <= 5.0 and p["accountant"] == "rdp" and p["level"] == "user"
    assert res.summary["stopped"].startswith("privacy budget")
    assert res.summary["rounds"] < 50
    acc = dp.Accountant(kind="rdp")
    for _ in range(res.summary["rounds"]):
        acc.step(1.0, 0.5)
    assert p["epsilon"] == pytest.approx(acc.epsilon(1e-5))
    assert res.metrics[-1]["dp_epsilon"] == pytest.approx(p["epsilon"])


@pytest.mark.parametrize(
    ("sections", "mechanism"),
    [
        ({"dp": {"mode": "user", "order": "local_noise_rule", "noise_multiplier": 0.5}}, "local Gaussian"),
        (
            {"protocol": {"name": "secagg_ddp"}, "dp": {"mode": "distributed"}},
            "distributed discrete Gaussian",
        ),
        pytest.param({"dp": {"mode": "dpsgd", "noise_multiplier": 1.0}}, "DP-SGD", marks=pytest.mark.slow),
    ],
)
def test_every_dp_mode_writes_its_privacy_statement(sections: dict, mechanism: str) -> None:
    pytest.importorskip("dp")
    res = simulate(tiny(**sections, train={"rounds": 2}, eval={"every": 1}))
    p = res.summary["privacy"]
    assert mechanism in p["mechanism"] and p["delta"] == 1e-5 and p["epsilon"] > 0
    assert {"epsilon", "delta", "accountant", "mechanism", "sampling", "level"} <= set(p)
    assert res.metrics[-1]["dp_epsilon"] == p["epsilon"]
    assert res.summary["threat_model"]["dp"] == p


def test_local_noise_reports_its_replace_one_accounting() -> None:
    """Local noise is accounted at z/2 with q = 1 (dp.LocalNoise's statement), not at (z, cohort rate)."""
    dp = pytest.importorskip("dp")
    z = 2.0
    res = simulate(
        tiny(
            dp={"mode": "user", "order": "local_noise_rule", "noise_multiplier": z},
            train={"rounds": 3, "clients_per_round": 4},
        )
    )
    acc = dp.Accountant(kind="rdp")
    acc.step(z / 2.0, 1.0, steps=3)
    assert res.summary["privacy"]["epsilon"] == pytest.approx(acc.epsilon(1e-5))
    assert res.summary["privacy"]["guarantee"] == "proven"


def test_dp_fedavg_around_a_robust_rule_says_its_guarantee_is_heuristic() -> None:
    pytest.importorskip("dp")
    cfg = tiny(
        dp={"mode": "user", "noise_multiplier": 1.0, "clip": 1.0},
        train={"rounds": 2},
        defense=[{"rule": "median"}],  # type: ignore[arg-type]
    )
    p = simulate(cfg).summary["privacy"]
    assert p["guarantee"] == "heuristic" and "median" in p["mechanism"]


def test_distributed_dp_takes_its_noise_from_the_dp_section() -> None:
    pytest.importorskip("dp")
    sections = {"protocol": {"name": "secagg_ddp"}, "dp": {"mode": "distributed", "noise_multiplier": 3.0}}
    p = simulate(tiny(**sections, train={"rounds": 1})).summary["privacy"]
    assert p["noise_multiplier"] == 3.0
    clash = {"protocol": {"name": "secagg_ddp", "kwargs": {"noise_multiplier": 1.0}}, "dp": sections["dp"]}
    with pytest.raises(ConfigError, match=r"protocol.kwargs.noise_multiplier: got 1.0 with dp"):
        simulate(tiny(**clash, train={"rounds": 1}))


@pytest.mark.parametrize(
    "name",
    [
        "secagg",
        pytest.param("ckks_mean", marks=pytest.mark.slow),
        pytest.param("paillier_mean", marks=pytest.mark.slow),
    ],
)
def test_secure_aggregation_protocols_give_the_plain_mean(name: str) -> None:
    """Secure sums are exact up to fixed-point encoding: the trained model matches the plain run."""
    plain = simulate(tiny(train={"rounds": 2}))
    secure = simulate(tiny(train={"rounds": 2}, protocol={"name": name}))
    torch.testing.assert_close(secure.weights, plain.weights, rtol=1e-3, atol=1e-4)
    assert name in secure.summary["threat_model"]["secure_aggregation"]


def test_non_finite_updates_stop_the_mean_cleanly_and_a_robust_rule_survives(tmp_path: Path) -> None:
    broken = simulate(tiny(attack={"name": "non_finite", "f": 2}), tmp_path / "mean")
    assert broken.summary["diverged"] and broken.summary["stopped"].startswith("diverged at round 1: mean")
    assert broken.summary["rounds"] == 1 and math.isnan(broken.metrics[-1]["loss"])
    assert json.loads((tmp_path / "mean" / "metrics.jsonl").read_text().splitlines()[-1])["loss"] is None
    robust_run = simulate(tiny(attack={"name": "non_finite", "f": 2}, defense={"rule": "median"}))
    assert not robust_run.summary["diverged"] and robust_run.max_accuracy > 0.8


def test_cohorts_with_only_byzantine_clients_are_handled() -> None:
    res = simulate(tiny(train={"clients_per_round": 2, "rounds": 12}, attack={"name": "sign_flip", "f": 3}))
    assert res.summary["rounds"] == 12


def test_python_api_runs_every_defense_with_a_custom_module() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    before = [p.detach().clone() for p in module.parameters()]
    cfg = tiny(attack={"name": "sign_flip", "f": 2}, defense=[{"rule": "mean"}, {"rule": "median"}])
    res = fedsec.run(cfg, write=False, model=module)
    assert isinstance(res, fedsec.RunResult)
    assert [r["defense"] for r in res.table()] == ["mean", "median"]
    assert res["median"].weights.shape == (8 * 16 + 16 + 16 * 3 + 3,)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    with pytest.raises(KeyError, match="no defense 'krum'"):
        res["krum"]


def test_thread_setting_is_restored_after_the_run() -> None:
    before = torch.get_num_threads()
    simulate(tiny(train={"threads": 1, "rounds": 1}))
    assert torch.get_num_threads() == before


def test_reputation_follows_client_ids_across_changing_cohorts(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a sampled cohort, trust is kept per client id: the Byzantine clients (ids 0 and 1, large
    norms) end below the threshold and no honest client does, whatever rows they sat in."""
    cfg = tiny(
        data={"n_clients": 8},
        train={"clients_per_round": 6, "rounds": 12},
        attack={"name": "large_norm", "f": 2},
        defense={"rule": "median", "reputation": True, "reputation_kwargs": {"decay": 0.5}},
    )
    assert cfg.units()[0].defense.label == "median+reputation"
    rep = build_defense(cfg)
    assert isinstance(rep, robust.Reputation) and rep.decay == 0.5
    seen: list[robust.Reputation] = []
    original = robust.Reputation.__call__

    def spy(self: robust.Reputation, stack: torch.Tensor, ids: object = None, **kw: object) -> torch.Tensor:
        assert ids is not None and len(ids) == 6  # type: ignore[arg-type]
        seen.append(self)
        return original(self, stack, ids=ids, **kw)

    monkeypatch.setattr(robust.Reputation, "__call__", spy)
    res = simulate(cfg)
    assert math.isfinite(res.max_accuracy) and len(seen) == 12
    trust = seen[-1].trust
    assert set(trust) == set(range(8))
    byz = set(res.summary["byzantine_clients"])
    assert byz and all(trust[c] < 0.5 for c in byz)
    assert all(trust[c] >= 0.5 for c in set(range(8)) - byz)


def test_reputation_options_without_reputation_are_refused() -> None:
    with pytest.raises(ConfigError, match="reputation = true"):
        tiny(defense={"rule": "median", "reputation_kwargs": {"decay": 0.5}})
    with pytest.raises(ConfigError, match=r"defense\.reputation_kwargs"):
        build_defense(tiny(defense={"rule": "median", "reputation": True, "reputation_kwargs": {"decay": 2}}))
