"""Aggregation-aware calibration of an attack's strength (the stress-testing paper's point, as a tool).

``Calibrated(attack, rule)`` chooses, every call, the strength of ``attack`` (ALIE's z, IPM's eps, ...)
that maximises how far the server's rule is pushed from the honest mean::

    s* = argmax_s || rule(stack(s)) - mean(reference) ||_2

where ``stack(s)`` stacks the Byzantine rows ``attack.with_strength(s)(own, ...)`` under the honest rows
the attacker assumes, and ``reference`` is what the attacker knows. The search is a grid, then
``refine`` rounds that evaluate ``points`` evenly spaced strengths strictly between the best point's
grid neighbours (no extrapolation beyond the grid).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from robust.attacks.base import ATTACKS, Attack, AttackContext, AttackError, Rule
from robust.errors import ParameterError


def simulated_honest(own: torch.Tensor, m: int) -> torch.Tensor:
    """``m`` stand-in honest rows built from the attacker's own ``(f, d)`` gradients by tiling them.

    Row ``k`` is ``own[k mod f]``: a deterministic resampling that invents no distribution and keeps the
    rows exactly as honest as the attacker's data. With ``m`` a multiple of ``f`` its mean is ``own``'s
    mean.
    """
    f = own.shape[0]
    idx = torch.arange(m, device=own.device) % f
    return own.index_select(0, idx)


@dataclass
class Calibrated(Attack):
    """Wrap an attack with a strength parameter and set that strength to hurt ``rule`` the most.

    Args:
        attack: an :class:`Attack` instance, or a registered name (built with its defaults). It must have
            a strength parameter; an omniscient attack requires ``omniscient=True``.
        rule: the server's aggregator ``(n, d) -> (d,)``; None uses ``ctx.rule`` at call time.
        grid: strengths to try; None uses ``attack.default_grid`` (for ALIE and IPM the stress-testing
            paper's sweep ``{0, 0.5, 2.5, 5, 8, 10}``).
        omniscient: False (default): the attacker knows only its own gradients. It stands in for the
            ``n - f`` honest rows with its own rows tiled (:func:`simulated_honest`) and measures the
            deviation from the mean of its own gradients. True: it uses the honest rows and their mean.
        refine: refinement rounds after the grid (0 = grid only).
        points: strengths evaluated per refinement round.

    After a call, ``last_strength`` is the chosen strength, ``last_deviation`` its deviation (``inf`` when
    the rule's output was non-finite, which counts as the strongest possible effect), and
    ``last_trace`` every ``(strength, deviation)`` evaluated, in order. Ties go to the largest strength: a
    plateau usually means the rule saturated on the attacker's stand-in rows, and real honest rows, which
    spread more, saturate it later.

    Stateful rules: every candidate is evaluated on a deep copy of the rule, so calibration leaves the
    rule's state (e.g. centered clipping's center) untouched and every candidate starts from it.

    Stochastic attacks: when ``ctx.generator`` is given, its state is restored before every candidate, so
    all candidates see the same noise (common random numbers) and the result is reproducible.
    """

    attack: Attack | str
    rule: Rule | None = None
    grid: Sequence[float] | None = None
    omniscient: bool = False
    refine: int = 2
    points: int = 4
    last_strength: float | None = field(default=None, init=False, repr=False, compare=False)
    last_deviation: float | None = field(default=None, init=False, repr=False, compare=False)
    last_trace: list[tuple[float, float]] = field(default_factory=list, init=False, repr=False, compare=False)

    name: ClassVar[str] = "calibrated"

    def __post_init__(self) -> None:
        if isinstance(self.attack, str):
            self.attack = ATTACKS.make(self.attack)
        if not isinstance(self.attack, Attack):
            raise ParameterError(
                f"attack must be an Attack or a registered name; got {type(self.attack).__name__}"
            )
        if isinstance(self.attack, Calibrated):
            raise AttackError("got a Calibrated attack inside Calibrated; want the attack to calibrate")
        if self.attack.strength is None:
            raise AttackError(
                f"got {type(self.attack).__name__}, which has no strength parameter; want one of the "
                "attacks with one (alie, ipm, gaussian, scaling, large_norm)"
            )
        if not isinstance(self.omniscient, bool):
            raise ParameterError(f"omniscient must be a bool; got {type(self.omniscient).__name__}")
        if self.attack.omniscient and not self.omniscient:
            raise AttackError(
                f"got omniscient {type(self.attack).__name__} with omniscient=False; want omniscient=True "
                "or a non-omniscient attack"
            )
        if self.rule is not None and not callable(self.rule):
            raise ParameterError(f"rule must be callable or None; got {type(self.rule).__name__}")
        grid = self.attack.default_grid if self.grid is None else self.grid
        values: list[float] = []
        for v in grid:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ParameterError(f"grid entries must be finite numbers; got {v!r}")
            self.attack.with_strength(float(v))  # validates the value for this attack
            values.append(float(v))
        if not values:
            raise ParameterError("grid must hold at least one strength; got an empty grid")
        self.grid = tuple(sorted(set(values)))
        for name in ("refine", "points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ParameterError(f"{name} must be an int >= 0; got {name}={v!r}")

    def _forward(self, own: torch.Tensor, honest: torch.Tensor | None, ctx: AttackContext) -> torch.Tensor:
        assert isinstance(self.attack, Attack) and self.grid is not None  # normalised in __post_init__
        rule = self.rule if self.rule is not None else ctx.rule
        if rule is None:
            raise AttackError("got rule=None and ctx.rule=None; want the server's rule in either")
        m = ctx.n - ctx.f
        if honest is not None:
            others, target = honest, honest.mean(dim=0)
        else:
            others, target = simulated_honest(own, m), own.mean(dim=0)
        inner_honest = honest if self.attack.omniscient else None
        inner_ctx = AttackContext(n=ctx.n, f=ctx.f, rule=rule, generator=ctx.generator)
        gen = ctx.generator
        gen_state = gen.get_state() if gen is not None else None
        base = self.attack
        d = own.shape[1]

        evaluated: dict[float, float] = {}
        best: tuple[float, float, torch.Tensor] | None = None
        trace: list[tuple[float, float]] = []

        def evaluate(s: float) -> None:
            nonlocal best
            if gen is not None and gen_state is not None:
                gen.set_state(gen_state)
            byz = base.with_strength(s)(own, inner_honest, ctx=inner_ctx)
            # a stateful rule (centered clipping's center, reputation) is probed on a copy, so the
            # search neither advances the server's state nor lets one candidate influence the next
            out = copy.deepcopy(rule)(torch.cat([others, byz], dim=0))
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (d,):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ParameterError(f"rule must map (n, d) to (d,) = ({d},); got {got}")
            dev = float(torch.linalg.vector_norm(out - target, dtype=torch.float64))
            if not math.isfinite(dev):
                dev = math.inf
            evaluated[s] = dev
            trace.append((s, dev))
            if best is None or dev > best[1] or (dev == best[1] and s > best[0]):
                best = (s, dev, byz)

        for s in self.grid:
            evaluate(s)
        for _ in range(self.refine):
            if self.points == 0:
                break
            assert best is not None
            tried = sorted(evaluated)
            k = tried.index(best[0])
            lo = tried[max(k - 1, 0)]
            hi = tried[min(k + 1, len(tried) - 1)]
            if hi <= lo:
                break
            step = (hi - lo) / (self.points + 1)
            for j in range(1, self.points + 1):
                s = lo + j * step
                if s not in evaluated:
                    evaluate(s)
        assert best is not None
        self.last_strength, self.last_deviation = best[0], best[1]
        self.last_trace = trace
        return best[2]


ATTACKS.register(Calibrated.name)(Calibrated)
