"""Experiment configuration: TOML files read into frozen, validated dataclasses.

One dataclass per TOML section (``[data]``, ``[model]``, ``[train]``, ``[attack]``, ``[defense]``,
``[protocol]``, ``[dp]``, ``[eval]``, ``[output]``, ``[sweep]``, ``[stress]``). Unknown keys, wrong
types and out-of-range values raise :class:`fedsec.errors.ConfigError` naming the key, e.g.
``train.lr: got -1; want > 0``.

``[defense]`` is either one table or an array of tables (``[[defense]]``); a run with several
defenses compares them on the same data, attack and seed. A *unit* run is a :class:`Config` with
exactly one defense; :meth:`Config.units` expands a config into them, and :meth:`Config.hash`
identifies a unit (sweeps use it to skip finished runs).

Example:
    >>> cfg = Config.from_dict({"data": {"dataset": "synthetic", "n_clients": 10}})
    >>> cfg.data.n_clients, cfg.defenses[0].rule
    (10, 'mean')
    >>> cfg.with_overrides(["train.rounds=7"]).train.rounds
    7
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import tomllib

from fedsec.errors import ConfigError

PARTITIONS = ("iid", "dirichlet", "shards")
TRAIN_MODES = ("fedsgd", "fedavg")
DATA_ATTACKS = ("none", "label_flip", "backdoor")
DP_MODES = ("none", "dpsgd", "user", "distributed")
DP_ORDERS = ("clip_rule_noise", "local_noise_rule")
ACCOUNTANTS = ("rdp", "prv")
DEVICES = ("auto", "cpu", "cuda")


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


class _Section:
    """Mixin: the section name used in error messages and the range check helper."""

    SECTION: ClassVar[str] = ""

    def _need(self, key: str, ok: bool, want: str) -> None:
        if not ok:
            raise ConfigError(f"{self.SECTION}.{key}: got {_fmt(getattr(self, key))}; want {want}")


@dataclass(frozen=True)
class DataConfig(_Section):
    """``[data]``: dataset, clients and the label-skew partition.

    ``partition = "dirichlet"`` draws each class's share per client from Dir(``beta``) (smaller beta,
    more heterogeneous; Hsu et al. 2019, the stress-testing paper's setting); ``"shards"`` is the
    extreme non-IID split of McMahan et al. 2017. Every client holds at least ``min_samples``.
    ``options`` go to the dataset loader (e.g. ``n_samples`` for ``synthetic``).
    """

    SECTION: ClassVar[str] = "data"
    dataset: str = "digits"
    data_dir: str | None = None
    n_clients: int = 25
    partition: str = "dirichlet"
    beta: float = 0.3
    min_samples: int = 8
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._need("dataset", bool(self.dataset), "a dataset name")
        self._need("n_clients", self.n_clients >= 2, ">= 2")
        self._need("partition", self.partition in PARTITIONS, f"one of {list(PARTITIONS)}")
        self._need("beta", self.beta > 0, "> 0")
        self._need("min_samples", self.min_samples >= 1, ">= 1")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """``[model]``: a name known to :func:`fedsec.models.make_model` and its keyword arguments."""

    SECTION: ClassVar[str] = "model"
    name: str = "cnn"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._need("name", bool(self.name), "a model name")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """``[train]``: the federated optimisation.

    FedSGD: every client sends one minibatch gradient at the global model; the server steps
    ``w <- w - server_lr * lr * agg``. FedAvg: every client runs ``local_steps`` SGD steps of size
    ``lr`` and sends ``w_global - w_local``; the server steps ``w <- w - server_lr * agg``.
    Worker momentum (Karimireddy et al., ICML 2021): each client sends
    ``m_i <- momentum * m_i + (1 - momentum) * g_i`` instead of ``g_i``. ``weight_decay`` adds
    ``weight_decay * w`` to every client gradient. ``clients_per_round = 0`` means all clients.
    """

    SECTION: ClassVar[str] = "train"
    mode: str = "fedsgd"
    rounds: int = 100
    lr: float = 0.1
    server_lr: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 32
    local_steps: int = 1
    clients_per_round: int = 0
    vectorize: bool = True
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        self._need("mode", self.mode in TRAIN_MODES, f"one of {list(TRAIN_MODES)}")
        self._need("rounds", self.rounds >= 1, ">= 1")
        self._need("lr", self.lr > 0, "> 0")
        self._need("server_lr", self.server_lr > 0, "> 0")
        self._need("momentum", 0.0 <= self.momentum < 1.0, "in [0, 1)")
        self._need("weight_decay", self.weight_decay >= 0, ">= 0")
        self._need("batch_size", self.batch_size >= 1, ">= 1")
        self._need("local_steps", self.local_steps >= 1, ">= 1")
        self._need("clients_per_round", self.clients_per_round >= 0, ">= 0 (0 = all clients)")
        self._need("device", self.device in DEVICES, f"one of {list(DEVICES)}")
        self._need("seed", self.seed >= 0, ">= 0")


@dataclass(frozen=True)
class AttackConfig(_Section):
    """``[attack]``: ``f`` Byzantine clients (the actual number), the vector attack and data poisoning.

    ``name`` is a name known to ``robust.attacks.make`` or ``"none"``; ``strength`` (optional) sets
    the attack's strength parameter (ALIE's z, IPM's epsilon ...) through ``with_strength``.
    ``data = "label_flip"`` relabels the Byzantine clients' samples ``y -> C - 1 - y``;
    ``data = "backdoor"`` stamps a pixel trigger on ``backdoor_fraction`` of their samples and relabels
    them ``backdoor_target`` (Gu et al. 2017, BadNets); the backdoor success rate is reported.
    """

    SECTION: ClassVar[str] = "attack"
    name: str = "none"
    f: int = 0
    strength: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "none"
    backdoor_target: int = 0
    backdoor_fraction: float = 0.5

    def __post_init__(self) -> None:
        self._need("name", bool(self.name), 'an attack name or "none"')
        self._need("f", self.f >= 0, ">= 0")
        self._need("data", self.data in DATA_ATTACKS, f"one of {list(DATA_ATTACKS)}")
        self._need("backdoor_target", self.backdoor_target >= 0, ">= 0")
        self._need("backdoor_fraction", 0.0 < self.backdoor_fraction <= 1.0, "in (0, 1]")
        if self.strength is not None:
            self._need("strength", self.strength >= 0, ">= 0")

    @property
    def active(self) -> bool:
        return self.f > 0 and (self.name != "none" or self.data != "none")


@dataclass(frozen=True)
class DefenseConfig(_Section):
    """``[defense]`` / ``[[defense]]``: pre-aggregators then a rule, with the assumed ``f``.

    ``f`` defaults to ``attack.f``. ``kwargs`` go to the rule, ``pre_kwargs`` maps a pre-aggregator
    name to its keyword arguments. ``label`` names the defense in tables (default: the paper's style,
    ``trimmed_mean(nnm)``).
    """

    SECTION: ClassVar[str] = "defense"
    rule: str = "mean"
    pre: tuple[str, ...] = ()
    f: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    pre_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        self._need("rule", bool(self.rule), "a rule name")
        if self.f is not None:
            self._need("f", self.f >= 0, ">= 0")
        unknown = sorted(set(self.pre_kwargs) - set(self.pre))
        if unknown:
            raise ConfigError(f"defense.pre_kwargs: got keys {unknown}; want names listed in defense.pre")
        for k, v in self.pre_kwargs.items():
            if not isinstance(v, dict):
                raise ConfigError(f"defense.pre_kwargs.{k}: got {type(v).__name__}; want a table")
        if not self.label:
            name = self.rule + "".join(f"({p})" for p in self.pre)
            object.__setattr__(self, "label", name)


@dataclass(frozen=True)
class ProtocolConfig(_Section):
    """``[protocol]``: how the round is aggregated. ``"plain"`` runs the defense in the clear; other
    protocols (``"secagg"``, ``"ckks_*"``, ``"secagg_ddp"`` ...) get ``kwargs``."""

    SECTION: ClassVar[str] = "protocol"
    name: str = "plain"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._need("name", bool(self.name), "a protocol name")


@dataclass(frozen=True)
class DPConfig(_Section):
    """``[dp]``: differential privacy.

    ``mode``: ``"none"``; ``"dpsgd"`` (sample-level DP-SGD on every honest client, Abadi et al. 2016);
    ``"user"`` (DP-FedAvg around the rule, McMahan et al. 2018; sampling rate = cohort / population);
    ``"distributed"`` (discrete noise under secure aggregation, protocol ``secagg_ddp``).
    ``budget_epsilon`` stops training before the accountant's epsilon would exceed it.
    """

    SECTION: ClassVar[str] = "dp"
    mode: str = "none"
    noise_multiplier: float = 1.0
    clip: float = 1.0
    delta: float = 1e-5
    accountant: str = "rdp"
    order: str = "clip_rule_noise"
    budget_epsilon: float | None = None

    def __post_init__(self) -> None:
        self._need("mode", self.mode in DP_MODES, f"one of {list(DP_MODES)}")
        self._need("noise_multiplier", self.noise_multiplier >= 0, ">= 0")
        self._need("clip", self.clip > 0, "> 0")
        self._need("delta", 0.0 < self.delta < 1.0, "in (0, 1)")
        self._need("accountant", self.accountant in ACCOUNTANTS, f"one of {list(ACCOUNTANTS)}")
        self._need("order", self.order in DP_ORDERS, f"one of {list(DP_ORDERS)}")
        if self.budget_epsilon is not None:
            self._need("budget_epsilon", self.budget_epsilon > 0, "> 0")


@dataclass(frozen=True)
class EvalConfig(_Section):
    """``[eval]``: evaluate every ``every`` rounds (and after the last); ``batch_size`` for the test set."""

    SECTION: ClassVar[str] = "eval"
    every: int = 5
    batch_size: int = 2048

    def __post_init__(self) -> None:
        self._need("every", self.every >= 1, ">= 1")
        self._need("batch_size", self.batch_size >= 1, ">= 1")


@dataclass(frozen=True)
class OutputConfig(_Section):
    """``[output]``: run directory, plots, model checkpoints every ``checkpoint_every`` rounds (0: last
    round only, -1: never)."""

    SECTION: ClassVar[str] = "output"
    dir: str = "runs/fedsec"
    plots: bool = True
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        self._need("dir", bool(self.dir), "a directory path")
        self._need("checkpoint_every", self.checkpoint_every >= -1, ">= -1")


@dataclass(frozen=True)
class SweepConfig(_Section):
    """``[sweep]``: a table of lists; keys are ``section.key`` (``"attack.strength" = [0, 2.5]``) or
    ``defense`` (a list of defense labels). The grid is their Cartesian product."""

    SECTION: ClassVar[str] = "sweep"
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, values in self.grid.items():
            if not isinstance(values, tuple) or not values:
                raise ConfigError(f"sweep.{key}: got {_fmt(values)}; want a non-empty list")
            if key != "defense" and key.count(".") != 1:
                raise ConfigError(f"sweep.{key}: got key {key!r}; want 'section.key' or 'defense'")


@dataclass(frozen=True)
class StressConfig(_Section):
    """``[stress]``: attack strengths searched per defense and beta (``fedsec stress``); ``refine``
    extra bisection steps around the most damaging grid point; results averaged over ``seeds``."""

    SECTION: ClassVar[str] = "stress"
    strengths: tuple[float, ...] = (0.0, 0.5, 2.5, 5.0, 8.0, 10.0)
    betas: tuple[float, ...] = (0.1, 0.3, 0.5)
    seeds: tuple[int, ...] = (0,)
    refine: int = 0

    def __post_init__(self) -> None:
        self._need("strengths", len(self.strengths) > 0 and min(self.strengths) >= 0, "a non-empty list >= 0")
        self._need("betas", len(self.betas) > 0 and min(self.betas) > 0, "a non-empty list > 0")
        self._need("seeds", len(self.seeds) > 0 and min(self.seeds) >= 0, "a non-empty list >= 0")
        self._need("refine", self.refine >= 0, ">= 0")


_SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "attack": AttackConfig,
    "protocol": ProtocolConfig,
    "dp": DPConfig,
    "eval": EvalConfig,
    "output": OutputConfig,
    "stress": StressConfig,
}
_TOP_KEYS = {"name", "defense", "sweep", *_SECTIONS}
# Sections that do not change what a unit run computes are left out of its hash.
_NOT_HASHED = ("output", "sweep", "stress", "name")


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against a field annotation; returns (ok, converted value)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return True, None
                continue
            ok, conv = _type_ok(value, arg)
            if ok:
                return True, conv
        return False, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        (item_tp, _ellipsis) = typing.get_args(tp)
        out = []
        for v in value:
            ok, conv = _type_ok(v, item_tp)
            if not ok:
                return False, value
            out.append(conv)
        return True, tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        _, val_tp = typing.get_args(tp)
        if typing.get_origin(val_tp) is tuple:
            conv_d = {}
            for k, v in value.items():
                ok, conv = _type_ok(v, val_tp)
                if not ok:
                    return False, value
                conv_d[k] = conv
            return True, conv_d
        return True, dict(value)
    raise TypeError(f"unsupported annotation {tp!r}")  # pragma: no cover - a bug in this module


def _want(tp: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_want(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + " (or absent)"
    if origin is tuple:
        return f"a list of {_want(typing.get_args(tp)[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "a table"
    return str(tp)


def _build(cls: type[Any], section: str, table: Any) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{section}: got {type(table).__name__}; want a table")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: got an unknown key; want one of {names}")
    kwargs = {}
    for key, value in table.items():
        ok, conv = _type_ok(value, hints[key])
        if not ok:
            raise ConfigError(f"{section}.{key}: got {_fmt(value)}; want {_want(hints[key])}")
        kwargs[key] = conv
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """Parse an override value as TOML; a bare word that is not TOML is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _plain(obj: Any) -> Any:
    """Dataclasses/tuples to JSON-able dicts/lists (keys sorted later by json.dumps)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class Config:
    """A whole experiment. Build with :meth:`from_toml`, :meth:`from_dict` or the constructor."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    defenses: tuple[DefenseConfig, ...] = (DefenseConfig(),)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    dp: DPConfig = field(default_factory=DPConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    stress: StressConfig = field(default_factory=StressConfig)
    name: str = "fedsec"

    def __post_init__(self) -> None:
        n = self.data.n_clients
        if not self.defenses:
            raise ConfigError("defense: got no defense; want at least one [defense] table")
        labels = [d.label for d in self.defenses]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"defense.label: got duplicate labels {dup}; want distinct labels")
        if 2 * self.attack.f >= n:
            raise ConfigError(f"attack.f: got {self.attack.f} with data.n_clients={n}; want f < n/2")
        if self.attack.f > 0 and not self.attack.active:
            raise ConfigError(
                f"attack.f: got {self.attack.f} with attack.name='none' and attack.data='none'; "
                "want an attack or f = 0"
            )
        cohort = self.train.clients_per_round or n
        if cohort > n:
            raise ConfigError(f"train.clients_per_round: got {cohort}; want <= data.n_clients={n}")
        for d in self.defenses:
            f = self.assumed_f(d)
            if 2 * f >= n:
                raise ConfigError(f"defense.f: got {f} with data.n_clients={n}; want f < n/2")
        if self.protocol.name != "plain":
            for d in self.defenses:
                if d.rule != "mean" or d.pre:
                    raise ConfigError(
                        f"defense.rule: got {d.label!r} with protocol.name={self.protocol.name!r}; want "
                        "'mean' and no pre (a non-plain protocol fixes its own aggregation rule)"
                    )
        if self.dp.mode == "distributed" and self.protocol.name != "secagg_ddp":
            raise ConfigError(
                f"dp.mode: got 'distributed' with protocol.name={self.protocol.name!r}; want protocol "
                "'secagg_ddp'"
            )
        if self.dp.mode == "user" and self.protocol.name != "plain":
            raise ConfigError(
                f"dp.mode: got 'user' with protocol.name={self.protocol.name!r}; want protocol 'plain'"
            )
        if self.dp.budget_epsilon is not None and self.dp.mode != "user":
            raise ConfigError(
                f"dp.budget_epsilon: got {self.dp.budget_epsilon} with dp.mode={self.dp.mode!r}; want "
                "dp.mode = 'user' (the budget stop is supported for user-level DP)"
            )
        for key in self.sweep.grid:
            if key == "defense":
                missing = sorted(set(self.sweep.grid[key]) - set(labels))
                if missing:
                    raise ConfigError(f"sweep.defense: got {missing}; want labels among {labels}")
            else:
                sec, k = key.split(".")
                if sec not in _SECTIONS or sec in ("output", "stress"):
                    raise ConfigError(f"sweep.{key}: got section {sec!r}; want one of data, model, ...")
                names = [f.name for f in dataclasses.fields(_SECTIONS[sec])]
                if k not in names:
                    raise ConfigError(f"sweep.{key}: got an unknown key; want one of {names}")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Config:
        """Build and validate from a TOML-shaped dict."""
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"{unknown[0]}: got an unknown section; want one of {sorted(_TOP_KEYS)}")
        kwargs: dict[str, Any] = {}
        for sec, scls in _SECTIONS.items():
            if sec in raw:
                kwargs[sec] = _build(scls, sec, raw[sec])
        if "defense" in raw:
            d = raw["defense"]
            tables = d if isinstance(d, list) else [d]
            kwargs["defenses"] = tuple(_build(DefenseConfig, "defense", t) for t in tables)
        if "sweep" in raw:
            sw = raw["sweep"]
            if not isinstance(sw, Mapping):
                raise ConfigError(f"sweep: got {type(sw).__name__}; want a table of lists")
            grid = {}
            for k, v in sw.items():
                if not isinstance(v, list):
                    raise ConfigError(f"sweep.{k}: got {_fmt(v)}; want a non-empty list")
                grid[k] = tuple(v)
            kwargs["sweep"] = SweepConfig(grid=grid)
        if "name" in raw:
            if not isinstance(raw["name"], str):
                raise ConfigError(f"name: got {_fmt(raw['name'])}; want a string")
            kwargs["name"] = raw["name"]
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Sequence[str] = ()) -> Config:
        """Read a TOML file, apply ``section.key=value`` overrides, validate."""
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config: got {str(p)!r}, which does not exist; want a TOML file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config {str(p)!r}: got invalid TOML ({e}); want a valid TOML file") from None
        return cls.from_dict(apply_overrides(raw, overrides))

    def to_dict(self) -> dict[str, Any]:
        """TOML-shaped dict (``from_dict(to_dict())`` round-trips)."""
        out = _plain(self)
        out["defense"] = out.pop("defenses")
        out["sweep"] = out.pop("sweep")["grid"]
        for sec in out.values():
            if isinstance(sec, dict):
                for k in [k for k, v in sec.items() if v is None]:
                    del sec[k]
        for d in out["defense"]:
            for k in [k for k, v in d.items() if v is None]:
                del d[k]
        return out

    def to_toml(self) -> str:
        """The resolved config as TOML text (written into every run directory)."""
        return dump_toml(self.to_dict())

    def with_overrides(self, overrides: Sequence[str]) -> Config:
        return Config.from_dict(apply_overrides(self.to_dict(), overrides))

    def replace(self, **changes: Any) -> Config:
        """``replace(**{"data.beta": 0.1, "defense": "median"})``: a validated copy."""
        raw = self.to_dict()
        for key, value in changes.items():
            raw = _set(raw, key, value)
        return Config.from_dict(raw)

    # ----------------------------------------------------------------- queries
    def assumed_f(self, defense: DefenseConfig | None = None) -> int:
        d = defense or self.defenses[0]
        return self.attack.f if d.f is None else d.f

    @property
    def defense(self) -> DefenseConfig:
        """The defense of a unit run."""
        if len(self.defenses) != 1:
            raise ConfigError(f"defense: got {len(self.defenses)} defenses; want exactly one for a unit run")
        return self.defenses[0]

    def units(self) -> list[Config]:
        """One unit config per defense (no sweep expansion)."""
        return [dataclasses.replace(self, defenses=(d,), sweep=SweepConfig()) for d in self.defenses]

    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of what the run computes: every section but output/sweep/stress."""
        d = self.to_dict()
        for k in _NOT_HASHED:
            d.pop(k, None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set ``section.key`` (or the ``defense`` axis by label) in a copy of a TOML-shaped dict."""
    raw = json.loads(json.dumps(raw, default=list))
    if key == "defense":
        ds = raw.get("defense", [{}])
        ds = ds if isinstance(ds, list) else [ds]
        match = [d for d in ds if DefenseConfig(**_tuple_pre(d)).label == value] if ds else []
        if not match:
            raise ConfigError(f"defense: got {value!r}; want one of the configured defense labels")
        raw["defense"] = match[:1]
        return raw
    if key.count(".") != 1:
        raise ConfigError(f"--set {key}: got a key without a section; want section.key=value")
    sec, k = key.split(".")
    if sec == "defense":
        ds = raw.get("defense", {})
        for d in ds if isinstance(ds, list) else [ds]:
            d[k] = value
        raw["defense"] = ds
        return raw
    if sec not in _SECTIONS and sec != "sweep":
        raise ConfigError(f"{sec}: got an unknown section; want one of {sorted(_TOP_KEYS)}")
    table = raw.setdefault(sec, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{sec}: got {type(table).__name__}; want a table")
    table[k] = value
    return raw


def _tuple_pre(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    if "pre" in out:
        out["pre"] = tuple(out["pre"])
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as TOML) to a TOML-shaped dict."""
    out = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: got no '='; want section.key=value")
        key, text = item.split("=", 1)
        out = _set(out, key.strip(), _parse_value(text.strip()))
    return out


# ------------------------------------------------------------------ TOML writer
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"config value: got {v!r} of type {type(v).__name__}; want a TOML value")


def dump_toml(d: Mapping[str, Any]) -> str:
    """A small TOML writer for config-shaped dicts (scalars, lists, inline tables; one table level)."""
    lines: list[str] = []
    for k, v in d.items():
        if not isinstance(v, dict | list) or (
            isinstance(v, list) and not any(isinstance(x, dict) for x in v)
        ):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict) and v:
            lines.append(f"\n[{k}]")
            lines += [f"{json.dumps(str(kk))} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for t in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{json.dumps(str(kk))} = {_toml_value(vv)}" for kk, vv in t.items()]
    return "\n".join(lines) + "\n"
