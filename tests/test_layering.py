"""DESIGN.md's dependency direction, enforced by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BANNED = {
    "fedcore": {"secagg", "robust", "dp", "protocols", "fedsec"},
    "secagg": {"robust", "dp", "protocols", "fedsec"},
    "robust": {"secagg", "dp", "protocols", "fedsec"},
    "dp": {"secagg", "robust", "protocols", "fedsec"},
    "protocols": {"fedsec"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("pkg", sorted(BANNED))
def test_package_imports_follow_design(pkg: str) -> None:
    files = sorted((ROOT / pkg).rglob("*.py"))
    assert files, f"package {pkg} has no modules"
    bad = [
        f"{f.relative_to(ROOT)}:{line} imports {name}"
        for f in files
        for line, name in _imports(f)
        if name.split(".")[0] in BANNED[pkg]
    ]
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import fedsec.cli\nfrom protocols.base import Meter\n")
    names = [n for _, n in _imports(bad)]
    assert names == ["fedsec.cli", "protocols.base"]
