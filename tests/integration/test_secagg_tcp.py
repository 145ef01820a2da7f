"""Secure aggregation over loopback TCP with every client in its own process."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.transport import run_local_round


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("active", [False, True])
def test_six_client_processes_with_dropouts(active: bool) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2**32, size=(6, 2000), dtype=np.uint64)
    drops = {2: "masked_input", 5: "unmasking"}
    res, stages = run_local_round(x, t=4, active=active, dropouts=drops, stage_timeout=60)
    assert res.survivors == [0, 1, 3, 4, 5]
    want = np.zeros(2000, dtype=np.uint64)
    for c in res.survivors:
        want = (want + x[c]) & np.uint64(2**32 - 1)
    assert (res.sum == want).all()
    assert [stages[i] for i in (0, 1, 3, 4)] == ["done"] * 4
    assert stages[2] == "shared"
