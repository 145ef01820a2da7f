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
from typing import Any

import tomllib

from fedsec.errors import ConfigError
from fedsec.sections import (
    AttackConfig,
    DataConfig,
    DefenseConfig,
    DPConfig,
    EvalConfig,
    ModelConfig,
    OutputConfig,
    ProtocolConfig,
    StressConfig,
    SweepConfig,
    TrainConfig,
    _fmt,
)
from protocols.mechanisms import MECHANISMS

__all__ = [
    "AttackConfig",
    "Config",
    "DPConfig",
    "DataConfig",
    "DefenseConfig",
    "EvalConfig",
    "ModelConfig",
    "OutputConfig",
    "ProtocolConfig",
    "StressConfig",
    "SweepConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_toml",
]

_SECTIONS: dict[str, Any] = {
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


def parse_value(text: str) -> Any:
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
        _check_names(self.defenses)
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
        for d in self.defenses:
            mech = self.mechanism(d)
            if mech not in MECHANISMS and (d.rule != "mean" or d.pre):
                # A protocol named for its rule (ckks_krum ...) fixes it; a mechanism composes any rule
                # it can compute (protocols.make refuses the others when the run is built).
                raise ConfigError(
                    f"defense.rule: got {d.label!r} with protocol {mech!r}; want 'mean' and no pre, or a "
                    f"mechanism that composes with the rule, one of {MECHANISMS.names()}"
                )
            if self.dp.mode == "distributed" and mech != "secagg_ddp":
                raise ConfigError(
                    f"dp.mode: got 'distributed' with protocol {mech!r}; want protocol 'secagg_ddp'"
                )
            if self.dp.mode == "user" and mech != "plain":
                raise ConfigError(f"dp.mode: got 'user' with protocol {mech!r}; want protocol 'plain'")
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
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config: got {str(p)!r}, which does not exist; want a TOML file") from None
        except IsADirectoryError:
            raise ConfigError(f"config: got {str(p)!r}, which is a directory; want a TOML file") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"config {str(p)!r}: got bytes that are not UTF-8 ({e}); want UTF-8 TOML"
            ) from None
        except OSError as e:
            raise ConfigError(
                f"config {str(p)!r}: got an unreadable file ({e}); want a readable TOML file"
            ) from None
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
    def mechanism(self, defense: DefenseConfig | None = None) -> str:
        """The mechanism (or protocol) a defense runs under: its own ``mechanism``, else ``[protocol]``."""
        d = self.defense if defense is None else defense
        return self.protocol.name if d.mechanism is None else d.mechanism

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


def _check_names(defenses: Sequence[DefenseConfig]) -> None:
    """Unknown rule or pre-aggregator names are reported as such (before labels are compared)."""
    import robust

    for d in defenses:
        if d.rule not in robust.AGGREGATORS:
            raise ConfigError(f"defense.rule: got {d.rule!r}; want one of {robust.AGGREGATORS.names()}")
        for p in d.pre:
            if p not in robust.PRE_AGGREGATORS:
                raise ConfigError(f"defense.pre: got {p!r}; want one of {robust.PRE_AGGREGATORS.names()}")


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
    if "." not in key and (key in _SECTIONS or key == "sweep"):
        if not isinstance(value, dict):
            raise ConfigError(f"--set {key}: got {_fmt(value)}; want a table, e.g. {key}={{...}}")
        raw[key] = value  # a whole section, e.g. --set 'sweep={"train.seed" = [0, 1]}'
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
        out = _set(out, key.strip(), parse_value(text.strip()))
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
