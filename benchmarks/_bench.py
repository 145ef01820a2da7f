"""What every benchmark script shares: its import path and its median-of-repeats timers.

Each script imports this module (``import _bench``) before any package of the repository.
Run as ``python benchmarks/X.py``, a script has this folder at the head of ``sys.path``, where the
scripts named after the packages they measure (secagg.py, dp.py, ...) would shadow those packages.
Importing this module drops that entry and puts the repository root first instead, so that the
checkout the script runs from is measured, not an installed copy.

Timings are wall seconds (``time.perf_counter``); other processes may share the CPU, and the median
over repeats damps that noise, not all of it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (_HERE, ROOT)]


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls.

    The warm-up calls absorb one-time costs (thread pools, the allocator, lazy imports and kernels).
    """
    return interleaved([fn], repeats, warmup)[0]


def interleaved(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 1) -> list[float]:
    """Median wall seconds of each of ``fns``, timed round-robin so that load drift hits all alike.

    Each repeat calls every function once, in order; ``warmup`` untimed rounds come first.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive; got {repeats}; want >= 1")
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
