"""User-level DP for federated averaging: clipping, central Gaussian noise, adaptive clipping, and
local noise (the other order: noise on each update before the robust rule).

Pure functions (:func:`clip_rows`, :func:`adaptive_clip_update`, :func:`update_noise_multiplier`) carry
the formulas; :class:`DPFedAvg` and :class:`LocalNoise` are thin stateful wrappers around any
aggregation rule ``(n, d) -> (d,)`` (wrap, don't fork).

Sources: McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language Models"
(ICLR 2018) for DP-FedAvg with the fixed-denominator estimator; Andrew, Thakkar, McMahan, Ramaswamy,
"Differentially Private Learning with Adaptive Clipping" (NeurIPS 2021) for the geometric clip update.

>>> agg = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=0.0, expected_clients=4)
>>> [round(v, 4) for v in agg(torch.tensor([[3.0, 4.0], [0.0, 0.5]])).tolist()]  # (0.6, 0.8 + 0.5) / 4
[0.15, 0.325]
>>> agg.privacy_statement(1e-5)["guarantee"]
'proven'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dp._rng import secure_generator
from dp.accounting import (
    Accountant,
    AccountantKind,
    check_delta,
    check_noise_multiplier,
    statement,
)
from dp.errors import BudgetExceededError, PrivacyConfigError
from fedcore import l2_clip_factors, validate

Rule = Callable[[torch.Tensor], torch.Tensor]
SAMPLINGS: tuple[str, ...] = ("poisson", "fixed")


def _positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise PrivacyConfigError(f"got {name}={value!r}; want a finite number > 0")
    return float(value)


def _as_stack(stack: torch.Tensor | np.ndarray, min_rows: int = 1) -> torch.Tensor:
    """The stack through :func:`fedcore.validate.as_stack`, refused with :class:`PrivacyConfigError`."""
    return validate.as_stack(stack, error=PrivacyConfigError, min_rows=min_rows)


def mean_rule(stack: torch.Tensor) -> torch.Tensor:
    """The plain mean over rows: with it, :class:`DPFedAvg` is exactly McMahan et al.'s DP-FedAvg."""
    return stack.mean(dim=0)


mean_rule.name = "mean"  # type: ignore[attr-defined]


def is_mean_rule(rule: object) -> bool:
    """True for :func:`mean_rule` and for any aggregator whose ``name`` attribute is ``"mean"``."""
    return rule is mean_rule or getattr(rule, "name", None) == "mean"


