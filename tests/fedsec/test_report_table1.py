"""The paper's Table-1 layout: rows (beta block, attack at the calibrated and the worst strength),
columns the defenses, the most damaging attack per block and defense in bold."""

from __future__ import annotations

from typing import Any

import pytest
from sim_helpers import run_summary

from fedsec.report import group_runs, table1_paper, table1_rows


def _run(
    label: str, attack: str, strength: float | None, beta: float, seed: int, acc: float
) -> dict[str, Any]:
    return run_summary(label, attack, strength, beta, seed, acc, dataset="mnist1d")


# accuracy of (defense, attack, strength) at beta 0.5; beta 0.1 is 0.1 lower everywhere
ACC = {
    ("CCLIP", "alie", 0.0): 0.9,
    ("CCLIP", "alie", 2.5): 0.5,  # CCLIP's worst ALIE strength is not the calibrated one
    ("CCLIP", "alie", 8.0): 0.6,
    ("CCLIP", "ipm", 2.5): 0.7,
    ("CCLIP", "ipm", 10.0): 0.8,
    ("DnC", "alie", 0.0): 0.9,
    ("DnC", "alie", 2.5): 0.85,
    ("DnC", "alie", 8.0): 0.88,
    ("DnC", "ipm", 2.5): 0.4,  # for DnC, IPM is the most damaging
    ("DnC", "ipm", 10.0): 0.3,
}
RUNS = [
    _run(d, a, s, b, seed, acc - (0.1 if b == 0.1 else 0.0) + 0.01 * seed)
    for (d, a, s), acc in ACC.items()
    for b in (0.1, 0.5)
    for seed in (0, 1)
]


def test_rows_blocks_and_cells() -> None:
    rows = table1_rows(group_runs(RUNS))
    # mildest beta first, as the paper; per block: ALIE calibrated, ALIE worst, IPM calibrated, IPM worst
    assert [(r["block_label"], r["title"]) for r in rows[:4]] == [
        ("mnist1d (β = 0.5)", "ALIE (z=8)"),
        ("mnist1d (β = 0.5)", "ALIE (worst z)"),
        ("mnist1d (β = 0.5)", "IPM (ε=2.5)"),
        ("mnist1d (β = 0.5)", "IPM (worst ε)"),
    ]
    assert rows[4]["block_label"] == "mnist1d (β = 0.1)" and len(rows) == 8
    cal, worst_alie, _, worst_ipm = rows[:4]
    assert cal["cells"]["CCLIP"]["mean"] == pytest.approx(0.605) and cal["cells"]["CCLIP"]["seeds"] == 2
    assert cal["cells"]["CCLIP"]["std"] == pytest.approx(0.005)
    # worst strength per defense, z = 0 included in the search
    assert worst_alie["cells"]["CCLIP"]["strength"] == 2.5 and worst_alie["cells"]["DnC"]["strength"] == 2.5
    assert worst_ipm["cells"]["DnC"]["strength"] == 10.0 and worst_ipm["cells"]["CCLIP"]["strength"] == 2.5


def test_bold_marks_the_most_damaging_attack_per_block_and_defense() -> None:
    rows = table1_rows(group_runs(RUNS))
    for block in (rows[:4], rows[4:]):
        marked = {d: [r["title"] for r in block if r["cells"][d]["worst"]] for d in ("CCLIP", "DnC")}
        assert marked == {"CCLIP": ["ALIE (worst z)"], "DnC": ["IPM (worst ε)"]}


def test_markdown_layout() -> None:
    md = table1_paper(group_runs(RUNS), defenses=["DnC", "CCLIP"])
    lines = md.splitlines()
    assert lines[0] == "| setting | attack | DnC | CCLIP |"
    assert lines[2] == "| mnist1d (β = 0.5) | ALIE (z=8) | 88.5 ± 0.5 | 60.5 ± 0.5 |"
    assert lines[3] == "|  | ALIE (worst z) | 85.5 ± 0.5 @ z=2.5 | **50.5 ± 0.5 @ z=2.5*** |"
    assert lines[5] == "|  | IPM (worst ε) | **30.5 ± 0.5 @ ε=10*** | 70.5 ± 0.5 @ ε=2.5 |"
    assert lines[6].startswith("| mnist1d (β = 0.1) | ALIE (z=8) |")
    assert "2 seed(s)" in md


def test_other_calibrations_and_attacks_without_strength() -> None:
    runs = [*RUNS, _run("CCLIP", "sign_flip", None, 0.5, 0, 0.2)]
    rows = table1_rows(group_runs(runs), calibrated={"alie": 2.5})
    titles = [r["title"] for r in rows if r["block_label"] == "mnist1d (β = 0.5)"]
    # no calibrated IPM row (its strength is not in `calibrated`); sign_flip has one fixed row
    assert titles == ["ALIE (z=2.5)", "ALIE (worst z)", "IPM (worst ε)", "sign_flip"]
    flip = next(r for r in rows if r["title"] == "sign_flip")
    assert flip["cells"]["CCLIP"]["worst"] and "DnC" not in flip["cells"]
    assert table1_paper([]) == "(no rows)\n"
