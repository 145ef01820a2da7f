"""Mechanism x rule: ``protocols.make(mechanism, rule=...)`` composes a confidentiality mechanism with a
robust rule chosen once.

>>> import protocols, robust
>>> protocols.make("secagg", rule=robust.Mean()).name
'mean @ secagg'

A rule declares the statistic it needs (:mod:`robust.statistics`: a linear combination, norms,
pairwise distances, coordinate ranks, or the raw rows). A mechanism computes what it can under its
confidentiality model and refuses any other composition with :class:`UnsupportedComposition`
("got ...; want ..."):

=====================  ============================================  ==============================
mechanism              rules                                         who learns which statistic
=====================  ============================================  ==============================
``plain``              every rule                                    server: the raw rows
``secagg``,            ``Mean``; ``Mean`` after bucketing            server: the (weighted) sum
``secagg_plus``,       (bucketing's averaging map folds into
``secagg_normbound``   public client weights)
``secagg_ddp``         as above, and ``Mean`` after ``Clip(c)``      server: the noisy sum
                       (the clients' own L2 clip, ``clip = c``)
``ckks``               ``Mean`` (and after bucketing), ``Mean``      key holder: norms, distances or
                       after ``Clip``, ``Krum``, ``MultiKrum``,      blinded values (the inner
                       ``Median``, ``TrimmedMean``                   protocol's leakage record)
``paillier``           ``Mean``                                      key holder: the sum
``prio``               ``Mean`` (also after bucketing, or after      leader and helper: the sum;
                       ``Clip(c)``: the proved bound ``c``),         with Krum, the squared
                       ``Krum``, ``MultiKrum`` (``m=None``), each    distances (also for NNM)
                       also after ``NNM`` (same ``f``)
=====================  ============================================  ==============================

The mechanisms are implemented by the protocol classes registered in :data:`protocols.PROTOCOLS`
(``ckks_multi_krum``, ``paillier_mean``, ``secagg`` ...); those names stay as aliases: without
``rule=``, ``protocols.make(name, **params)`` builds the registered class as before. Each round's
leakage record gains ``"statistic"`` under the party that computed the rule's statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

import robust
from protocols.base import PROTOCOLS, AggregationProtocol, Leakage, RoundResult
from robust._registry import Registry
from robust.statistics import Statistic, label, needs, pipeline_parts, weights

WeightsFn = Callable[[int], torch.Tensor]


class CompositionError(ValueError):
    """A mechanism and a rule that cannot be composed as asked ("got ...; want ...")."""


class UnknownMechanism(CompositionError, KeyError):
    """A mechanism name that is neither a registered mechanism nor a registered protocol."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedComposition(CompositionError):
    """A rule whose statistic the mechanism cannot compute under its confidentiality model."""


@dataclass(frozen=True)
class Plan:
    """What a mechanism builds for one rule: the inner protocol, the round's public client weights
    (``None``: the caller's), and which party learns which statistic."""

    inner: AggregationProtocol
    weights: WeightsFn | None
    learns: dict[str, Statistic]


@dataclass(frozen=True)
class Mechanism:
    """A confidentiality mechanism: ``build(rule, params) -> Plan`` or raise UnsupportedComposition."""

    name: str
    supports: str
    build: Callable[[Any, dict[str, Any]], Plan]


MECHANISMS: Registry[Mechanism] = Registry("mechanism")


class Composed:
    """A mechanism composed with a rule; ``name`` names both (``"multi_krum @ ckks"``).

    ``run`` has the protocol interface. Attributes the inner protocol has and this object does not
    (``privacy_statement``, ``params``, ``transcript`` ...) are read from the inner protocol.
    """

    def __init__(self, mechanism: str, rule: Any, plan: Plan) -> None:
        self.mechanism = mechanism
        self.rule = rule
        self.inner = plan.inner
        self.plan = plan
        self.name = f"{label(rule)} @ {mechanism}"

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> RoundResult:
        """One round of the inner protocol; ``extras`` (the rule's per-round keywords: FLTrust's
        ``root``, Reputation's ``ids``) go to protocols that run the rule on rows (``plain``)."""
        if self.plan.weights is not None:
            if weights is not None:
                raise CompositionError(
                    f"{self.name}: got client weights with a pre-aggregated rule; want weights=None"
                )
            weights = self.plan.weights(int(torch.as_tensor(stack).shape[0]))
        if extras:
            res = cast(Any, self.inner).run(stack, weights=weights, rng=rng, extras=extras)
        else:
            res = self.inner.run(stack, weights=weights, rng=rng)
        learns = {party: dict(values) for party, values in res.leakage.learns.items()}
        for party, stat in self.plan.learns.items():
            learns.setdefault(party, {})["statistic"] = stat.value
        return RoundResult(res.aggregate, res.accepted, res.meter, Leakage(learns))

    def __getattr__(self, attr: str) -> Any:
        if attr in ("inner", "plan") or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"Composed({self.name!r})"


