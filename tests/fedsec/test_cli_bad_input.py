"""Issue 21, CLI: bad values are refused up front (exit 2, one line), before any defense trains, and
a run that did not finish never looks complete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sim_helpers import tiny_toml

from fedsec.cli import is_library_error, main


def _run(tmp_path: Path, text: str, *args: str) -> tuple[int, Path]:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "train.rounds=2", *args])
    return code, out


def _trained(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.rglob("summary.json")) if out.exists() else []


ATTACKED = {"attack": {"name": "alie", "f": 1}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=inf"], "train.lr: got inf; want a finite number"),
        (["--set", "train.weight_decay=inf"], "train.weight_decay: got inf; want a finite number"),
        (["--set", "attack.strength=inf"], "attack.strength: got inf; want a finite number"),
        (["--set", "train.seed=9223372036854775807"], "train.seed: got 9223372036854775807; want in [0, "),
        (["--set", "dp.noise_multiplier=nan"], "dp.noise_multiplier: got nan"),
        (
            ["--set", 'attack.data="backdoor"', "--set", "attack.backdoor_target=99"],
            "attack.backdoor_target: got 99; want a class in [0, 2]",
        ),
    ],
)
def test_out_of_range_values_exit_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Main: lr=inf trained to 0.100 accuracy with exit 0; the others crashed with tracebacks.
    code, out = _run(tmp_path, tiny_toml(**ATTACKED), *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fedsec: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert _trained(out) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(tmp_path, tiny_toml(), "--set", 'train.device="cuda"')
    assert code == 2 and 'train.device: got "cuda"' in capsys.readouterr().err


BAD_DEFENSES = [
    ({"rule": "multi_krum", "kwargs": {"m": 0}}, "m must be >= 1"),
    ({"rule": "multi_krum", "kwargs": {"m": 100}}, "m must be <= n - f"),
    ({"rule": "centered_clipping", "kwargs": {"tau": -1.0}}, "tau must be a finite number > 0"),
    ({"rule": "dnc", "kwargs": {"sub_dim": 0}}, "sub_dim and niters must be >= 1"),
    ({"rule": "median", "pre": ["nnm"], "pre_kwargs": {"nnm": {"f": -1}}}, "f must be >= 0"),
    ({"rule": "median", "pre": ["bucketing"], "pre_kwargs": {"bucketing": {"s": 0}}}, "s must be >= 1"),
    ({"rule": "krum", "kwargs": {"ff": 1}}, "ff"),
]


@pytest.mark.parametrize(("defense", "message"), BAD_DEFENSES)
def test_bad_defense_kwargs_exit_2_before_the_first_defense_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], defense: dict[str, Any], message: str
) -> None:
    # Main: the mean trained first, then a traceback (or exit 2 with the mean's directory written).
    code, out = _run(tmp_path, tiny_toml(**ATTACKED, defense=[{"rule": "mean"}, defense]))
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert _trained(out) == []


@pytest.mark.parametrize("rule", ["krumm", "mean"])
def test_unknown_rule_is_reported_as_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str
) -> None:
    # Main: two defenses with the same unknown name were reported as "duplicate labels".
    text = tiny_toml() + f'\n[[defense]]\nrule = "{rule}"\n[[defense]]\nrule = "krumm"\n'
    text = text.replace('[[defense]]\nrule = "mean"\n', "", 1)
    code, _ = _run(tmp_path, text)
    err = capsys.readouterr().err
    assert code == 2 and "defense.rule: got 'krumm'; want one of" in err


def test_config_path_that_is_a_directory_or_not_utf8_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path)]) == 2
    assert "which is a directory" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "\xff\xfe"\n')
    assert main(["run", str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_every_library_error_family_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dp.errors import PrivacyConfigError
    from protocols.ckks.params import CKKSParameterError
    from secagg.errors import EncodingError, SecAggError

    for e in (PrivacyConfigError("x"), SecAggError("x"), EncodingError("x"), CKKSParameterError("x")):
        assert is_library_error(e), type(e)
    assert not is_library_error(TypeError("a bug")) and not is_library_error(KeyboardInterrupt())


def test_library_error_mid_run_is_one_line_and_the_run_is_marked_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from secagg.errors import EncodingError

    runmod = sys.modules["fedsec.run"]  # the module (fedsec.run is also the function)
    real = runmod.simulate
    calls: list[int] = []

    def second_fails(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise EncodingError("got a value outside the field\nsecond line; want ...")
        return real(*a, **kw)

    monkeypatch.setattr(runmod, "simulate", second_fails)
    code, out = _run(tmp_path, tiny_toml(defense=[{"rule": "mean"}, {"rule": "median"}]))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "second line" in err
    assert (out / "INCOMPLETE").is_file() and not (out / "report.md").exists()
    monkeypatch.setattr(runmod, "simulate", real)
    assert _run(tmp_path, tiny_toml(defense=[{"rule": "mean"}, {"rule": "median"}]))[0] == 0
    assert not (out / "INCOMPLETE").exists() and (out / "report.md").is_file()
