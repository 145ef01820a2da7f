"""Privacy accounting: a thin wrapper over Opacus's standalone accountants.

The math stays in Opacus (``opacus.accountants.RDPAccountant``: Mironov 2017, Mironov, Talwar and
Zhang 2019, for the subsampled Gaussian mechanism; ``PRVAccountant``: Gopi, Lee and Wutschitz 2021).
This module only validates inputs, keeps the composition history and builds the privacy statement
every mechanism reports.

Composition: ``steps`` applications of the Poisson-subsampled Gaussian mechanism with noise multiplier
``z`` (noise std / L2 sensitivity) and sampling rate ``q`` are recorded as one history entry
``(z, q, steps)``; consecutive entries with equal ``(z, q)`` merge (:func:`compose`).

Check value (the TFF DP tutorial, NOTES.md): RDP with q = 120/3383, z = 1.2 and 100 steps gives
epsilon of about 1.99 at delta = 1e-5.

>>> acc = Accountant("rdp")
>>> acc.step(noise_multiplier=1.2, sample_rate=120 / 3383, steps=100)
>>> round(acc.epsilon(1e-5), 2)
1.99
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import TYPE_CHECKING, Any, Literal

from dp.errors import AccountingError, PrivacyConfigError

#: Memory bound of one PRV epsilon computation. Opacus discretizes the privacy loss on a grid of
#: ``2 L / mesh`` points (``mesh = eps_error / sqrt(T log(12 / delta_error) / 2)``); its peak was
#: measured at 67 bytes per point and history entry (tracemalloc, 115k to 253k points). Larger grids
#: (z = 0.2, q = 0.2, 2736 steps, delta = 0.2: 255 million points, ~17 GB) are refused up front.
PRV_MAX_BYTES = 2**30
PRV_BYTES_PER_POINT = 72
#: Exceptions Opacus's numerics raise on extreme (valid) parameters, reported as AccountingError.
_OPACUS_FAILURES = (ArithmeticError, ValueError, MemoryError, RuntimeError)

#: Below this noise multiplier epsilon is reported as ``inf`` (a valid, if vacuous, bound): Opacus's
#: RDP series do not converge there (z = 1.5e-161 at q = 1e-9 ran past 60 s).
Z_MIN = 1e-6

AccountantKind = Literal["rdp", "prv"]
KINDS: tuple[str, ...] = ("rdp", "prv")
HistoryEntry = tuple[float, float, int]


def check_noise_multiplier(z: float, name: str = "noise_multiplier") -> float:
    """Validate a noise multiplier: a finite float >= 0 (0 means no noise, epsilon = inf)."""
    if isinstance(z, bool) or not isinstance(z, int | float) or not math.isfinite(z) or z < 0:
        raise PrivacyConfigError(f"got {name}={z!r}; want a finite number >= 0")
    return float(z)


def check_sample_rate(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, int | float) or not (0.0 < q <= 1.0):
        raise PrivacyConfigError(f"got sample_rate={q!r}; want 0 < sample_rate <= 1")
    return float(q)


def check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not (0.0 < delta < 1.0):
        raise PrivacyConfigError(f"got delta={delta!r}; want 0 < delta < 1")
    return float(delta)


def compose(history: list[HistoryEntry], z: float, q: float, steps: int = 1) -> list[HistoryEntry]:
    """Return ``history`` with ``steps`` more applications of the (z, q) mechanism appended.

    Pure: the input list is not modified. Equal consecutive ``(z, q)`` merge into one entry, so the
    history stays short for a fixed mechanism (Opacus's accountants sum per-entry costs either way).
    """
    z = check_noise_multiplier(z)
    q = check_sample_rate(q)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrivacyConfigError(f"got steps={steps!r}; want an int >= 1")
    out = list(history)
    if out and out[-1][0] == z and out[-1][1] == q:
        out[-1] = (z, q, out[-1][2] + steps)
    else:
        out.append((z, q, steps))
    return out


if TYPE_CHECKING:
    from opacus.accountants import PRVAccountant, RDPAccountant


@functools.cache
def _bounded_prv() -> type[PRVAccountant]:
    """Opacus's PRV accountant with the grid size checked before anything is allocated.

    Opacus is imported here, on first use, not with this module: it takes seconds to import, and
    ``import protocols`` (every Flower ClientApp process) reaches this module without accounting.
    """
    from opacus.accountants import PRVAccountant

    class _BoundedPRV(PRVAccountant):
        def _get_domain(self, *args: Any, **kwargs: Any) -> Any:
            domain = super()._get_domain(*args, **kwargs)
            need = int(domain.size) * PRV_BYTES_PER_POINT * max(len(self.history), 1)
            if need > PRV_MAX_BYTES:
                raise AccountingError(
                    f"PRV accountant: got a grid of {int(domain.size):,} points (~{need / 2**30:.1f} GiB) "
                    f"for history {self.history}; want at most {PRV_MAX_BYTES / 2**30:.0f} GiB "
                    "(use the rdp accountant, or a smaller delta)"
                )
            return domain

    return _BoundedPRV


class Accountant:
    """Privacy accountant for compositions of Poisson-subsampled Gaussian mechanisms.

    Args:
        kind: ``"rdp"`` (Renyi DP, a valid upper bound; Opacus's default orders) or ``"prv"``
            (privacy random variables: numerically tighter, with a small stated error
            ``eps_error=0.01``).

    Attributes:
        kind: the accountant's name.
        history: list of ``(noise_multiplier, sample_rate, steps)``, oldest first.
    """

    def __init__(self, kind: AccountantKind = "rdp") -> None:
        if kind not in KINDS:
            raise PrivacyConfigError(f"got accountant kind={kind!r}; want one of {KINDS}")
        self.kind: str = kind
        self.history: list[HistoryEntry] = []

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` applications of the mechanism with multiplier z and sampling rate q."""
        self.history = compose(self.history, noise_multiplier, sample_rate, steps)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta``; 0 before any step, ``inf`` if any step had z < :data:`Z_MIN`.

        Never negative: for a large delta the accountants' conversions can return a negative number
        (RDP: ``eps = rdp(alpha) + log(1/delta)/(alpha - 1) ...`` with ``log(1/delta)`` small), which
        is no stronger guarantee than (0, delta)-DP; it is clamped at 0. PRV refuses grids above
        :data:`PRV_MAX_BYTES` and any failure of Opacus's numerics is an :class:`AccountingError`.
        """
        delta = check_delta(delta)
        if not self.history:
            return 0.0
        if any(z < Z_MIN for z, _, _ in self.history):
            return math.inf
        from opacus.accountants import RDPAccountant  # lazy: see _bounded_prv

        acc: RDPAccountant | PRVAccountant = RDPAccountant() if self.kind == "rdp" else _bounded_prv()()
        acc.history = list(self.history)
        try:
            eps = float(acc.get_epsilon(delta))
        except AccountingError:
            raise
        except _OPACUS_FAILURES as e:
            raise AccountingError(
                f"{self.kind} accountant: got {type(e).__name__} ({e}) for history {self.history} at "
                f"delta={delta}; want parameters its numerics handle"
            ) from e
        if math.isnan(eps):
            raise AccountingError(
                f"{self.kind} accountant: got epsilon=nan for history {self.history} at delta={delta}"
            )
        return max(eps, 0.0)

    def epsilon_after(
        self, delta: float, noise_multiplier: float, sample_rate: float, steps: int = 1
    ) -> float:
        """Epsilon that would be spent after ``steps`` more steps (for budget checks); state unchanged."""
        trial = Accountant(self.kind)  # type: ignore[arg-type]
        trial.history = compose(self.history, noise_multiplier, sample_rate, steps)
        return trial.epsilon(delta)

    def reset(self) -> None:
        self.history = []

    def __repr__(self) -> str:
        return f"Accountant(kind={self.kind!r}, history={self.history!r})"


def noise_for_epsilon(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, kind: AccountantKind = "rdp"
) -> float:
    """The noise multiplier z for which ``steps`` steps at rate q spend about ``target_epsilon``
    (Opacus's ``get_noise_multiplier``: a bisection on z with tolerance 0.01 in epsilon, rounded up so
    that the spent epsilon does not exceed the target). For sweeps over a target epsilon."""
    if (
        isinstance(target_epsilon, bool)
        or not isinstance(target_epsilon, int | float)
        or not target_epsilon > 0
    ):
        raise PrivacyConfigError(f"got target_epsilon={target_epsilon!r}; want a number > 0")
    if kind not in KINDS:
        raise PrivacyConfigError(f"got accountant kind={kind!r}; want one of {KINDS}")
    compose([], 1.0, sample_rate, steps)  # validates q and steps
    delta = check_delta(delta)
    if math.isinf(target_epsilon):
        return 0.0  # an infinite budget needs no noise (z = 0 spends epsilon = inf)
    from opacus.accountants.utils import get_noise_multiplier  # lazy: see _bounded_prv

    with warnings.catch_warnings():
        # The bisection probes tiny multipliers, where Opacus warns that the best RDP order is the
        # largest one; those probes are discarded, so the warning says nothing about the answer.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        try:
            z = get_noise_multiplier(
                target_epsilon=float(target_epsilon),
                target_delta=delta,
                sample_rate=float(sample_rate),
                steps=int(steps),
                accountant=kind,
            )
        except _OPACUS_FAILURES as e:
            raise AccountingError(
                f"noise_for_epsilon: got {type(e).__name__} ({e}) for target_epsilon={target_epsilon}, "
                f"delta={delta}, q={sample_rate}, steps={steps}; want parameters the bisection handles"
            ) from e
    return float(z)


def statement(
    *,
    epsilon: float,
    delta: float,
    accountant: str,
    mechanism: str,
    sampling: str,
    level: Literal["sample", "user"],
    **extra: Any,
) -> dict[str, Any]:
    """The privacy statement every mechanism reports (keys: epsilon, delta, accountant, mechanism,
    sampling, level, plus mechanism-specific extras such as ``guarantee``)."""
    if level not in ("sample", "user"):
        raise PrivacyConfigError(f"got level={level!r}; want 'sample' or 'user'")
    return {
        "epsilon": float(epsilon),
        "delta": float(delta),
        "accountant": accountant,
        "mechanism": mechanism,
        "sampling": sampling,
        "level": level,
        **extra,
    }