def _refuse(mechanism: str, rule: Any, supports: str) -> UnsupportedComposition:
    got = ", ".join(sorted(s.value for s in needs(rule)))
    return UnsupportedComposition(f"{mechanism}: got rule {label(rule)} (needs {got}); want {supports}")


def _build(mechanism: str, factory: Callable[..., Any], rule: Any, **kw: Any) -> Any:
    try:
        return factory(**kw)
    except TypeError as e:
        raise CompositionError(
            f"{mechanism}: got parameters {sorted(kw)} for {label(rule)}; want the parameters of "
            f"{getattr(factory, '__name__', factory)} ({e})"
        ) from e


def _linear_weights(rule: Any) -> WeightsFn | None:
    """Public client weights of a pipeline of averaging maps before ``Mean`` (bucketing): ``w = (1/m)
    1^T A``; ``None`` for the mean itself (the caller's weights, if any, apply)."""
    pre, _ = pipeline_parts(rule)
    if not pre:
        return None
    return lambda n: weights(rule, None, n).to(torch.float32)


def _is_linear_mean(rule: Any) -> bool:
    return type(pipeline_parts(rule)[1]) is robust.Mean and needs(rule) == {Statistic.LINEAR}


def _is_clip_mean(rule: Any) -> bool:
    pre, final = pipeline_parts(rule)
    return type(final) is robust.Mean and len(pre) == 1 and type(pre[0]) is robust.Clip


def register(name: str, supports: str) -> Callable[[Callable[[Any, dict[str, Any]], Plan]], Any]:
    """Decorator: register ``build(rule, params) -> Plan`` as the mechanism ``name``."""

    def deco(build: Callable[[Any, dict[str, Any]], Plan]) -> Callable[[Any, dict[str, Any]], Plan]:
        MECHANISMS.register(name)(lambda: Mechanism(name, supports, build))
        return build

    return deco


@register("plain", "any rule (the server sees every update)")
def _plain(rule: Any, params: dict[str, Any]) -> Plan:
    if params:
        raise CompositionError(f"plain: got parameters {sorted(params)}; want none (configure the rule)")
    return Plan(PROTOCOLS.make("plain", rule=rule), None, {"server": Statistic.RAW})


def _masked(name: str, clip_param: bool) -> Callable[[Any, dict[str, Any]], Plan]:
    want = "Mean, or Mean after bucketing" + (", or Mean after Clip(c)" if clip_param else "")

    def build(rule: Any, params: dict[str, Any]) -> Plan:
        if _is_linear_mean(rule):
            inner = _build(name, PROTOCOLS.get(name), rule, **params)
            return Plan(inner, _linear_weights(rule), {"server": Statistic.LINEAR})
        if clip_param and _is_clip_mean(rule):
            c = pipeline_parts(rule)[0][0].c
            if params.setdefault("clip", c) != c:
                raise CompositionError(
                    f"{name}: got clip={params['clip']} with rule Clip(c={c}); want them equal"
                )
            inner = _build(name, PROTOCOLS.get(name), rule, **params)
            return Plan(inner, None, {"server": Statistic.LINEAR})
        raise _refuse(name, rule, want)

    return build


for _name in ("secagg", "secagg_plus", "secagg_normbound"):
    register(_name, "Mean, or Mean after bucketing")(_masked(_name, clip_param=False))
register("secagg_ddp", "Mean, or Mean after bucketing or Clip(c)")(_masked("secagg_ddp", clip_param=True))

CKKS_SUPPORTS = "Mean (also after bucketing or Clip), Krum, MultiKrum, Median or TrimmedMean"


@register("ckks", CKKS_SUPPORTS)
def _ckks(rule: Any, params: dict[str, Any]) -> Plan:
    pre, final = pipeline_parts(rule)
    kind = type(final)
    kh = "key_holder"
    if _is_linear_mean(rule):
        return Plan(
            _build("ckks", PROTOCOLS.get("ckks_mean"), rule, **params),
            _linear_weights(rule),
            {kh: Statistic.LINEAR},
        )
    if _is_clip_mean(rule):
        inner = _build("ckks", PROTOCOLS.get("ckks_norm_clip"), rule, clip=pre[0].c, **params)
        return Plan(inner, None, {kh: Statistic.NORMS})
    if not pre and kind is robust.Krum:
        inner = _build("ckks", PROTOCOLS.get("ckks_krum"), rule, f=final.f, **params)
        return Plan(inner, None, {kh: Statistic.DISTANCES})
    if not pre and kind is robust.MultiKrum:
        inner = _build("ckks", PROTOCOLS.get("ckks_multi_krum"), rule, f=final.f, m=final.m, **params)
        return Plan(inner, None, {kh: Statistic.DISTANCES})
    if not pre and kind is robust.Median:
        return Plan(_build("ckks", PROTOCOLS.get("ckks_median"), rule, **params), None, {kh: Statistic.RANKS})
    if not pre and kind is robust.TrimmedMean:
        inner = _build("ckks", PROTOCOLS.get("ckks_trimmed_mean"), rule, f=final.f, **params)
        return Plan(inner, None, {kh: Statistic.RANKS})
    raise _refuse("ckks", rule, CKKS_SUPPORTS)


