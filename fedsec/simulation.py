"""The federated round loop of one unit run (one defense): the orchestrator, no algorithm code.

A round (DESIGN.md): sample the cohort -> every client computes its update at the global model
(:mod:`fedsec.training`, all clients together) -> Byzantine clients replace theirs through the attack (they
know their own honest updates; omniscient attacks also the honest ones) -> the protocol aggregates
(``plain``: the defense in the clear) -> the server steps -> evaluate every ``eval.every`` rounds.

The Byzantine detection rate of a selecting rule: after the round, ``accepted`` is the set of rows that
entered the aggregate; the true-positive rate is the fraction of Byzantine rows left out, the
false-positive rate the fraction of honest rows left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fedsec
import robust
import robust.attacks
from fedsec import round as fround
from fedsec.build import build_attack, build_defense, build_protocol, rule_extras, threat_model
from fedsec.cohorts import draw_cohort, sampler_for
from fedsec.config import Config
from fedsec.errors import ConfigError, DataError
from fedsec.observers import Checkpoints, Evaluator, Metrics, PrivacyBudget
from fedsec.outputs import RunWriter, csv_text
from fedsec.overhead import OverheadLog
from fedsec.privacy import PrivacyWiring
from fedsec.training import ClientComputer, ClientData, FlatModel, poison, resolve_device
from fedsec.validate import check_data, check_device

ProgressFn = Callable[[int, int], None]


@dataclass
class UnitResult:
    """Outcome of one unit run (one defense)."""

    label: str
    config_hash: str
    seed: int
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path | None = None
    weights: torch.Tensor | None = field(default=None, repr=False)

    @property
    def max_accuracy(self) -> float:
        return float(self.summary["max_accuracy"])

    @property
    def final_accuracy(self) -> float:
        return float(self.summary["final_accuracy"])


def _load(cfg: Config) -> tuple[Any, Any, list[np.ndarray], np.ndarray]:
    from fedsec.data import label_histogram, load_dataset, partition

    train, test = load_dataset(
        cfg.data.dataset, data_dir=cfg.data.data_dir, seed=cfg.train.seed, **cfg.data.options
    )
    n = cfg.data.n_clients
    need = n * cfg.data.min_samples
    if len(train.y) < need:
        raise ConfigError(
            f"data.n_clients: got {n} clients x data.min_samples={cfg.data.min_samples} for dataset "
            f"{cfg.data.dataset!r} of {len(train.y)} training samples; "
            f"want at most {len(train.y)} samples in all"
        )
    rng = np.random.default_rng([cfg.train.seed, 1])
    ys = train.y.numpy()
    kw: dict[str, Any] = {"min_samples": cfg.data.min_samples, "rng": rng}
    if cfg.data.partition == "dirichlet":
        kw["beta"] = cfg.data.beta
    parts = partition(ys, n, cfg.data.partition, **kw)
    hist = np.asarray(label_histogram(ys, parts, train.num_classes))
    return train, test, [np.asarray(p) for p in parts], hist


@dataclass
class UnitData:
    """A unit run's data: the dataset, every client's partition (the Dirichlet or IID split of
    :func:`_load`), the Byzantine ids and the training samples after any data-level attack. The Flower
    client app (:mod:`fedsec.flower`) builds its node's partition from it."""

    train: Any
    test: Any
    parts: list[np.ndarray]
    hist: np.ndarray
    byz_ids: np.ndarray
    is_byz: np.ndarray
    x_train: torch.Tensor
    y_train: torch.Tensor
    rng: np.random.Generator  # the cohort sampler's generator, after drawing the Byzantine ids


