"""Fault injection: every scenario ends in the exact sum over the honest survivors or a typed abort."""

from __future__ import annotations

import random

import numpy as np
import pytest

from secagg import ProtocolAbort
from secagg.driver import FAULT_KINDS, PHASES, Fault, run_round
from secagg.graph import min_threshold

N_SCENARIOS = 520

# faults after which the client's message of that phase never reaches the server intact
_LOSES_UPLINK = {"tamper_up", "tamper_down", "bad_pubkey", "duplicate_id"}


def _scenario(seed: int) -> dict:
    r = random.Random(seed)
    n = r.randint(4, 8)
    active = r.random() < 0.5
    k = r.choice([None, None, 2, 4]) if n >= 6 else None
    if k is not None and k >= n - 1:
        k = None
    size = n if k is None else k + 1
    t = r.randint(min_threshold(size, 0, active=True) if active else max(1, size // 2), size)
    phases = [p for p in PHASES if active or p != "consistency_check"]
    drops = {c: r.choice(phases) for c in range(n) if r.random() < 0.12}
    faults = []
    for _ in range(r.randint(1, 3)):
        kind = r.choice(FAULT_KINDS)
        if kind == "bad_pubkey":
            phase = "advertise_keys"
        elif kind == "tamper_down":
            phase = r.choice(phases[1:])
        elif kind == "inconsistent_survivors":
            phase = "consistency_check" if active else "unmasking"
        else:
            phase = r.choice(phases)
        faults.append(Fault(kind, phase, r.randrange(n), r.randrange(1 << 16)))
    bits = r.choice([8, 16, 32, 40])
    d = r.randint(1, 6)
    x = np.array([[r.randrange(1 << bits) for _ in range(d)] for _ in range(n)], dtype=np.uint64)
    return {"x": x, "t": t, "k": k, "active": active, "drops": drops, "faults": faults, "bits": bits}


def _check(seed: int) -> str:
    s = _scenario(seed)
    x, bits, t = s["x"], s["bits"], s["t"]
    n = x.shape[0]
    try:
        out = run_round(
            x, t=t, bits=bits, k=s["k"], active=s["active"], dropouts=s["drops"], faults=s["faults"]
        )
    except ProtocolAbort:
        return "abort"
    want = np.zeros(x.shape[1], dtype=np.uint64)
    for c in out.survivors:
        want = (want + x[c]) & np.uint64((1 << bits) - 1)
    assert (out.sum == want).all(), f"seed {seed}: wrong sum over {out.survivors}"
    assert len(out.survivors) >= max(t, (n + 1) // 2)  # the survivor floor
    # nobody whose masked input never arrived intact is counted as a survivor
    early = PHASES[: PHASES.index("masked_input") + 1]
    for c in out.survivors:
        assert not (c in s["drops"] and s["drops"][c] in early), f"seed {seed}: dropped client {c} counted"
        lost = [f for f in s["faults"] if f.client == c and f.kind in _LOSES_UPLINK and f.phase in early]
        lost = [f for f in lost if not (f.kind == "duplicate_id" and f.other % n == c)]
        assert not lost, f"seed {seed}: client {c} counted although its message was destroyed by {lost}"
    # the server never holds t shares of both secrets of one client (needs 2t > m for m share holders)
    if 2 * t > (n if s["k"] is None else s["k"] + 1):
        for v, (seeds, mkeys) in out.revealed.items():
            assert not (seeds >= t and mkeys >= t), f"seed {seed}: both secrets of client {v} revealed"
    return "sum"


@pytest.mark.slow
def test_randomized_fault_scenarios() -> None:
    outcomes = [_check(seed) for seed in range(N_SCENARIOS)]
    # both outcomes occur: the scenarios are neither all fatal nor all harmless
    assert outcomes.count("sum") > N_SCENARIOS // 4
    assert outcomes.count("abort") > 10


def test_randomized_fault_scenarios_quick() -> None:
    outcomes = [_check(seed) for seed in range(10_000, 10_030)]
    assert "sum" in outcomes


@pytest.mark.parametrize("kind", ["tamper_up", "duplicate_id", "bad_pubkey"])
def test_a_destroyed_advertisement_excludes_only_that_client(kind: str) -> None:
    x = np.arange(12, dtype=np.uint64).reshape(6, 2)
    out = run_round(x, t=3, faults=[Fault(kind, "advertise_keys", 2, 4)])
    assert out.survivors == [0, 1, 3, 4, 5]
    assert out.sum.tolist() == (x[[0, 1, 3, 4, 5]].sum(axis=0)).tolist()
    assert out.rejected and out.rejected[0][1] == "server"


@pytest.mark.parametrize("phase", ["share_keys", "masked_input", "unmasking"])
def test_replay_and_reorder_are_harmless(phase: str) -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    faults = [Fault("replay", phase, 1), Fault("reorder", phase, 3)]
    out = run_round(x, t=3, faults=faults)
    assert out.survivors == [0, 1, 2, 3, 4]
    assert out.sum.tolist() == x.sum(axis=0).tolist()
    assert any("StageError" in r[2] for r in out.rejected)


def test_tampered_masked_input_is_rejected_not_summed() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    out = run_round(x, t=3, faults=[Fault("tamper_up", "masked_input", 4, 1234)])
    assert out.survivors == [0, 1, 2, 3]
    assert out.sum.tolist() == x[:4].sum(axis=0).tolist()
    assert any("AuthenticationError" in r[2] for r in out.rejected)


def test_inconsistent_survivor_lists_leak_without_an_honest_majority_threshold() -> None:
    """The privacy check above can fail: with t <= n/2 a lying server gets both secrets of client 5."""
    x = np.zeros((6, 1), dtype=np.uint64)
    faults = [Fault("inconsistent_survivors", "unmasking", c, 5) for c in (0, 1, 2)]
    out = run_round(x, t=3, faults=faults)
    seeds, mkeys = out.revealed[5]
    assert seeds >= 3 and mkeys >= 3


def test_active_consistency_check_stops_the_lie() -> None:
    x = np.arange(6, dtype=np.uint64).reshape(6, 1)
    faults = [Fault("inconsistent_survivors", "consistency_check", c, 5) for c in (0, 1)]
    out = run_round(x, t=4, active=True, faults=faults)
    assert out.revealed[5][1] == 0  # no share of client 5's mask key left any client
    assert out.sum.tolist() == [int(x.sum())]
