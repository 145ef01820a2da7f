"""Fuzz: config mutations through the CLI (``fedsec run``), one hostile value per run.

Contract: exit code 2 with one ``fedsec: error:`` line (typed), or exit 0 having accepted only
finite values (a run that accepts ``inf``/``nan`` or a seed past 2^31 - 1 is silently wrong)."""

from __future__ import annotations

import math
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st

from fedsec.cli import main

BASE = """name = "fuzz"
[data]
dataset = "synthetic"
n_clients = 6
partition = "iid"
min_samples = 4
options = {n_samples = 200, n_features = 4, n_classes = 3}
[model]
name = "logreg"
[train]
rounds = 1
threads = 1
[attack]
name = "alie"
f = 1
[eval]
every = 1
[output]
plots = false
[[defense]]
rule = "mean"
[[defense]]
rule = "%s"
"""

KEYS = [
    "train.lr", "train.server_lr", "train.momentum", "train.weight_decay", "train.seed",
    "train.batch_size", "train.rounds", "train.clients_per_round", "train.device", "data.beta",
    "data.n_clients", "attack.strength", "attack.f", "attack.backdoor_target", "dp.noise_multiplier",
    "dp.clip", "dp.delta", "dp.budget_epsilon", "eval.every", "attack.backdoor_fraction",
]  # fmt: skip
VALUES = [
    "inf",
    "-inf",
    "nan",
    "-1",
    "0",
    "1e308",
    "9223372036854775807",
    "2147483648",
    '"x"',
    "[1]",
    "true",
    "99",
]
RULES = ["median", "multi_krum", "krum", "centered_clipping", "dnc", "bulyan", "krumm", "trimmed_mean"]


class Exit2(Exception):
    """``fedsec`` exited with code 2 and one error line: the CLI's typed refusal."""


def _accepted_bad(key: str, value: str) -> bool:
    try:
        v = float(value)
    except ValueError:
        return False
    return not math.isfinite(v) or (key.endswith("seed") and v > 2**31 - 1)


@FUZZ
@given(key=st.sampled_from(KEYS), value=st.sampled_from(VALUES), rule=st.sampled_from(RULES),
       extra=st.sampled_from(["", 'attack.data="backdoor"', 'dp.mode="user"']))  # fmt: skip
def test_config_mutations(key: str, value: str, rule: str, extra: str) -> None:
    def call() -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "c.toml"
            cfg.write_text(BASE % rule)
            args = ["run", str(cfg), "--quiet", "--out", str(Path(tmp) / "out"), "--set", f"{key}={value}"]
            if extra:
                args += ["--set", extra]
            err, out = StringIO(), StringIO()
            with redirect_stderr(err), redirect_stdout(out):
                code = main(args)
            text = err.getvalue()
            if code == 2 and text.startswith("fedsec: error: ") and len(text.strip().splitlines()) == 1:
                raise Exit2(text)
            return code, text

    def check(result: tuple[int, str]) -> bool:
        return result[0] == 0 and not _accepted_bad(key, value)

    res, detail = outcome("cli", call, (Exit2,), check, budget_s=120.0)
    expect("cli", res, detail, (key, value, rule, extra))