def load_unit_data(cfg: Config) -> UnitData:
    """Load and split the data, draw the Byzantine ids and poison their samples, all from the seed."""
    seed = cfg.train.seed
    train, test, parts, hist = _load(cfg)
    check_data(cfg, train.num_classes)
    n, f_actual = cfg.data.n_clients, cfg.attack.f
    rng = np.random.default_rng([seed, 2])
    byz_ids = np.sort(rng.choice(n, size=f_actual, replace=False)) if f_actual else np.empty(0, np.int64)
    is_byz = np.zeros(n, bool)
    is_byz[byz_ids] = True
    x_train, y_train = train.x, train.y
    if f_actual and cfg.attack.data != "none":
        byz_samples = np.concatenate([parts[i] for i in byz_ids])
        x_train, y_train = poison(
            x_train, y_train, byz_samples, kind=cfg.attack.data, num_classes=train.num_classes,
            target=cfg.attack.backdoor_target, fraction=cfg.attack.backdoor_fraction,
            rng=np.random.default_rng([seed, 3]),
        )  # fmt: skip
    return UnitData(train, test, parts, hist, byz_ids, is_byz, x_train, y_train, rng)


def unit_model(cfg: Config, train: Any, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """``model``, or ``[model] name`` built for the data, after seeding torch with the run's seed."""
    torch.manual_seed(cfg.train.seed)
    if model is not None:
        return model
    from fedsec.models import make_model

    try:
        return make_model(cfg.model.name, tuple(train.x.shape[1:]), train.num_classes, **cfg.model.kwargs)
    except KeyError as e:
        raise ConfigError(f"model.name: got {cfg.model.name!r}; want a known model ({e})") from e


def simulate(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    progress: ProgressFn | None = None,
    model: torch.nn.Module | None = None,
    observers: list[fround.Observer] | None = None,
    rounds: Callable[[RoundLoop], None] | None = None,
) -> UnitResult:
    """Run one unit config (one defense); write its run directory when ``run_dir`` is given.

    ``train.threads > 0`` sets torch's CPU thread count for the run (restored afterwards). Every
    ``observer(record)`` receives each round's :class:`fedsec.round.RoundRecord`. ``rounds(loop)``
    drives the rounds (default: in this process; :func:`fedsec.flower.simulate` drives them over
    Flower messages); the run directory and summary are the same either way.
    """
    before = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _simulate(
            cfg, run_dir, progress=progress, model=model, observers=observers, rounds=rounds or _rounds
        )
    finally:
        torch.set_num_threads(before)


@dataclass
class _Parts:
    """Everything one unit run builds before its first round: data, model, parties, generators."""

    cfg: Config
    device: torch.device
    hist: np.ndarray
    byz_ids: np.ndarray
    is_byz: np.ndarray
    evaluator: Evaluator
    computer: ClientComputer
    root_computer: ClientComputer | None
    rule: Any
    privacy: PrivacyWiring
    proto: Any
    attack: Any
    w: torch.Tensor
    rng: np.random.Generator
    gen: torch.Generator = field(repr=False)
    atk_gen: torch.Generator = field(repr=False)
    momentum: torch.Tensor | None = field(default=None, repr=False)

    def client_stack(self, cohort: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """The cohort's updates after momentum, the attack and local DP noise; and the rule's extras."""
        w, device, priv = self.w, self.device, self.privacy
        clients = torch.from_numpy(cohort).to(device)
        if not len(cohort):  # an empty Poisson cohort: no update, the DP noise is still released
            stack = torch.zeros((0, self.evaluator.fm.d), device=device)
        elif priv.client_level:
            stack = priv.client_updates(w, cohort, self.computer, clients, self.gen)
        else:
            stack = self.computer.updates(w, clients, self.gen)
        return self.server_stack(cohort, stack)

    def server_stack(self, cohort: np.ndarray, stack: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """What the server side makes of the cohort's computed updates ``stack`` (row ``r`` from client
        ``cohort[r]``): server-kept momentum, the root gradient, the attack, local DP noise; and the
        rule's extras. Shared by the in-process loop and the Flower strategy (:mod:`fedsec.flower`)."""
        w, device, priv = self.w, self.device, self.privacy
        clients = torch.from_numpy(cohort).to(device)
        honest_rows = np.flatnonzero(~self.is_byz[cohort])
        byz_rows = np.flatnonzero(self.is_byz[cohort])
        if self.momentum is not None:
            beta = self.cfg.train.momentum
            if len(cohort) == len(self.momentum) and bool((cohort == np.arange(len(cohort))).all()):
                # Every client, in order: the same update in place, without gathering and scattering.
                self.momentum.mul_(beta).add_((1 - beta) * stack)
                stack = self.momentum.clone()
            else:
                self.momentum[clients] = beta * self.momentum[clients] + (1 - beta) * stack
                stack = self.momentum[clients].clone()
        root = None
        if self.root_computer is not None:
            root = self.root_computer.updates(w, torch.zeros(1, dtype=torch.long, device=device), self.gen)[0]
        extras = rule_extras(self.rule, root=root, ids=cohort)
        # (A cohort of Byzantine clients only has no honest update to attack: they send their own.)
        if self.attack is not None and len(byz_rows) and len(honest_rows):
            br = torch.from_numpy(byz_rows).to(device)
            rule = partial(self.rule, **extras)
            ctx = robust.attacks.AttackContext(
                n=len(cohort), f=len(byz_rows), rule=rule, generator=self.atk_gen
            )
            honest = stack[torch.from_numpy(honest_rows).to(device)] if self.attack.omniscient else None
            stack[br] = self.attack(stack[br], honest, ctx=ctx).to(stack.dtype)
        return priv.local_noise(stack), extras


def _prepare(cfg: Config, model: torch.nn.Module | None) -> _Parts:
    """Load and partition the data, poison it, build the model, the rule, the protocol and the attack."""
    seed = cfg.train.seed
    check_device(cfg.train.device)
    device = resolve_device(cfg.train.device)
    u = load_unit_data(cfg)
    train, test, parts, hist, byz_ids, is_byz = u.train, u.test, u.parts, u.hist, u.byz_ids, u.is_byz
    n, f_actual, rng = cfg.data.n_clients, cfg.attack.f, u.rng
    data = ClientData.build(u.x_train, u.y_train, parts, device)
    x_test, y_test = test.x.to(device), test.y.to(device)
    bd_x = None
    if cfg.attack.data == "backdoor" and f_actual:
        from fedsec.training import apply_trigger, trigger_value

        bd_x = apply_trigger(x_test[y_test != cfg.attack.backdoor_target], trigger_value(train.x))
    model = unit_model(cfg, train, model).to(device)
    fm = FlatModel(model)
    tr = cfg.train

    def computer_for(client_data: ClientData) -> ClientComputer:
        return ClientComputer(
            fm, client_data, mode=tr.mode, lr=tr.lr, batch_size=tr.batch_size, local_steps=tr.local_steps,
            weight_decay=tr.weight_decay, engine=tr.engine,
        )  # fmt: skip

    computer = computer_for(data)
    rule = build_defense(cfg)
    root_computer = None
    if getattr(rule, "needs_root", False):
        # The server's root dataset (FLTrust): 100 clean training samples it holds itself.
        ridx = np.random.default_rng([seed, 4]).choice(len(train.y), min(100, len(train.y)), replace=False)
        root_computer = computer_for(ClientData.build(train.x, train.y, [ridx], device))
    privacy = PrivacyWiring(cfg, expected_clients=cfg.train.clients_per_round or n)
    proto = build_protocol(cfg, rule, privacy.wrap_rule(rule))
    privacy.bind_protocol(proto)
    attack = build_attack(cfg)
    momentum = torch.zeros((n, fm.d), device=device) if cfg.train.momentum > 0 else None
    privacy.setup_clients(model, train, parts, is_byz)
    evaluator = Evaluator(fm, x_test, y_test, cfg.eval.batch_size, bd_x, cfg.attack.backdoor_target)
    return _Parts(
        cfg, device, hist, byz_ids, is_byz, evaluator, computer, root_computer, rule, privacy, proto, attack,
        fm.flat().to(device), rng, torch.Generator().manual_seed(seed),
        torch.Generator().manual_seed(seed + 1_000_003), momentum,
    )  # fmt: skip


@dataclass
class RoundLoop:
    """The running state of one unit's rounds, whoever drives them: :func:`_rounds` in this process, or
    the Flower strategy (:mod:`fedsec.flower`) on Flower's runtime. :meth:`step` is the server's half
    of a round, shared by both: aggregate the cohort's stack, step the model, notify the observers."""

    p: _Parts
    observers: list[fround.Observer]
    budget: PrivacyBudget
    progress: ProgressFn | None = None
    stopped: str = "completed"
    diverged: bool = False
    rounds_done: int = 0
    client_times: list[float] = field(default_factory=list)
    engine: str | None = None  # how the clients computed (default: the in-process computer's engine)

    def step(
        self, t: int, cohort: np.ndarray, stack: torch.Tensor, extras: dict[str, Any], proto: Any = None
    ) -> fround.RoundRecord | None:
        """Round ``t`` on the server: its record, or ``None`` when the rule refused non-finite updates
        (the run stops). ``proto`` replaces the unit's protocol for this round (the Flower engine's
        secure path passes the mean it obtained over messages, :mod:`fedsec.flower.secure`)."""
        p, tr = self.p, self.p.cfg.train
        try:
            record = fround.aggregate(
                p.proto if proto is None else proto, stack, round_no=t, cohort=cohort, is_byz=p.is_byz,
                selector=p.rule,
                rng=np.random.default_rng([tr.seed, 5, t]), device=p.device, dtype=p.w.dtype, extras=extras,
            )  # fmt: skip
        except robust.NonFiniteError as e:
            # The rule refuses more non-finite updates than it tolerates: a server using it would
            # release a non-finite model. Record the divergence and stop this run cleanly.
            self.diverged, self.stopped, self.rounds_done = True, f"diverged at round {t}: {e}", t
            p.w = torch.full_like(p.w, float("nan"))
            return None
        self.diverged = self.diverged or not bool(torch.isfinite(record.aggregate).all())
        step_size = tr.server_lr * (tr.lr if tr.mode == "fedsgd" else 1.0)
        p.w = record.weights = p.w - step_size * record.aggregate
        self.rounds_done = t
        for observe in self.observers:
            observe(record)
        if self.progress is not None:
            self.progress(t, tr.rounds)
        return record

    def should_stop(self) -> bool:
        """Before a round: whether the run stops here (the privacy budget, or an earlier divergence)."""
        if self.budget.stop is not None and self.stopped == "completed":
            self.stopped = self.budget.stop
        return self.stopped != "completed"


def _rounds(loop: RoundLoop) -> None:
    """The in-process round loop: draw the cohort, compute every update here, then :meth:`RoundLoop.step`."""
    p, sampler = loop.p, sampler_for(loop.p.cfg)
    for t in range(1, p.cfg.train.rounds + 1):
        if loop.should_stop():
            break
        cohort = draw_cohort(sampler, p.rng)  # Poisson under DP-FedAvg of the mean: fedsec.cohorts
        t0 = time.perf_counter()
        stack, extras = p.client_stack(cohort)
        loop.client_times.append(time.perf_counter() - t0)
        if loop.step(t, cohort, stack, extras) is None:
            break


def _simulate(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    progress: ProgressFn | None = None,
    model: torch.nn.Module | None = None,
    observers: list[fround.Observer] | None = None,
    rounds: Callable[[RoundLoop], None] = _rounds,
) -> UnitResult:
    """Run one unit config (one defense); write its run directory when ``run_dir`` is given."""
    cfg.defense  # noqa: B018 - raises unless exactly one defense
    t_start = time.perf_counter()
    p = _prepare(cfg, model)
    seed, tr = cfg.train.seed, cfg.train
    writer = RunWriter(run_dir) if run_dir is not None else None
    base: dict[str, Any] = {
        "config_hash": cfg.hash(),
        "seed": seed,
        "version": fedsec.__version__,
        "defense": cfg.defense.label,
    }
    metrics = Metrics(p.evaluator, base, cfg.eval.every, tr.rounds, p.privacy, writer, t_start)
    totals, budget = fround.MeterTotals(), PrivacyBudget(p.privacy)
    checkpoints: Checkpoints | None = None
    writing: list[fround.Observer] = []
    if writer is not None:
        checkpoints = Checkpoints(writer, cfg.output.checkpoint_every, cfg.hash())
        writing = [checkpoints, OverheadLog(writer.path("overhead.jsonl"))]
    observing: list[fround.Observer] = [totals, metrics, budget, *writing, *(observers or [])]
    loop = RoundLoop(p, observing, budget, progress)
    try:
        if writer is not None:
            writer.write_text("config.toml", cfg.to_toml())
            writer.write_text("label_histogram.csv", _histogram_csv(p.hist, p.is_byz))
        rounds(loop)
        metrics.finish(p.w, loop.rounds_done)
        summary = _summary(cfg, p, metrics, totals, base, loop, t_start)
        if writer is not None:
            if checkpoints is not None and cfg.output.checkpoint_every >= 0:
                checkpoints.save(loop.rounds_done, p.w, "checkpoints/final.pt")
            _write_unit(writer, cfg, summary, metrics.rows)
            run_dir = writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return UnitResult(
        cfg.defense.label, base["config_hash"], seed, metrics.rows, summary, run_dir, p.w.detach().cpu()
    )


def _summary(
    cfg: Config, p: _Parts, metrics: Metrics, totals: fround.MeterTotals, base: dict[str, Any],
    loop: RoundLoop, t_start: float,
) -> dict[str, Any]:  # fmt: skip
    """The unit's summary: configuration, accuracy, timings, detection, protocol meter, privacy."""
    rows, client_times = metrics.rows, loop.client_times
    accs = [m["accuracy"] for m in rows if not math.isnan(m["accuracy"])]
    summary: dict[str, Any] = {
        **base,
        "label": cfg.defense.label,
        "dataset": cfg.data.dataset,
        "n_clients": cfg.data.n_clients,
        "beta": cfg.data.beta,
        "partition": cfg.data.partition,
        "attack": cfg.attack.name if cfg.attack.f else "none",
        "attack_data": cfg.attack.data,
        "strength": cfg.attack.strength,
        "f": cfg.attack.f,
        "protocol": cfg.mechanism(),
        "mode": cfg.train.mode,
        "rounds": loop.rounds_done,
        "max_accuracy": max(accs) if accs else math.nan,
        "final_accuracy": rows[-1]["accuracy"] if rows else math.nan,
        "agg_seconds_mean": float(np.mean(metrics.agg_times)) if metrics.agg_times else math.nan,
        "client_seconds_mean": float(np.mean(client_times)) if client_times else math.nan,
        "seconds": time.perf_counter() - t_start,
        "diverged": loop.diverged,
        "stopped": loop.stopped,
        "engine": loop.engine or p.computer.engine,
        "device": str(p.device),
        "byzantine_clients": [int(i) for i in p.byz_ids],
        "threat_model": threat_model(cfg, p.privacy.statement()),
    }
    summary.update(metrics.detection())
    if p.evaluator.bd_x is not None and rows:
        summary["backdoor_success"] = rows[-1].get("backdoor_success")
    summary.update(totals.summary())
    if p.privacy.statement() is not None:
        summary["privacy"] = p.privacy.statement()
    return summary


def _write_unit(writer: RunWriter, cfg: Config, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from fedsec.report import unit_report

    writer.write_text("summary.csv", csv_text([_flat_summary(summary)]))
    writer.write_text("report.md", unit_report(cfg, summary, rows))
    writer.write_json("summary.json", summary)


def _histogram_csv(hist: np.ndarray, is_byz: np.ndarray) -> str:
    rows = []
    for i, row in enumerate(hist):
        counts = {f"class_{c}": int(v) for c, v in enumerate(row)}
        rows.append({"client": i, "byzantine": bool(is_byz[i]), **counts})
    return csv_text(rows)


def _flat_summary(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in s.items() if not isinstance(v, dict | list)}
    priv = s.get("privacy")
    if isinstance(priv, dict):
        out.update({f"dp_{k}": v for k, v in priv.items() if not isinstance(v, dict | list)})
    return out


__all__ = ["DataError", "UnitResult", "build_attack", "build_defense", "build_protocol", "simulate"]