def clip_rows(stack: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each row to L2 norm at most ``clip``: ``x_i * min(1, C / ||x_i||)``.

    Rows with a non-finite entry are replaced by zeros (the contribution of a client that sent
    nothing), so every output row has norm <= C whatever a Byzantine client sends. Rows whose norm
    overflows the dtype are measured again in float64.

    Returns:
        ``(clipped, norms)``; ``norms`` are the input rows' L2 norms (``inf`` for non-finite rows).
    """
    norms = torch.linalg.vector_norm(stack, dim=1)
    bad = ~torch.isfinite(norms)
    x = stack
    if bool(bad.any()):  # rare slow path: NaN/Inf entries or an overflowing norm
        finite = torch.isfinite(stack).all(dim=1)
        x = torch.where(finite[:, None], stack, torch.zeros((), dtype=stack.dtype, device=stack.device))
        wide = torch.linalg.vector_norm(x.double(), dim=1)
        factor64 = l2_clip_factors(wide, clip)
        norms = torch.where(finite, wide, torch.full_like(wide, math.inf)).to(norms.dtype)
        return (x.double() * factor64[:, None]).to(stack.dtype), norms
    factor = l2_clip_factors(norms, clip)
    return x * factor[:, None], norms


def update_noise_multiplier(z: float, count_noise_std: float) -> float:
    """Noise multiplier left for the update when the clipped count is also noised (Andrew et al. 2021).

    Releasing the centered clipped count ``sum_i (b_i - 1/2) + N(0, sigma_b^2)`` (sensitivity 1/2)
    and the clipped sum with multiplier ``z_u`` is one Gaussian mechanism with multiplier ``z`` where
    ``z^-2 = z_u^-2 + (2 sigma_b)^-2``; so ``z_u = (z^-2 - (2 sigma_b)^-2)^(-1/2)``.
    Requires ``2 sigma_b > z``. ``z = 0`` (no privacy) gives 0.
    """
    if z == 0.0:
        return 0.0
    if 2.0 * count_noise_std <= z:
        raise PrivacyConfigError(
            f"got count_noise_std={count_noise_std!r} with noise_multiplier={z!r}; "
            f"want count_noise_std > noise_multiplier / 2"
        )
    return float((z**-2 - (2.0 * count_noise_std) ** -2) ** -0.5)


def centred_clipped_count(norms: torch.Tensor, clip: float) -> float:
    """The centred count of unclipped updates that adaptive clipping releases (Andrew et al. 2021, Sec. 3).

    ``sum_i (b_i - 1/2)`` with ``b_i = [||x_i|| <= C]``: each term is +-1/2, so adding or removing one
    client moves the count by exactly 1/2 (L2 sensitivity 1/2), which is what
    :func:`update_noise_multiplier` assumes. The uncentred count ``sum_i b_i`` has sensitivity 1 and
    would need twice the noise. With ``m`` (public, the fixed denominator) the server recovers the
    fraction as ``(count + noise) / m + 1/2``.

    >>> centred_clipped_count(torch.tensor([0.5, 2.0, 1.0]), 1.0)  # 1/2 - 1/2 + 1/2
    0.5
    """
    b = (norms <= clip).to(torch.float64)
    return float((b - 0.5).sum().item())


def adaptive_clip_update(clip: float, noised_fraction: float, target_quantile: float, lr: float) -> float:
    """Geometric clip update of Andrew et al. (2021): ``C <- C * exp(-lr * (b - gamma))``.

    ``b`` is the (noised) fraction of updates whose norm was at most ``C`` and ``gamma`` the target
    quantile: too many unclipped updates shrink ``C``, too few grow it.
    """
    return float(clip * math.exp(-lr * (noised_fraction - target_quantile)))


@dataclass(frozen=True)
class AdaptiveClipping:
    """Adaptive clipping settings (Andrew et al., NeurIPS 2021); defaults are the paper's.

    Args:
        target_quantile: gamma, the fraction of updates that should be left unclipped.
        lr: eta_C, learning rate of the geometric update.
        initial_clip: C_0; a :class:`DPFedAvg` given these settings starts (and resets) its clip
            here, and its own ``clip`` argument is only validated.
        count_noise_std: sigma_b, std of the Gaussian noise on the clipped count; ``None`` means
            ``expected_clients / 20`` (the paper's choice) when the noise multiplier is > 0, else 0.
    """

    target_quantile: float = 0.5
    lr: float = 0.2
    initial_clip: float = 0.1
    count_noise_std: float | None = None

    def __post_init__(self) -> None:
        q = self.target_quantile
        if isinstance(q, bool) or not isinstance(q, int | float) or not (0.0 <= q <= 1.0):
            raise PrivacyConfigError(f"got target_quantile={q!r}; want 0 <= target_quantile <= 1")
        _positive("lr", self.lr)
        _positive("initial_clip", self.initial_clip)
        if self.count_noise_std is not None:
            s = self.count_noise_std
            if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s < 0:
                raise PrivacyConfigError(f"got count_noise_std={s!r}; want None or a finite number >= 0")

    def resolve_count_noise_std(self, expected_clients: int, noise_multiplier: float) -> float:
        if self.count_noise_std is not None:
            return float(self.count_noise_std)
        return expected_clients / 20.0 if noise_multiplier > 0 else 0.0


def _check_clients(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise PrivacyConfigError(f"got {name}={value!r}; want an int >= 1")
    return int(value)


class DPFedAvg:
    """User-level DP around any aggregation rule: clip -> rule -> central Gaussian noise.

    For a stack of ``n`` client updates, clip C, noise multiplier z and expected cohort size m::

        c_i = x_i * min(1, C / ||x_i||)
        out = (n * rule(c) + N(0, (z_u C)^2 I)) / m

    With ``rule`` the mean, ``n * rule(c) = sum_i c_i`` and this is exactly McMahan et al.'s
    fixed-denominator DP-FedAvg estimator ``(sum_i c_i + N(0, (zC)^2 I)) / m``: adding or removing one
    user moves the sum by at most C, so it is the Gaussian mechanism with L2 sensitivity C, and the
    privacy statement is a proven (epsilon, delta) guarantee (``guarantee = "proven"``).

    For any other rule (median, Krum, trimmed mean ...) ``n * rule(c)`` is *treated as* the clipped sum
    and the same noise is added. This is a heuristic, not a proven guarantee: the L2 sensitivity of a
    robust rule's output can exceed C / n (a selection rule can switch between rows 2C apart), so the
    reported epsilon is the one the mean would have (``guarantee = "heuristic"``).

    With ``adaptive``, the clip follows Andrew et al. (2021): the noised fraction of unclipped updates
    drives a geometric update, and the update noise multiplier is reduced to ``z_u`` so that the two
    releases together are one Gaussian mechanism with multiplier ``z`` (:func:`update_noise_multiplier`);
    otherwise ``z_u = z``. Rows with a non-finite entry count as zero updates.

    Accounting: one step of an Opacus accountant per call with ``(z, q)``, ``q = m / population``;
    with no population every call is assumed to see the whole population (``q = 1``). Amplification
    by sampling is proven for Poisson sampling only (``sampling="poisson"``: each of the N clients
    joins independently with probability q, see :mod:`fedsec.cohorts`); a fixed-size cohort
    (``sampling="fixed"``) at q < 1 is accounted the same way but labelled ``heuristic``. A Poisson
    cohort can be empty: the call then releases the noise alone (an empty stack is accepted).

    Args:
        rule: the inner aggregator ``(n, d) -> (d,)``; its ``last_selection`` is passed through.
        clip: C, the L2 clip of each client update (the starting clip when ``adaptive`` is ``None``).
        noise_multiplier: z >= 0 (0: clipping only, epsilon = inf).
        expected_clients: m, the expected cohort size (the fixed denominator).
        adaptive: optional :class:`AdaptiveClipping`; the clip then starts at ``adaptive.initial_clip``.
        generator: source of the noise; ``None`` seeds a fresh ``torch.Generator`` from the OS CSPRNG
            (libsodium) -- never a fixed seed. Pass a seeded generator only for reproducibility.
        population: N, the number of clients the cohort is drawn from (for the sampling rate).
        accountant: ``"rdp"`` or ``"prv"``.
        sampling: ``"poisson"`` (the caller samples each client independently with probability q) or
            ``"fixed"`` (a uniform cohort of exactly m); only the first makes the q < 1 epsilon proven.
        budget: optional ``(epsilon, delta)``: a call that would spend more raises
            :class:`dp.errors.BudgetExceededError` *before* touching the stack or any state, so a
            training loop can stop cleanly and keep everything computed so far.
    """

    def __init__(
        self,
        rule: Rule,
        *,
        clip: float,
        noise_multiplier: float,
        expected_clients: int,
        adaptive: AdaptiveClipping | None = None,
        generator: torch.Generator | None = None,
        population: int | None = None,
        accountant: AccountantKind = "rdp",
        budget: tuple[float, float] | None = None,
        sampling: str = "poisson",
    ) -> None:
        if sampling not in SAMPLINGS:
            raise PrivacyConfigError(f"got sampling={sampling!r}; want one of {SAMPLINGS}")
        self.sampling = sampling
        if not callable(rule):
            raise PrivacyConfigError(f"got rule={rule!r}; want a callable (n, d) -> (d,)")
        if adaptive is not None and not isinstance(adaptive, AdaptiveClipping):
            raise PrivacyConfigError(f"got adaptive={adaptive!r}; want None or dp.AdaptiveClipping")
        self.rule = rule
        fixed_clip = _positive("clip", clip)
        self.initial_clip = fixed_clip if adaptive is None else adaptive.initial_clip
        self.noise_multiplier = check_noise_multiplier(noise_multiplier)
        self.expected_clients = _check_clients("expected_clients", expected_clients)
        self.population = None if population is None else _check_clients("population", population)
        if self.population is not None and self.population < self.expected_clients:
            raise PrivacyConfigError(
                f"got population={population} < expected_clients={expected_clients}; "
                "want population >= expected_clients"
            )
        if budget is not None:
            if not isinstance(budget, tuple) or len(budget) != 2 or not budget[0] > 0:
                raise PrivacyConfigError(f"got budget={budget!r}; want None or (epsilon > 0, delta)")
            budget = (float(budget[0]), check_delta(budget[1]))
        self.budget = budget
        self.adaptive = adaptive
        self.count_noise_std = (
            adaptive.resolve_count_noise_std(self.expected_clients, self.noise_multiplier)
            if adaptive
            else 0.0
        )
        self.update_noise_multiplier = (
            update_noise_multiplier(self.noise_multiplier, self.count_noise_std)
            if adaptive
            else self.noise_multiplier
        )
        self.generator = generator if generator is not None else secure_generator()
        self.accountant = Accountant(accountant)
        self.reset()

    @property
    def sample_rate(self) -> float:
        return 1.0 if self.population is None else self.expected_clients / self.population

    @property
    def clip(self) -> float:
        """The clip the next call will use."""
        return self._clip

    @property
    def caveats(self) -> list[str]:
        """Why the reported epsilon is not a proven bound (empty when it is)."""
        out = []
        if not is_mean_rule(self.rule):
            out.append(
                "n * rule(clipped) treated as the clipped sum with sensitivity C; a robust rule's true "
                "sensitivity can be larger"
            )
        if self.sampling == "fixed" and self.sample_rate < 1.0:
            out.append("a fixed-size cohort accounted as Poisson sampling")
        return out

    @property
    def guarantee(self) -> str:
        return "heuristic" if self.caveats else "proven"

    def reset(self) -> None:
        """Forget the round state: clip back to its start, accountant history cleared."""
        self._clip = self.initial_clip
        self.last_clip: float | None = None
        self.last_norms: torch.Tensor | None = None
        self.last_unclipped_fraction: float | None = None
        self.last_count_release: float | None = None
        self.last_selection: Any = None
        self.rounds = 0
        self.accountant.reset()

    def _normal(self, shape: tuple[int, ...], std: float, like: torch.Tensor) -> torch.Tensor:
        g = self.generator
        noise = torch.randn(shape, generator=g, device=g.device, dtype=like.dtype)
        return (noise * std).to(device=like.device)

    def __call__(self, stack: torch.Tensor | np.ndarray, **extras: Any) -> torch.Tensor:
        """One round; ``extras`` (the rule's per-round keywords, e.g. ``root``, ``ids``) go to the rule."""
        x = _as_stack(stack, min_rows=0)
        if self.budget is not None and self.would_exceed(*self.budget):
            eps, delta = self.budget
            raise BudgetExceededError(
                f"got a round that would spend epsilon "
                f"{self.accountant.epsilon_after(delta, self.noise_multiplier, self.sample_rate):.4g} "
                f"at delta={delta:g} after {self.rounds} rounds; want <= budget {eps:g}"
            )
        n, d = x.shape
        clip = self._clip
        clipped, norms = clip_rows(x, clip)
        if n == 0:  # an empty Poisson cohort: the sum is zero, the noise is still released
            out = torch.zeros(d, dtype=x.dtype, device=x.device)
            self.last_selection = None
        else:
            out = self.rule(clipped, **extras)
            self.last_selection = getattr(self.rule, "last_selection", None)
        total = out * n + self._normal((d,), self.update_noise_multiplier * clip, out)
        result = total / self.expected_clients
        self.last_clip = clip
        self.last_norms = norms
        if self.adaptive is not None:
            # Centred count (sensitivity 1/2), so that the split of z in update_noise_multiplier holds.
            centred = centred_clipped_count(norms, clip)
            noisy = centred + float(self._normal((1,), self.count_noise_std, torch.zeros(1)).item())
            self.last_count_release = noisy
            frac = noisy / self.expected_clients + 0.5
            self.last_unclipped_fraction = frac
            self._clip = adaptive_clip_update(clip, frac, self.adaptive.target_quantile, self.adaptive.lr)
        self.rounds += 1
        self.accountant.step(self.noise_multiplier, self.sample_rate)
        return result

    def would_exceed(self, epsilon: float, delta: float) -> bool:
        """True if one more call would spend more than ``epsilon`` at ``delta`` (for budgets)."""
        return self.accountant.epsilon_after(delta, self.noise_multiplier, self.sample_rate) > epsilon

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        delta = check_delta(delta)
        if self.population is None or self.sample_rate == 1.0:
            sampling = "every client every round (q=1)"
        elif self.sampling == "poisson":
            sampling = (
                f"Poisson, q={self.sample_rate:.6g} (expected {self.expected_clients} of {self.population})"
            )
        else:
            sampling = (
                f"fixed cohort of {self.expected_clients} of {self.population}, accounted as Poisson "
                f"with q={self.sample_rate:.6g} (not proven)"
            )
        mech = (
            "DP-FedAvg: clip -> "
            + getattr(self.rule, "name", type(self.rule).__name__)
            + " -> central Gaussian"
        )
        return statement(
            epsilon=self.accountant.epsilon(delta),
            delta=delta,
            accountant=self.accountant.kind,
            mechanism=mech,
            sampling=sampling,
            level="user",
            guarantee=self.guarantee,
            note=(
                "Gaussian mechanism on the clipped sum, L2 sensitivity C"
                if self.guarantee == "proven"
                else "; ".join(self.caveats) + ", so this epsilon is not a proven guarantee"
            ),
            order="clip_rule_noise",
            noise_multiplier=self.noise_multiplier,
            rounds=self.rounds,
            clip=self.last_clip if self.last_clip is not None else self._clip,
            adaptive=self.adaptive is not None,
        )


class LocalNoise:
    """Local noise before the robust rule: clip each row to C and add N(0, (zC)^2 I) to *each* row.

    ``(n, d) -> (n, d)``, used as a pre-aggregator (order ``local_noise_rule``): every released update
    is already private, so the robust rule and the server are post-processing.

    Privacy, per client and round: the Gaussian mechanism on one clipped update. Between two arbitrary
    updates of one user the clipped vectors differ by at most 2C in L2 (replace-one), so the per-round
    mechanism has effective multiplier z / 2; no amplification by sampling is claimed, because the
    server sees who participates (q = 1). The statement assumes the worst case, a client that took part
    in every call.

    Args:
        clip: C > 0.
        noise_multiplier: z >= 0 (per row: std zC).
        generator: ``None`` seeds a fresh generator from the OS CSPRNG; pass one only to reproduce.
        accountant: ``"rdp"`` or ``"prv"``.
    """

    def __init__(
        self,
        clip: float,
        noise_multiplier: float,
        generator: torch.Generator | None = None,
        accountant: AccountantKind = "rdp",
    ) -> None:
        self.clip = _positive("clip", clip)
        self.noise_multiplier = check_noise_multiplier(noise_multiplier)
        self.generator = generator if generator is not None else secure_generator()
        self.accountant = Accountant(accountant)
        self.rounds = 0

    def __call__(self, stack: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = _as_stack(stack)
        clipped, _ = clip_rows(x, self.clip)
        g = self.generator
        noise = torch.randn(tuple(x.shape), generator=g, device=g.device, dtype=x.dtype)
        out = clipped + (noise * (self.noise_multiplier * self.clip)).to(device=x.device)
        self.rounds += 1
        self.accountant.step(self.noise_multiplier / 2.0, 1.0)
        return out

    def reset(self) -> None:
        self.rounds = 0
        self.accountant.reset()

    def would_exceed(self, epsilon: float, delta: float) -> bool:
        """True if one more call would spend more than ``epsilon`` at ``delta`` (for budgets)."""
        return self.accountant.epsilon_after(delta, self.noise_multiplier / 2.0, 1.0) > epsilon

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        delta = check_delta(delta)
        return statement(
            epsilon=self.accountant.epsilon(delta),
            delta=delta,
            accountant=self.accountant.kind,
            mechanism="local Gaussian on each clipped update (replace-one sensitivity 2C)",
            sampling="none claimed (q=1): worst case, the client takes part in every round",
            level="user",
            guarantee="proven",
            order="local_noise_rule",
            noise_multiplier=self.noise_multiplier,
            rounds=self.rounds,
            clip=self.clip,
        )
