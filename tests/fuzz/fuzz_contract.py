"""The contract of the bad-input campaign, and its tally.

Every fuzzed call ends in one of:

- ``ok``: a result that passes the area's reference check (finite, equal to the reference);
- ``typed``: the package's typed error (what the caller can catch and report);
- ``untyped``: any other exception (a crash);
- ``wrong``: a result that fails the reference check (silently wrong or non-finite);
- ``hung``: the call ran past its time budget (checked with ``SIGALRM`` where available).

Tests assert ``ok`` or ``typed``. With ``FEDSEC_FUZZ_TALLY=1`` they record instead of asserting,
and the session prints the campaign table (tried / typed / untyped / silently wrong / hung per area).
``FEDSEC_FUZZ_EXAMPLES`` sets the Hypothesis budget per test (default 5: the default test run stays
fast).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FEDSEC_FUZZ_EXAMPLES", "5"))
#: The suite's Hypothesis settings: the budget, no deadline (rounds vary in time), reproducible.
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
TALLY_MODE = os.environ.get("FEDSEC_FUZZ_TALLY", "") == "1"
OUTCOMES = ("typed", "untyped", "wrong", "hung")
TALLY: dict[str, Counter[str]] = defaultdict(Counter)


class _Hung(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the code swallows it."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Hung


def outcome(
    area: str,
    call: Callable[[], Any],
    typed: tuple[type[BaseException], ...],
    check: Callable[[Any], bool],
    budget_s: float = 20.0,
) -> tuple[str, str]:
    """Run ``call`` under the contract; record and return ``(outcome, detail)``."""
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, budget_s)
    t0 = time.perf_counter()
    try:
        try:
            result = call()
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _Hung:
        res, detail = "hung", f"ran past {budget_s} s"
    except typed as e:
        res, detail = "typed", f"{type(e).__name__}: {e}"
    except Exception as e:
        res, detail = "untyped", f"{type(e).__name__}: {e}"
    else:
        try:
            good = bool(check(result))
        except Exception as e:  # the check itself choked on the result: not a valid result
            good, result = False, f"{type(e).__name__} in the check: {e}"
        res, detail = ("ok", "") if good else ("wrong", f"result {result!r}"[:300])
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    if res == "ok" and time.perf_counter() - t0 > budget_s:
        res, detail = "hung", f"took {time.perf_counter() - t0:.1f} s"
    TALLY[area]["tried"] += 1
    TALLY[area][res] += 1
    return res, detail


def expect(area: str, res: str, detail: str, case: Any) -> None:
    """The test's assertion (skipped in tally mode)."""
    if not TALLY_MODE:
        assert res in ("ok", "typed"), f"{area}: {res}: {detail}\ncase: {case!r}"[:2000]


def table() -> str:
    """The campaign table, one row per area."""
    head = "| area | tried | typed | untyped | silently wrong | hung |\n|---|---|---|---|---|---|"
    rows = [
        f"| {a} | {c['tried']} | {c['typed']} | {c['untyped']} | {c['wrong']} | {c['hung']} |"
        for a, c in sorted(TALLY.items())
    ]
    return "\n".join([head, *rows])
