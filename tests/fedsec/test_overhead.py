"""Overhead inside every run: ``overhead.jsonl`` per round, the report's "Overhead and leakage"
section and the accuracy-against-overhead figure."""

from __future__ import annotations

import json
from pathlib import Path

from sim_helpers import tiny

from fedsec.run import run


def test_a_run_logs_overhead_per_round_and_reports_it(tmp_path: Path) -> None:
    cfg = tiny(
        train={"rounds": 3},
        output={"plots": True},
        defense=[
            {"rule": "mean", "mechanism": "plain"},
            {"rule": "mean", "mechanism": "secagg", "mechanism_kwargs": {"clip": 4.0, "dropout": 0.1}},
        ],
    )
    res = run(cfg, out=tmp_path / "r", progress=False)
    by_label = {u.label: u for u in res.units}
    secure = by_label["mean @ secagg"]
    assert secure.run_dir is not None
    lines = [json.loads(x) for x in (Path(secure.run_dir) / "overhead.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2, 3]
    for x in lines:
        assert sorted(x["accepted"] + x["rejected"]) == sorted(x["cohort"]) and len(x["cohort"]) == 8
        assert x["meter"]["client/masked_input"]["bytes_sent"] > 0
    # Per-round meters add up to the run's totals.
    total = sum(x["meter"]["server/unmasking"]["bytes_received"] for x in lines)
    assert total == secure.summary["protocol_meter"]["server/unmasking"]["bytes_received"]
    # With 10% dropout over 24 client-rounds some client is left out (seeded: the same draw every run).
    assert any(x["rejected"] for x in lines)
    unit_md = (Path(secure.run_dir) / "report.md").read_text()
    assert "## Overhead and leakage" in unit_md and "sum_of_survivors" in unit_md
    root_md = (tmp_path / "r" / "report.md").read_text()
    assert "### mean @ secagg (secagg)" in root_md and "### mean @ plain (plain)" in root_md
    assert "| server | aggregate, statistic, updates |" in root_md
    assert (tmp_path / "r" / "accuracy_overhead.png").stat().st_size > 1000
