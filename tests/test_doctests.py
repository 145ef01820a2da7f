"""Every docstring example in the five packages runs (one collector for all of them)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["secagg", "robust", "dp", "protocols", "fedsec"]


def _modules_with_examples() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if ">>>" not in path.read_text():
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


MODULES = _modules_with_examples()


def test_the_collector_finds_examples_in_every_package() -> None:
    assert {m.split(".")[0] for m in MODULES} >= {"robust", "dp", "fedsec"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0, f"{name} has '>>>' in its source but no collected example"
    assert result.failed == 0
