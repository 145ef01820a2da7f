"""The flower extra stays optional: only fedsec/flower imports flwr, and without flwr the Flower
engine fails with a typed error naming the extra (these tests need no flwr)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import fedsec
from fedsec.config import Config
from fedsec.errors import ConfigError, MissingExtraError

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data": {"dataset": "synthetic", "n_clients": 4, "min_samples": 2},
    "model": {"name": "logreg"},
    "train": {"rounds": 1},
}


def _flwr_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        out += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "flwr"]
    return out


def test_only_fedsec_flower_imports_flwr() -> None:
    pkgs = ["fedcore", "secagg", "robust", "dp", "protocols", "fedsec"]
    files = [f for pkg in pkgs for f in sorted((ROOT / pkg).rglob("*.py"))]
    inside = [f for f in files if (ROOT / "fedsec" / "flower") in f.parents]
    outside = [hit for f in files if f not in inside for hit in _flwr_imports(f)]
    assert inside and any(_flwr_imports(f) for f in inside)  # the check sees the flwr imports it bans
    assert not outside, f"flwr imported outside fedsec/flower: {outside}"


def test_missing_flwr_is_a_typed_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "flwr" or m.startswith(("flwr.", "fedsec.flower"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flwr", None)  # import flwr raises ImportError
    with pytest.raises(MissingExtraError, match=r"fedsec\[flower\]"):
        importlib.import_module("fedsec.flower")
    with pytest.raises(MissingExtraError, match="got no flwr module"):
        fedsec.run(Config.from_dict(TINY), write=False, engine="flower")


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"engine: got 'ray'; want one of \['inprocess', 'flower'\]"):
        fedsec.run(Config.from_dict(TINY), write=False, engine="ray")