PRIO_SUPPORTS = (
    "Mean (also after bucketing, or after Clip(c): the proved bound), Krum or MultiKrum (m=None), "
    "each also after NNM (same f)"
)


@register("prio", PRIO_SUPPORTS)
def _prio(rule: Any, params: dict[str, Any]) -> Plan:
    pre, final = pipeline_parts(rule)
    kind = type(final)
    servers = ("leader", "helper")
    factory = PROTOCOLS.get("prio")
    if _is_linear_mean(rule):
        inner = _build("prio", factory, rule, **params)
        return Plan(inner, _linear_weights(rule), dict.fromkeys(servers, Statistic.LINEAR))
    if _is_clip_mean(rule):
        # Honest clients scale to norm <= c; the servers reject a report whose proof of it fails.
        c = pre[0].c
        if params.setdefault("bound", c) != c:
            raise CompositionError(
                f"prio: got bound={params['bound']} with rule Clip(c={c}); want them equal"
            )
        inner = _build("prio", factory, rule, clip_to_bound=True, **params)
        return Plan(inner, None, dict.fromkeys(servers, Statistic.LINEAR))
    selects = kind is robust.Krum or (kind is robust.MultiKrum and final.m is None)
    if not pre and selects:
        inner = _build("prio", factory, rule, select=final.name, f=final.f, **params)
        return Plan(inner, None, dict.fromkeys(servers, Statistic.DISTANCES))
    if len(pre) == 1 and type(pre[0]) is robust.NNM and (selects or kind is robust.Mean):
        # NNM's mixing is linear in the shares once the servers hold the distance matrix
        f = pre[0].f
        if selects and final.f != f:
            raise CompositionError(f"prio: got NNM(f={f}) before {final.name}(f={final.f}); want one f")
        select = final.name if selects else None
        inner = _build("prio", factory, rule, select=select, f=f, pre="nnm", **params)
        return Plan(inner, None, dict.fromkeys(servers, Statistic.DISTANCES))
    raise _refuse("prio", rule, PRIO_SUPPORTS)


@register("paillier", "Mean (unweighted)")
def _paillier(rule: Any, params: dict[str, Any]) -> Plan:
    if type(rule) is robust.Mean:
        inner = _build("paillier", PROTOCOLS.get("paillier_mean"), rule, **params)
        return Plan(inner, None, {"key_holder": Statistic.LINEAR})
    raise _refuse("paillier", rule, "Mean (unweighted)")


def compose(mechanism: str, rule: Any, **params: Any) -> Composed:
    """``rule`` under ``mechanism`` (see the module docstring); ``rule`` may be a registered rule name."""
    if mechanism not in MECHANISMS:
        raise UnknownMechanism(f"got mechanism {mechanism!r}; want one of {MECHANISMS.names()}")
    if isinstance(rule, str):
        rule = robust.make(rule)
    mech = MECHANISMS.make(mechanism)
    return Composed(mechanism, rule, mech.build(rule, dict(params)))


def make(name: str, rule: Any = None, **params: Any) -> Any:
    """``protocols.make(mechanism, rule=..., **params)``: a mechanism composed with a rule, e.g.
    ``protocols.make("ckks", rule=robust.MultiKrum(f=5))``. Without ``rule``, ``name`` may also be a
    registered protocol (``"ckks_multi_krum"``, ``"secagg"`` ...), built from ``params`` as before;
    a mechanism with no registered protocol of its name (``"ckks"``) composes ``robust.Mean()``.
    """
    if rule is None:
        if name in PROTOCOLS:
            return PROTOCOLS.make(name, **params)
        if name in MECHANISMS:
            return compose(name, robust.Mean(), **params)
        known = sorted(set(MECHANISMS.names()) | set(PROTOCOLS.names()))
        raise UnknownMechanism(f"got {name!r}; want a mechanism or protocol, one of {known}")
    return compose(name, rule, **params)
