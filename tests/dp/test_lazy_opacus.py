"""Opacus is imported on first use, not by ``import protocols`` (every Flower ClientApp process).

Opacus takes seconds to import; the accountants (dp.accounting, dp.distributed) and ``dp.PrivateClient``
load it when they are used. Each check runs in a fresh interpreter, where nothing is imported yet.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_protocols_and_dp_leaves_opacus_unloaded_until_used() -> None:
    out = _run(
        "import sys, protocols, dp, protocols.secagg_ddp\n"
        "print('opacus' in sys.modules)\n"
        "acc = dp.Accountant('rdp'); acc.step(1.2, 120 / 3383, 100)\n"
        "print(round(acc.epsilon(1e-5), 2), 'opacus' in sys.modules)\n"
        "print(dp.PrivateClient.__module__)\n"
    )
    assert out.splitlines() == ["False", "1.99 True", "dp.client"]


def test_dp_has_no_other_lazy_names() -> None:
    import dp

    assert not hasattr(dp, "NoSuchName")
    with pytest.raises(AttributeError, match="module 'dp' has no attribute 'NoSuchName'"):
        _ = dp.NoSuchName  # type: ignore[attr-defined]
