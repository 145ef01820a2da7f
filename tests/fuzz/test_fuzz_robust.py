"""Fuzz: every registered rule and pre-aggregator on adversarial stacks.

Contract: a :class:`robust.RobustError`, or a finite output of the stack's dtype that passes the
reference: the coordinate-wise rules equal a float64 numpy reference on the finite rows; every other
output lies in the coordinate box of the finite rows (0 included for the rules that shrink towards
the origin), the smallest set that contains every convex combination a rule may return.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st

import robust

HUGE = [1e30, -1e30, 3e38, -3e38, 1e200, -1e200, 1e308, -1e308, 6e4, 1e-30, 0.0]
NOT_FINITE = [float("nan"), float("inf"), float("-inf")]
SHRINK = {"clip", "centered_clipping", "fltrust", "sign_majority"}  # may leave the rows' box


@st.composite
def stacks(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(["float32", "float64", "float16"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(n, d)) * draw(st.sampled_from([1.0, 1e-3, 1e3]))
    for _ in range(draw(st.integers(0, n))):  # huge or tiny finite rows / entries
        i, v = draw(st.integers(0, n - 1)), draw(st.sampled_from(HUGE))
        if draw(st.booleans()):
            x[i] = v
        else:
            x[i, draw(st.integers(0, d - 1))] = v
    for _ in range(draw(st.integers(0, 2))):  # non-finite entries
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(st.sampled_from(NOT_FINITE))
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    return {
        "x": x,
        "f": draw(st.integers(0, 4)),
        "grad": draw(st.booleans()),
        "bigendian": draw(st.booleans()),
        "as_numpy": draw(st.booleans()),
    }


def _build(kind: str, name: str, f: int) -> Any:
    registry = robust.AGGREGATORS if kind == "rule" else robust.PRE_AGGREGATORS
    kw: dict[str, Any] = {}
    params = registry.get(name).__init__.__code__.co_varnames  # type: ignore[misc]
    if "f" in params:
        kw["f"] = f
    if "seed" in params:
        kw["seed"] = 0
    if name == "clip":
        kw["c"] = 1.0
    return registry.make(name, **kw)


def _input(case: dict[str, Any]) -> Any:
    x = case["x"]
    if case["as_numpy"]:
        return x.astype(x.dtype.newbyteorder(">")) if case["bigendian"] else x
    t = torch.from_numpy(x.copy())
    return t.requires_grad_(True) if case["grad"] else t


def _reference(name: str, finite: np.ndarray, f: int) -> np.ndarray | None:
    """float64 reference of the coordinate-wise rules on the finite rows (None: no closed form)."""
    xs = np.sort(finite.astype(np.float64), axis=0)
    n = xs.shape[0]
    if name == "median":
        lo, hi = xs[(n - 1) // 2], xs[n // 2]
        return lo / 2 + hi / 2
    if name == "trimmed_mean" and n > 2 * f:
        kept = xs[f : n - f]
        return (kept / kept.shape[0]).sum(axis=0)
    if name == "mean":
        return (xs / n).sum(axis=0)
    return None


def _check(kind: str, name: str, case: dict[str, Any], f_eff: int) -> Any:
    x = case["x"]
    finite = x[np.isfinite(x).all(axis=1)].astype(np.float64)

    def check(out: torch.Tensor) -> bool:
        if not isinstance(out, torch.Tensor) or out.dtype != torch.from_numpy(x[:1].copy()).dtype:
            return False
        if out.requires_grad or not bool(torch.isfinite(out).all()):
            return False
        o = out.detach().to(torch.float64).numpy()
        big = float(np.abs(finite).max()) if finite.size else 0.0
        tol = 1e-3 * max(big, 1e-30) if x.dtype == np.float16 else 1e-5 * max(big, 1e-300)
        # Non-finite rows are dropped as Byzantine: the rule runs with f - n_bad on the rest.
        f_left = max(f_eff - (x.shape[0] - finite.shape[0]), 0)
        ref = _reference(name, finite, f_left) if kind == "rule" else None
        if ref is not None and np.all(np.isfinite(ref)):
            return bool(np.all(np.abs(o - ref) <= tol + 1e-5 * np.abs(ref)))
        pts = np.vstack([finite, np.zeros((1, x.shape[1]))]) if name in SHRINK else finite
        if name == "sign_majority":
            return bool(np.all(np.abs(o) <= 1.0))
        if name == "fltrust":
            return True  # output scaled to ||root||: finiteness is the contract
        lo, hi = pts.min(axis=0) - tol, pts.max(axis=0) + tol
        return bool(np.all((o >= lo[None] if o.ndim == 2 else o >= lo) & (o <= hi)))

    return check


@FUZZ
@given(
    case=stacks(),
    target=st.sampled_from(
        [("rule", r) for r in robust.AGGREGATORS.names()]
        + [("pre", p) for p in robust.PRE_AGGREGATORS.names()]
    ),
)
def test_rules_and_pre_aggregators_on_adversarial_stacks(
    case: dict[str, Any], target: tuple[str, str]
) -> None:
    kind, name = target
    f = case["f"]
    kw: dict[str, Any] = {}
    if name == "fltrust":
        kw["root"] = torch.ones(case["x"].shape[1], dtype=torch.from_numpy(case["x"][:1].copy()).dtype)

    def call() -> Any:
        return _build(kind, name, f)(_input(case), **kw)

    with np.errstate(all="ignore"):
        res, detail = outcome("robust", call, (robust.RobustError,), _check(kind, name, case, f))
    expect("robust", res, detail, (target, case))
