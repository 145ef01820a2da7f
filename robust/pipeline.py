"""Pipeline: pre-aggregators composed with a rule (``RFA(buck)``, ``trMean(NNM)`` ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from robust._range import run_in_range
from robust.base import Aggregator, PreAggregator, Selection, Stat, as_stack, finite_split_with_stat
from robust.errors import ParameterError

__all__ = ["Pipeline"]


class Pipeline(Aggregator):
    """``rule(pre_k(... pre_1(stack)))``, itself a rule.

    Non-finite rows are dropped once, before the first pre-aggregator; the pipeline tolerates as many
    as its most demanding component (the minimum over the components that bound it), and each
    component then runs with its own ``f`` reduced by the number dropped. Bounds are checked up front
    along the chain (bucketing shrinks n to ``ceil(n / s)`` before the rule sees it).

    ``last_selection`` maps the rule's selection back to input rows through every pre-aggregator's
    ``last_sources`` (a selected bucket stands for all its rows); ``None`` if the rule selects nothing.

    Example:
        >>> import torch, robust
        >>> agg = robust.Pipeline(pre=[robust.NNM(f=1)], rule=robust.TrimmedMean(f=1))
        >>> agg(torch.ones(5, 3)).tolist()
        [1.0, 1.0, 1.0]
    """

    name = "pipeline"

    def __init__(self, pre: Sequence[PreAggregator], rule: Aggregator) -> None:
        pre = list(pre)
        for p in pre:
            if not isinstance(p, PreAggregator):
                raise ParameterError(f"pre must hold pre-aggregators; got {p!r}")
        if not isinstance(rule, Aggregator) or type(rule).__call__ is not Aggregator.__call__:
            raise ParameterError(
                f"rule must be a plain robust rule (wrap a Pipeline in Reputation instead); got {rule!r}"
            )
        super().__init__(rule.f)
        self.pre = pre
        self.rule = rule
        self.needs_root = rule.needs_root

    def check_bound(self, n: int, f: int | None) -> None:
        for p in self.pre:
            p.check_bound(n, p.f)
            n = p.out_rows(n)
        self.rule.check_bound(n, self.rule.f)

    def tolerated(self, n: int) -> int:
        tol = self.rule.tolerated(_chain_rows(self.pre, n))
        for p in self.pre:
            t = p.tolerated(n)
            if t is not None:
                tol = min(tol, t)
        return tol

    def __call__(self, stack: Any, **kw: Any) -> torch.Tensor:
        x = as_stack(stack)
        n = int(x.shape[0])
        self.check_bound(n, None)
        first: Aggregator | PreAggregator = self.pre[0] if self.pre else self.rule
        x, kept, stat = finite_split_with_stat(x, first.row_stat(x), self.tolerated(n), "Pipeline")
        n_bad = 0 if kept is None else n - int(kept.numel())
        origin = list(range(n)) if kept is None else kept.tolist()
        out, (sel, sources) = run_in_range(
            x, stat, self._scaling(), "Pipeline", lambda xs, st, k: self._chain(xs, st, n_bad, origin, kw)
        )
        self.rule.last_selection = None if sel is None else [int(i) for i in sel.tolist()]
        if sel is None:
            self.last_selection = None
        else:
            self.last_selection = sorted({o for i in sel.tolist() for o in sources[int(i)]})
        return out

    def _scaling(self) -> int | None:
        """The chain's :attr:`Aggregator.scaling`: ``None`` if any stage has none, else the rule's
        (every pre-aggregator with a scaling is positively homogeneous)."""
        if any(p.scaling is None for p in self.pre):
            return None
        return self.rule.scaling

    def _chain(
        self, x: torch.Tensor, stat: Stat, n_bad: int, origin: list[int], kw: dict[str, Any]
    ) -> tuple[torch.Tensor, tuple[Selection, list[list[int]]]]:
        sources: list[list[int]] = [[i] for i in origin]
        for p in self.pre:
            x, src = p._transform(x, _reduced(p.f, n_bad), stat)
            stat = None  # the statistic described the input of the first stage only
            p.last_sources = src
            sources = [sorted({o for j in s for o in sources[j]}) for s in src]
        out, sel = self.rule._aggregate(x, _reduced(self.rule.f, n_bad), stat, **kw)
        return out, (sel, sources)

    def reset(self) -> None:
        super().reset()
        for p in self.pre:
            p.reset()
        self.rule.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"pre": [p.state_dict() for p in self.pre], "rule": self.rule.state_dict()}

    def __repr__(self) -> str:
        return f"Pipeline(pre={self.pre!r}, rule={self.rule!r})"


def _reduced(f: int | None, n_bad: int) -> int | None:
    return None if f is None else max(f - n_bad, 0)


def _chain_rows(pre: Sequence[PreAggregator], n: int) -> int:
    for p in pre:
        n = p.out_rows(n)
    return n
