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
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fedsec
import robust
import robust.attacks
from fedsec import round as fround
from fedsec.build import _RoundContext, build_attack, build_defense, build_protocol, threat_model
from fedsec.cohorts import draw_cohort, sampler_for
from fedsec.config import Config
from fedsec.errors import ConfigError, DataError
from fedsec.outputs import RunWriter, csv_text
from fedsec.privacy import PrivacyWiring
from fedsec.training import ClientComputer, ClientData, FlatModel, evaluate, poison, predict, resolve_device
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


def simulate(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    progress: ProgressFn | None = None,
    model: torch.nn.Module | None = None,
    observers: list[fround.Observer] | None = None,
) -> UnitResult:
    """Run one unit config (one defense); write its run directory when ``run_dir`` is given.

    ``train.threads > 0`` sets torch's CPU thread count for the run (restored afterwards). Every
    ``observer(record)`` receives each round's :class:`fedsec.round.RoundRecord`.
    """
    before = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _simulate(cfg, run_dir, progress=progress, model=model, observers=observers)
    finally:
        torch.set_num_threads(before)


def _simulate(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    progress: ProgressFn | None = None,
    model: torch.nn.Module | None = None,
    observers: list[fround.Observer] | None = None,
) -> UnitResult:
    """Run one unit config (one defense); write its run directory when ``run_dir`` is given."""
    cfg.defense  # noqa: B018 - raises unless exactly one defense
    t_start = time.perf_counter()
    seed = cfg.train.seed
    check_device(cfg.train.device)
    device = resolve_device(cfg.train.device)
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
    data = ClientData.build(x_train, y_train, parts, device)
    x_test, y_test = test.x.to(device), test.y.to(device)
    bd_x = None
    if cfg.attack.data == "backdoor" and f_actual:
        from fedsec.training import apply_trigger, trigger_value

        keep = y_test != cfg.attack.backdoor_target
        bd_x = apply_trigger(x_test[keep], trigger_value(train.x))

    torch.manual_seed(seed)
    if model is None:
        from fedsec.models import make_model

        try:
            model = make_model(
                cfg.model.name, tuple(train.x.shape[1:]), train.num_classes, **cfg.model.kwargs
            )
        except KeyError as e:
            raise ConfigError(f"model.name: got {cfg.model.name!r}; want a known model ({e})") from e
    model = model.to(device)
    fm = FlatModel(model)
    w = fm.flat().to(device)
    tr = cfg.train

    def computer_for(client_data: ClientData) -> ClientComputer:
        return ClientComputer(
            fm, client_data, mode=tr.mode, lr=tr.lr, batch_size=tr.batch_size, local_steps=tr.local_steps,
            weight_decay=tr.weight_decay, engine=tr.engine,
        )  # fmt: skip

    computer = computer_for(data)

    rule = build_defense(cfg)
    context = _RoundContext(rule)
    root_computer = None
    if context.needs_root:
        # The server's root dataset (FLTrust): 100 clean training samples it holds itself.
        ridx = np.random.default_rng([seed, 4]).choice(len(train.y), min(100, len(train.y)), replace=False)
        root_data = ClientData.build(train.x, train.y, [ridx], device)
        root_computer = computer_for(root_data)
    selector = context if (context.needs_root or context.needs_ids) else rule
    cohort_size = cfg.train.clients_per_round or n
    sampler = sampler_for(cfg)
    privacy = PrivacyWiring(cfg, expected_clients=cohort_size)
    server_rule = privacy.wrap_rule(selector)
    proto = build_protocol(cfg, rule, server_rule)
    privacy.bind_protocol(proto)
    attack = build_attack(cfg)
    gen = torch.Generator().manual_seed(seed)
    atk_gen = torch.Generator().manual_seed(seed + 1_000_003)
    momentum = torch.zeros((n, fm.d), device=device) if cfg.train.momentum > 0 else None
    step_size = cfg.train.server_lr * (cfg.train.lr if cfg.train.mode == "fedsgd" else 1.0)
    privacy.setup_clients(model, train, parts, is_byz)

    writer = RunWriter(run_dir) if run_dir is not None else None
    cfg_hash = cfg.hash()
    base = {
        "config_hash": cfg_hash,
        "seed": seed,
        "version": fedsec.__version__,
        "defense": cfg.defense.label,
    }
    metrics: list[dict[str, Any]] = []
    totals = fround.MeterTotals()
    observing: list[fround.Observer] = [totals, *(observers or [])]
    if writer is not None:
        from fedsec.overhead import OverheadLog

        observing.append(OverheadLog(writer.path("overhead.jsonl")))
    agg_times: list[float] = []
    client_times: list[float] = []
    tpr_acc: list[float] = []
    fpr_acc: list[float] = []
    window_agg: list[float] = []
    stopped = "completed"
    diverged = False
    rounds_done = 0
    try:
        if writer is not None:
            writer.write_text("config.toml", cfg.to_toml())
            writer.write_text("label_histogram.csv", _histogram_csv(hist, is_byz))
        for t in range(1, cfg.train.rounds + 1):
            if privacy.would_exceed_budget():
                stopped = privacy.budget_stop_reason()
                break
            cohort = draw_cohort(sampler, rng)  # Poisson under DP-FedAvg of the mean: fedsec.cohorts
            clients = torch.from_numpy(cohort).to(device)
            t0 = time.perf_counter()
            honest_rows = np.flatnonzero(~is_byz[cohort])
            byz_rows = np.flatnonzero(is_byz[cohort])
            if not len(cohort):  # an empty Poisson cohort: no update, the DP noise is still released
                stack = torch.zeros((0, fm.d), device=device)
            elif privacy.client_level:
                stack = privacy.client_updates(w, cohort, computer, clients, gen)
            else:
                stack = computer.updates(w, clients, gen)
            if momentum is not None:
                beta = cfg.train.momentum
                momentum[clients] = beta * momentum[clients] + (1 - beta) * stack
                stack = momentum[clients].clone()
            # (A cohort of Byzantine clients only has no honest update to attack: they send their own.)
            if attack is not None and len(byz_rows) and len(honest_rows):
                br = torch.from_numpy(byz_rows).to(device)
                hr = torch.from_numpy(honest_rows).to(device)
                ctx = robust.attacks.AttackContext(
                    n=len(cohort), f=len(byz_rows), rule=selector, generator=atk_gen
                )
                honest = stack[hr] if getattr(attack, "omniscient", False) else None
                stack[br] = attack(stack[br], honest, ctx=ctx).to(stack.dtype)
            stack = privacy.local_noise(stack)
            client_times.append(time.perf_counter() - t0)
            if root_computer is not None:
                server_id = torch.zeros(1, dtype=torch.long, device=device)
                context.root = root_computer.updates(w, server_id, gen)[0]
            context.ids = cohort
            try:
                record = fround.aggregate(
                    proto, stack, round_no=t, cohort=cohort, is_byz=is_byz, selector=selector,
                    rng=np.random.default_rng([seed, 5, t]), device=device, dtype=w.dtype,
                )  # fmt: skip
            except robust.NonFiniteError as e:
                # The rule refuses more non-finite updates than it tolerates: a server using it would
                # release a non-finite model. Record the divergence and stop this run cleanly.
                diverged = True
                stopped = f"diverged at round {t}: {e}"
                w = torch.full_like(w, float("nan"))
                rounds_done = t
                break
            for observe in observing:
                observe(record)
            agg_times.append(record.seconds)
            window_agg.append(record.seconds)
            agg = record.aggregate
            if record.tpr is not None:
                tpr_acc.append(record.tpr)
            if record.fpr is not None:
                fpr_acc.append(record.fpr)
            if not bool(torch.isfinite(agg).all()):
                diverged = True
            w = w - step_size * agg
            rounds_done = t
            if t % cfg.eval.every == 0 or t == cfg.train.rounds:
                acc, loss = evaluate(fm, w, x_test, y_test, cfg.eval.batch_size)
                rec: dict[str, Any] = {
                    **base,
                    "round": t,
                    "accuracy": acc,
                    "loss": loss,
                    "agg_seconds": float(np.mean(window_agg)),
                    "elapsed": time.perf_counter() - t_start,
                }
                window_agg = []
                if bd_x is not None:
                    rec["backdoor_success"] = float(
                        (predict(fm, w, bd_x, cfg.eval.batch_size) == cfg.attack.backdoor_target)
                        .float()
                        .mean()
                    )
                if tpr_acc or fpr_acc:
                    rec["byz_detection_tpr"] = float(np.mean(tpr_acc)) if tpr_acc else None
                    rec["byz_detection_fpr"] = float(np.mean(fpr_acc)) if fpr_acc else None
                rec.update(privacy.metrics())
                metrics.append(rec)
                if writer is not None:
                    writer.append_metrics(rec)
            ck = cfg.output.checkpoint_every
            if writer is not None and ck > 0 and t % ck == 0:
                torch.save(
                    {"round": t, "weights": w.cpu(), "config_hash": cfg_hash},
                    writer.path(f"checkpoints/round_{t:05d}.pt"),
                )
            if progress is not None:
                progress(t, cfg.train.rounds)
        if rounds_done and (not metrics or metrics[-1]["round"] != rounds_done):
            acc, loss = evaluate(fm, w, x_test, y_test, cfg.eval.batch_size)
            rec = {**base, "round": rounds_done, "accuracy": acc, "loss": loss, **privacy.metrics()}
            metrics.append(rec)
            if writer is not None:
                writer.append_metrics(rec)
        accs = [m["accuracy"] for m in metrics if not math.isnan(m["accuracy"])]
        summary: dict[str, Any] = {
            **base,
            "label": cfg.defense.label,
            "dataset": cfg.data.dataset,
            "n_clients": n,
            "beta": cfg.data.beta,
            "partition": cfg.data.partition,
            "attack": cfg.attack.name if cfg.attack.f else "none",
            "attack_data": cfg.attack.data,
            "strength": cfg.attack.strength,
            "f": f_actual,
            "protocol": cfg.mechanism(),
            "mode": cfg.train.mode,
            "rounds": rounds_done,
            "max_accuracy": max(accs) if accs else math.nan,
            "final_accuracy": metrics[-1]["accuracy"] if metrics else math.nan,
            "agg_seconds_mean": float(np.mean(agg_times)) if agg_times else math.nan,
            "client_seconds_mean": float(np.mean(client_times)) if client_times else math.nan,
            "seconds": time.perf_counter() - t_start,
            "diverged": diverged,
            "stopped": stopped,
            "engine": computer.engine,
            "device": str(device),
            "byzantine_clients": [int(i) for i in byz_ids],
            "threat_model": threat_model(cfg, privacy.statement()),
        }
        if tpr_acc or fpr_acc:
            summary["byz_detection_tpr"] = float(np.mean(tpr_acc)) if tpr_acc else None
            summary["byz_detection_fpr"] = float(np.mean(fpr_acc)) if fpr_acc else None
        if bd_x is not None and metrics:
            summary["backdoor_success"] = metrics[-1].get("backdoor_success")
        summary.update(totals.summary())
        if privacy.statement() is not None:
            summary["privacy"] = privacy.statement()
        if writer is not None:
            if cfg.output.checkpoint_every >= 0:
                torch.save(
                    {"round": rounds_done, "weights": w.cpu(), "config_hash": cfg_hash},
                    writer.path("checkpoints/final.pt"),
                )
            from fedsec.report import unit_report

            writer.write_text("summary.csv", csv_text([_flat_summary(summary)]))
            writer.write_text("report.md", unit_report(cfg, summary, metrics))
            writer.write_json("summary.json", summary)
            run_dir = writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return UnitResult(cfg.defense.label, cfg_hash, seed, metrics, summary, run_dir, w.detach().cpu())


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
