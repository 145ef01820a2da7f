"""Building a unit run's parts from its config: the defense, the attack, the protocol (a mechanism
composed with the defense's rule) and the threat-model record. Moved out of :mod:`fedsec.simulation`,
which re-exports these names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import protocols
import robust
import robust.attacks
from fedsec.config import Config
from fedsec.errors import ConfigError


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _make(registry: Any, kind: str, name: str, f: int, kwargs: dict[str, Any], seed: int = 0) -> Any:
    """Build ``name`` from a registry, passing the assumed ``f`` (and the run's ``seed``, for randomized
    rules such as DnC) where the factory takes them and the config does not set them."""
    try:
        factory = registry.get(name)
    except KeyError as e:
        raise ConfigError(f"{kind}: got {name!r}; want one of {registry.names()}") from e
    kw = dict(kwargs)
    if "f" not in kw and _accepts(factory, "f"):
        kw["f"] = f
    if "seed" not in kw and _accepts(factory, "seed"):
        kw["seed"] = seed
    try:
        return factory(**kw)
    except (TypeError, robust.RobustError) as e:
        raise ConfigError(
            f"{kind} {name!r}: got kwargs {sorted(kwargs)}; want the rule's parameters ({e})"
        ) from e


def build_defense(cfg: Config) -> Any:
    """The defense of a unit config as one ``(n, d) -> (d,)`` callable (a pipeline if there is ``pre``)."""
    d = cfg.defense
    f = cfg.assumed_f(d)
    seed = cfg.train.seed
    rule = _make(robust.AGGREGATORS, "defense.rule", d.rule, f, d.kwargs, seed)
    if d.pre:
        pre = [
            _make(robust.PRE_AGGREGATORS, "defense.pre", p, f, d.pre_kwargs.get(p, {}), seed) for p in d.pre
        ]
        rule = robust.Pipeline(pre=pre, rule=rule)
    if d.reputation:
        try:
            rule = robust.Reputation(rule, **d.reputation_kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"defense.reputation_kwargs: got {d.reputation_kwargs}; {e}") from e
    return rule


def rule_extras(
    rule: Any, *, root: torch.Tensor | None = None, ids: np.ndarray | None = None
) -> dict[str, Any]:
    """The keywords ``rule`` takes each round besides the stack, as call arguments.

    The server's root gradient for rules that need it (FLTrust, ``needs_root``: ``root=``) and the
    cohort's client ids for :class:`robust.Reputation` (``ids=``), so trust follows clients, not row
    positions, when the cohort changes between rounds. Empty for every other rule.
    """
    kw: dict[str, Any] = {}
    if getattr(rule, "needs_root", False):
        kw["root"] = root
    if isinstance(rule, robust.Reputation):
        kw["ids"] = ids
    return kw


def build_attack(cfg: Config) -> Any:
    a = cfg.attack
    if a.name == "none":
        return None
    try:
        atk = robust.attacks.make(a.name, **a.kwargs)
    except KeyError as e:
        raise ConfigError(
            f"attack.name: got {a.name!r}; want 'none' or one of {robust.attacks.ATTACKS.names()}"
        ) from e
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"attack.kwargs: got {sorted(a.kwargs)}; want the parameters of {a.name!r} ({e})"
        ) from e
    if a.strength is not None:
        if getattr(atk, "strength", None) is None:
            raise ConfigError(
                f"attack.strength: got {a.strength} for {a.name!r}; want it unset (no strength)"
            )
        try:
            atk = atk.with_strength(a.strength)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"attack.strength: got {a.strength} for {a.name!r}; {e}") from e
    return atk


def build_protocol(cfg: Config, rule: Any, server_rule: Any = None) -> Any:
    """The round's protocol: the defense's mechanism (:meth:`Config.mechanism`) composed with its rule by
    :func:`protocols.make`, or a protocol named for its rule (``ckks_krum`` ...) built from its kwargs.

    ``server_rule`` is what the plain mechanism runs (the rule with the round's context and any
    server-side DP wrapped around it); the other mechanisms compose the bare ``rule``.
    """
    p, d = cfg.protocol, cfg.defense
    mech = cfg.mechanism(d)
    kw = dict(p.kwargs if d.mechanism is None else (d.mechanism_kwargs or {}))
    where = "protocol.kwargs" if d.mechanism is None else "defense.mechanism_kwargs"
    if mech == "plain":
        if kw:
            raise ConfigError(f"{where}: got {sorted(kw)} for 'plain'; want none (use [defense])")
        return protocols.make("plain", rule=rule if server_rule is None else server_rule)
    if cfg.dp.mode == "distributed":
        # The noise parameters live in [dp]; protocol.kwargs may repeat them only with the same values.
        for key, value in (("clip", cfg.dp.clip), ("noise_multiplier", cfg.dp.noise_multiplier)):
            if kw.setdefault(key, value) != value:
                raise ConfigError(
                    f"{where}.{key}: got {kw[key]} with dp.{key}={value}; want them equal "
                    f"(or set it in [dp] only)"
                )
    if mech in protocols.MECHANISMS:
        try:
            return protocols.make(mech, rule=rule, **kw)
        except protocols.CompositionError as e:
            raise ConfigError(f"defense {d.label!r}: {e}") from e
    try:
        factory = protocols.PROTOCOLS.get(mech)
    except KeyError as e:
        known = sorted(set(protocols.PROTOCOLS.names()) | set(protocols.MECHANISMS.names()))
        key = "protocol.name" if d.mechanism is None else "defense.mechanism"
        raise ConfigError(f"{key}: got {mech!r}; want one of {known}") from e
    if "f" not in kw and _accepts(factory, "f") and cfg.assumed_f() > 0:
        kw["f"] = cfg.assumed_f()
    try:
        return factory(**kw)
    except TypeError as e:
        raise ConfigError(f"{where}: got {sorted(kw)}; want the parameters of {mech!r} ({e})") from e


def threat_model(cfg: Config, privacy: dict[str, Any] | None) -> dict[str, Any]:
    """The governance record written into every report: who is assumed to do what."""
    d = cfg.defense
    a = cfg.attack
    knowledge = "none"
    if a.name != "none":
        try:
            knowledge = (
                "omniscient" if getattr(build_attack(cfg), "omniscient", False) else "own gradients only"
            )
        except ConfigError:
            knowledge = "unknown"
    mech = cfg.mechanism(d)
    if mech == "plain":
        secure = "none: the server sees every update in the clear"
    elif mech in protocols.PROTOCOLS:
        doc = (protocols.PROTOCOLS.get(mech).__doc__ or "").strip().splitlines()
        secure = f"protocol {mech!r}" + (f": {doc[0]}" if doc else "")
    else:
        secure = f"mechanism {mech!r}: computes {protocols.MECHANISMS.make(mech).supports} without the clear"
    return {
        "byzantine_actual": f"{a.f} of {cfg.data.n_clients}",
        "byzantine_assumed_by_defense": f"{cfg.assumed_f(d)} of {cfg.data.n_clients}",
        "attack": a.name if a.strength is None else f"{a.name} (strength {a.strength:g})",
        "attack_knowledge": knowledge,
        "data_poisoning": a.data,
        "data_split": f"{cfg.data.partition}"
        + (f" beta={cfg.data.beta:g}" if cfg.data.partition == "dirichlet" else ""),
        "defense": d.label,
        "dp": "none" if privacy is None else privacy,
        "secure_aggregation": secure,
    }
