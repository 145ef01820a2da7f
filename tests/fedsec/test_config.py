"""Config: validation names the key, overrides parse TOML, TOML round trip, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsec.config import Config, DefenseConfig, apply_overrides, dump_toml
from fedsec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"lr": -1}}, "train.lr: got -1.0; want > 0"),
        ({"train": {"lr": "fast"}}, "train.lr: got 'fast'; want a number"),
        ({"train": {"rounds": 2.5}}, "train.rounds: got 2.5; want an integer"),
        ({"train": {"engine": "jit"}}, "train.engine: got 'jit'; want one of"),
        ({"output": {"plots": 1}}, "output.plots: got 1; want a boolean"),
        ({"train": {"momentum": 1.0}}, "train.momentum: got 1.0; want in [0, 1)"),
        ({"train": {"threads": -1}}, "train.threads: got -1; want >= 0"),
        ({"train": {"lerning_rate": 0.1}}, "train.lerning_rate: got an unknown key"),
        ({"trian": {}}, "trian: got an unknown section"),
        ({"data": {"partition": "random"}}, "data.partition: got 'random'; want one of"),
        ({"data": {"beta": 0}}, "data.beta: got 0.0; want > 0"),
        ({"attack": {"name": "alie", "f": 13}}, "attack.f: got 13 with data.n_clients=25; want f < n/2"),
        ({"attack": {"f": 2}}, "attack.f: got 2 with attack.name='none'"),
        ({"attack": {"name": "alie", "f": 2}, "defense": {"f": 13}}, "defense.f: got 13"),
        ({"defense": [{"rule": "mean"}, {"rule": "mean"}]}, "duplicate labels ['mean']"),
        ({"defense": {"rule": "median", "pre_kwargs": {"nnm": {}}}}, "defense.pre_kwargs: got keys ['nnm']"),
        ({"protocol": {"name": "ckks_krum"}, "defense": {"rule": "median"}}, "want 'mean' and no pre"),
        ({"defense": {"rule": "mean", "mechanism_kwargs": {}}}, "defense.mechanism_kwargs: got []"),
        ({"dp": {"mode": "distributed"}}, "want protocol 'secagg_ddp'"),
        ({"dp": {"mode": "dpsgd", "budget_epsilon": 3.0}}, "dp.budget_epsilon: got 3.0 with dp.mode='dpsgd'"),
        ({"dp": {"delta": 1.5}}, "dp.delta: got 1.5; want in (0, 1)"),
        ({"train": {"clients_per_round": 30}}, "train.clients_per_round: got 30; want <= data.n_clients=25"),
        ({"sweep": {"train.nope": [1]}}, "sweep.train.nope: got an unknown key"),
        ({"sweep": {"train.seed": 3}}, "sweep.train.seed: got 3; want a non-empty list"),
        ({"sweep": {"defense": ["krum"]}}, "sweep.defense: got ['krum']; want labels among ['mean']"),
        ({"stress": {"strengths": []}}, "stress.strengths: got (); want a non-empty list >= 0"),
        ({"name": 3}, "name: got 3; want a string"),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_dict(raw)
    assert message in str(e.value)


def test_defaults_and_derived_values() -> None:
    cfg = Config.from_dict(
        {"attack": {"name": "alie", "f": 5}, "defense": {"rule": "trimmed_mean", "pre": ["nnm"]}}
    )
    assert cfg.defense.label == "trimmed_mean(nnm)"
    assert cfg.assumed_f() == 5  # the defense assumes the actual f unless told otherwise
    assert Config.from_dict({"attack": {"name": "alie", "f": 5}, "defense": {"f": 3}}).assumed_f() == 3
    assert cfg.train.lr == pytest.approx(0.1) and isinstance(
        Config.from_dict({"train": {"lr": 1}}).train.lr, float
    )


def test_overrides_are_parsed_as_toml() -> None:
    raw = apply_overrides(
        {"data": {"dataset": "digits"}},
        ["train.lr=0.5", "data.dataset=synthetic", 'attack.name="ipm"', "data.options={n_samples = 100}"],
    )
    assert raw["train"]["lr"] == 0.5
    assert raw["data"] == {"dataset": "synthetic", "options": {"n_samples": 100}}
    assert raw["attack"]["name"] == "ipm"
    whole = apply_overrides({"sweep": {"train.seed": [0]}}, ['sweep={"data.beta" = [0.1, 0.5]}'])
    assert whole["sweep"] == {"data.beta": [0.1, 0.5]}
    with pytest.raises(ConfigError, match=r"--set sweep: got 3; want a table"):
        apply_overrides({}, ["sweep=3"])
    with pytest.raises(ConfigError, match=r"got no '='"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match=r"want section.key=value"):
        apply_overrides({}, ["lr=3"])
    with pytest.raises(ConfigError, match=r"train.lr: got 'abc'; want a number"):
        Config.from_dict({}).with_overrides(["train.lr=abc"])


def test_defense_override_applies_to_every_defense_and_selects_by_label() -> None:
    cfg = Config.from_dict(
        {"attack": {"name": "alie", "f": 2}, "defense": [{"rule": "mean"}, {"rule": "median"}]}
    )
    assert {d.f for d in cfg.with_overrides(["defense.f=1"]).defenses} == {1}
    only = cfg.replace(defense="median")
    assert [d.label for d in only.defenses] == ["median"]
    with pytest.raises(ConfigError, match=r"defense: got 'krum'"):
        cfg.replace(defense="krum")


def test_units_one_per_defense_and_hash_identifies_what_is_computed() -> None:
    cfg = Config.from_dict(
        {"attack": {"name": "alie", "f": 2}, "defense": [{"rule": "mean"}, {"rule": "median"}]}
    )
    units = cfg.units()
    assert [u.defense.label for u in units] == ["mean", "median"]
    assert units[0].hash() != units[1].hash()
    assert units[0].hash() == units[0].with_overrides(["output.dir=elsewhere", "output.plots=false"]).hash()
    assert units[0].hash() != units[0].with_overrides(["train.seed=1"]).hash()
    with pytest.raises(ConfigError, match=r"want exactly one"):
        _ = cfg.defense


@settings(max_examples=30, deadline=None)
@given(
    lr=st.floats(1e-4, 10, allow_nan=False),
    rounds=st.integers(1, 10_000),
    beta=st.floats(1e-3, 100, allow_nan=False),
    pre=st.lists(st.sampled_from(["nnm", "bucketing", "clip"]), max_size=2, unique=True),
    strength=st.none() | st.floats(0, 50, allow_nan=False),
    label=st.text(alphabet='abc_(), é"\\', max_size=8),
)
def test_toml_round_trip_keeps_the_hash(
    lr: float, rounds: int, beta: float, pre: list[str], strength: float | None, label: str
) -> None:
    attack = {"name": "alie", "f": 3, "kwargs": {"omniscient": False}}
    if strength is not None:
        attack["strength"] = strength
    cfg = Config.from_dict(
        {
            "train": {"lr": lr, "rounds": rounds},
            "data": {"beta": beta, "options": {"n_samples": 10}},
            "attack": attack,
            "defense": {"rule": "median", "pre": pre, "label": label},
            "sweep": {"train.seed": [0, 1]},
        }
    )
    again = Config.from_dict(tomllib.loads(cfg.to_toml()))
    assert again == cfg
    assert again.hash() == cfg.hash()


def test_dump_toml_rejects_non_toml_values() -> None:
    with pytest.raises(ConfigError, match=r"want a TOML value"):
        dump_toml({"a": {"b": object()}})


def test_from_toml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        Config.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        Config.from_toml(bad)


@pytest.mark.parametrize(
    "path",
    [
        "fedsec/configs/quickstart.toml",
        "examples/quickstart.toml",
        "examples/stress_digits.toml",
        "examples/stress_mnist1d.toml",
        "examples/paper_fmnist.toml",
    ],
)
def test_bundled_configs_are_valid(path: str) -> None:
    cfg = Config.from_toml(ROOT / path)
    assert cfg.defenses and all(isinstance(d, DefenseConfig) for d in cfg.defenses)


def test_quickstart_matches_the_issue() -> None:
    cfg = Config.from_toml(ROOT / "fedsec/configs/quickstart.toml")
    assert (cfg.data.dataset, cfg.data.n_clients, cfg.attack.f, cfg.attack.name) == ("digits", 25, 5, "alie")
    assert (cfg.data.partition, cfg.data.beta) == ("dirichlet", 0.3)
    labels = {d.label for d in cfg.defenses}
    assert {"mean", "median", "trimmed_mean(nnm)", "multi_krum", "centered_clipping", "dnc"} <= labels
    assert (ROOT / "examples/quickstart.toml").read_text() == (
        ROOT / "fedsec/configs/quickstart.toml"
    ).read_text()
