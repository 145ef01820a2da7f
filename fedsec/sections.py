"""The sections of an experiment config: one frozen, validated dataclass per TOML table.

Each class checks its own ranges in ``__post_init__`` and raises :class:`fedsec.errors.ConfigError`
naming the key (``train.lr: got -1.0; want > 0``); checks across sections live in
:class:`fedsec.config.Config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fedsec.errors import ConfigError

PARTITIONS = ("iid", "dirichlet", "shards")
TRAIN_MODES = ("fedsgd", "fedavg")
DATA_ATTACKS = ("none", "label_flip", "backdoor")
DP_MODES = ("none", "dpsgd", "user", "distributed")
DP_ORDERS = ("clip_rule_noise", "local_noise_rule")
ACCOUNTANTS = ("rdp", "prv")
DEVICES = ("auto", "cpu", "cuda")
#: How clients are computed together (fedsec.training).
ENGINES = ("auto", "batched", "vmap", "loop")
#: Seeds are handed to numpy, torch and scikit-learn (whose ``random_state`` stops at 2^32 - 1);
#: derived seeds add offsets up to ~1e6.
MAX_SEED = 2**31 - 1


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


class _Section:
    """Mixin: the section name used in error messages and the range check helper."""

    SECTION: ClassVar[str] = ""

    def _need(self, key: str, ok: bool, want: str) -> None:
        if not ok:
            raise ConfigError(f"{self.SECTION}.{key}: got {_fmt(getattr(self, key))}; want {want}")

    def _finite(self, *keys: str) -> None:
        """Each key (a number, ``None`` or a tuple of numbers) holds finite values only: ``inf`` passes
        every ``> 0`` check and would train to a NaN model or crash mid-run."""
        for key in keys:
            v = getattr(self, key)
            vals = v if isinstance(v, tuple) else (v,)
            ok = all(x is None or (isinstance(x, int | float) and math.isfinite(x)) for x in vals)
            self._need(key, ok, "finite values" if isinstance(v, tuple) else "a finite number")


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
        self._finite("beta")
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
    ``engine``: how the cohort's gradients are computed together -- ``"auto"`` (default: batched
    matrix products when the model allows, else ``vmap``, else a loop), ``"batched"``, ``"vmap"`` or
    ``"loop"`` (see :mod:`fedsec.training`); all give the same updates up to float rounding.
    ``threads``: torch CPU threads during the run (0: torch's default). Small models run fastest on one
    thread, and a machine shared with other work makes extra threads spin.
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
    engine: str = "auto"
    device: str = "auto"
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self._finite("lr", "server_lr", "momentum", "weight_decay")
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
        self._need("engine", self.engine in ENGINES, f"one of {list(ENGINES)}")
        self._need("seed", 0 <= self.seed <= MAX_SEED, f"in [0, {MAX_SEED}]")
        self._need("threads", self.threads >= 0, ">= 0 (0: torch's default)")


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
        self._finite("strength", "backdoor_fraction")
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
    name to its keyword arguments. ``reputation = true`` wraps the defense in :class:`robust.Reputation`
    (per-client trust across rounds, keyed by client id; ``reputation_kwargs``: its ``decay``,
    ``threshold``, ``radius``, ``initial``). ``label`` names the defense in tables (default: the
    paper's style, ``trimmed_mean(nnm)``, with ``+reputation``). ``mechanism`` runs this defense under
    a confidentiality mechanism of :func:`protocols.make` (``"ckks"``, ``"secagg"`` ...; default: the
    ``[protocol]`` name) with ``mechanism_kwargs`` (default: ``protocol.kwargs``), so one run compares
    the same rule in the clear, under CKKS and under secure aggregation; the label then ends in
    ``" @ mechanism"``.
    """

    SECTION: ClassVar[str] = "defense"
    rule: str = "mean"
    pre: tuple[str, ...] = ()
    f: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    pre_kwargs: dict[str, Any] = field(default_factory=dict)
    reputation: bool = False
    reputation_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    mechanism: str | None = None
    mechanism_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._need("rule", bool(self.rule), "a rule name")
        if self.mechanism_kwargs is not None and self.mechanism is None:
            raise ConfigError(
                f"defense.mechanism_kwargs: got {sorted(self.mechanism_kwargs)} without defense.mechanism; "
                "want a mechanism"
            )
        if self.f is not None:
            self._need("f", self.f >= 0, ">= 0")
        unknown = sorted(set(self.pre_kwargs) - set(self.pre))
        if unknown:
            raise ConfigError(f"defense.pre_kwargs: got keys {unknown}; want names listed in defense.pre")
        for k, v in self.pre_kwargs.items():
            if not isinstance(v, dict):
                raise ConfigError(f"defense.pre_kwargs.{k}: got {type(v).__name__}; want a table")
        if self.reputation_kwargs and not self.reputation:
            raise ConfigError(
                f"defense.reputation_kwargs: got {sorted(self.reputation_kwargs)} with reputation = false; "
                "want reputation = true"
            )
        if not self.label:
            name = (
                self.rule + "".join(f"({p})" for p in self.pre) + ("+reputation" if self.reputation else "")
            )
            if self.mechanism is not None:
                name += f" @ {self.mechanism}"
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
        self._finite("noise_multiplier", "clip", "delta", "budget_epsilon")
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
        self._finite("strengths", "betas")
        self._need("seeds", all(0 <= s <= MAX_SEED for s in self.seeds), f"seeds in [0, {MAX_SEED}]")
        self._need("strengths", len(self.strengths) > 0 and min(self.strengths) >= 0, "a non-empty list >= 0")
        self._need("betas", len(self.betas) > 0 and min(self.betas) > 0, "a non-empty list > 0")
        self._need("seeds", len(self.seeds) > 0 and min(self.seeds) >= 0, "a non-empty list >= 0")
        self._need("refine", self.refine >= 0, ">= 0")
