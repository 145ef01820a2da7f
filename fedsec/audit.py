"""``fedsec audit``: protocol overhead and leakage per mechanism, party role and phase, as n and d grow.

Each (mechanism, rule) runs on the same stacks (``n`` rows of L2 norm 1/2: inside every mechanism's
encoding range and norm bound) ``repeats`` times. The protocol's :class:`protocols.Meter` gives, per
party and phase, wall seconds and bytes sent and received; a row of the audit is one
(mechanism, n, d, dropout, role, phase) with the median and spread (interquartile range) over the
repeats. Client rows are per client (the role's total divided by ``n``), other roles are totals. A
phase that runs once per protocol instance (key setup) is a ``one_time`` row, outside per-round totals.

Derived figures (pure functions below):

- expansion = client bytes sent per round / ``4 d`` (a plain float32 upload). Bonawitz et al. (CCS
  2017, abstract) report 1.73x for 2^10 users and 2^20-entry vectors of 16-bit values against sending
  them in the clear; :func:`secagg.messages.client_round_bytes` gives this implementation's figure.
  The analytic bytes per mechanism, which the tests hold the meter to: ``plain``
  (:func:`protocols.plain.client_frame_bytes`), ``secagg`` (:func:`secagg.messages.client_round_bytes`),
  ``secagg_plus`` (:func:`protocols.secagg_sum.plus_client_round_bytes`), ``secagg_ddp``
  (:func:`protocols.secagg_ddp.ddp_client_round_bytes`), ``paillier``
  (:func:`protocols.paillier_mean.upload_bytes`), ``prio`` (``PrioPine.describe``'s
  ``upload_bytes``), ``secagg_normbound`` (:func:`protocols.secagg_normbound.normbound_client_round_bytes`),
  ``ckks`` (bounds: :func:`protocols.ckks.mean.upload_bytes_bounds`).
- communication rounds of a phase: 1 when any byte crosses the network in it, else 0; the mechanism's
  sequential rounds are their sum.
- network model: per phase, ``max_role(seconds_role + 8 bytes_role / bandwidth_role) + rtt`` (rtt only
  for a phase that carries bytes), summed over phases: an estimate of one round's wall clock.
- growth exponent: the least-squares slope of ``log cost`` against ``log n`` (or ``log d``).
- extrapolation: a run whose seconds, predicted from two pilot runs at ``d_1 = d/64`` and
  ``d_2 = d/16``, exceed ``budget_s`` is not run; its rows are marked ``extrapolated`` and every value
  (seconds and bytes) lies on the line through the two pilots: each mechanism's round is a fixed cost
  (keys, shares, proofs' constant part) plus a per-coordinate cost. A power law through two points of
  ``a + b d`` underestimates it, and microsecond timings fit any slope; the log-log slope between the
  pilots (the growth exponent) is recorded beside each extrapolated value.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedsec.errors import FedsecError
from fedsec.round import role

#: Parameters a mechanism needs that no rule fixes (the audit's stacks have L2 norm 1/2).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"secagg_normbound": {"bound": 1.0}}
FIELDS = ("seconds", "bytes_sent", "bytes_received")
#: Where a dropout costs the most. In the masked secure sums a client that shared its keys but sends no
#: masked input makes the server rebuild its pairwise masks with every survivor from their shares (the
#: unmasking recovery, O(n d) per dropped client); there exactly ``ceil(dropout n)`` clients drop. A
#: ``prio`` dropout is an absent report (each client with probability ``dropout``): no recovery.
WORST_DROP_PHASE = {
    "secagg": "masked_input",
    "secagg_plus": "masked_input",
    "secagg_ddp": "masked_input",
    "secagg_normbound": "masked_input",
    "prio": "upload",
}
ROW_NORM = 0.5


class AuditError(FedsecError, ValueError):
    """A bad audit option ("got ...; want ...")."""


@dataclass(frozen=True)
class Network:
    """Bandwidth per role in bits per second (``"*"``: any other role) and one round-trip time."""

    bandwidth: dict[str, float]
    rtt_s: float

    def bits_per_s(self, role_name: str) -> float:
        return self.bandwidth.get(role_name, self.bandwidth["*"])


_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_bandwidth(text: str) -> float:
    """``"100Mbit"`` -> 1e8 bits/s (``kbit``, ``Mbit``, ``Gbit``, ``bit``; ``/s`` optional)."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmg]?)(?:bit)?(?:/s|ps)?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise AuditError(f"bandwidth: got {text!r}; want a positive rate such as '100Mbit' or '1Gbit'")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rtt(text: str) -> float:
    """``"50ms"`` -> 0.05 s (``s``, ``ms``, ``us``)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|ms|us)\s*", text.lower())
    if not m:
        raise AuditError(f"rtt: got {text!r}; want a duration such as '50ms' or '0.1s'")
    return float(m.group(1)) * _TIME[m.group(2)]


def parse_network(bandwidth: str, rtt: str) -> Network:
    """``--bandwidth 100Mbit`` (every role) or ``client=20Mbit,server=1Gbit`` (per role)."""
    bw: dict[str, float] = {}
    for part in bandwidth.split(","):
        name, _, value = part.rpartition("=")
        bw[name.strip() or "*"] = parse_bandwidth(value)
    bw.setdefault("*", min(bw.values()))
    return Network(bw, parse_rtt(rtt))


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` on ``log x`` (the growth exponent); NaN with < 2 usable points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return math.nan
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def expansion(client_bytes_sent: float, d: int) -> float:
    """Client upload per round against a plain float32 upload of ``d`` entries (``4 d`` bytes)."""
    return client_bytes_sent / (4.0 * d)


def audit_stack(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` float32 rows of L2 norm :data:`ROW_NORM` (public test data, not key material)."""
    x = np.random.default_rng([seed, n, d]).standard_normal((n, d))
    x *= ROW_NORM / np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x.astype(np.float32))


def build(mechanism: str, rule: Any, dropout: float = 0.0) -> Any:
    """``protocols.make(mechanism, rule=rule)`` with :data:`DEFAULT_PARAMS`, and with ``dropout`` where
    the mechanism's protocol takes a dropout rate, set to drop at :data:`WORST_DROP_PHASE`; ``None``
    when ``dropout > 0`` and it takes none."""
    import protocols

    params = dict(DEFAULT_PARAMS.get(mechanism, {}))
    proto = protocols.make(mechanism, rule=rule, **params)
    if not dropout:
        return proto
    if "dropout" not in inspect.signature(type(proto.inner).__init__).parameters:
        return None
    proto = protocols.make(mechanism, rule=rule, **params, dropout=dropout)
    if hasattr(proto.inner, "drop_phase"):
        proto.inner.drop_phase = WORST_DROP_PHASE[mechanism]
    return proto


def measure(proto: Any, n: int, d: int, seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One round: ``({"role/phase": per-party costs}, {party: {key: description}})``.

    Client costs are divided by ``n`` (per client); other roles are totals.
    """
    res = proto.run(audit_stack(n, d, seed), rng=np.random.default_rng([seed, 7]))
    out: dict[str, dict[str, float]] = {}
    for (party, phase), c in res.meter.costs.items():
        r = role(party)
        t = out.setdefault(f"{r}/{phase}", dict.fromkeys(FIELDS, 0.0))
        t["seconds"] += c.seconds
        t["bytes_sent"] += c.bytes_sent
        t["bytes_received"] += c.bytes_received
    for key, t in out.items():
        if key.startswith("client/"):
            out[key] = {f: v / n for f, v in t.items()}
    leak = {p: {k: describe(v) for k, v in values.items()} for p, values in res.leakage.learns.items()}
    return out, leak


def describe(value: Any) -> str:
    """What a leaked value is, in a table cell: ``"array (25, 25)"``, ``"list of 3"``, ``"scalar"``."""
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"array {tuple(value.shape)}"
    if isinstance(value, list | tuple | set | frozenset):
        return f"list of {len(value)}"
    if isinstance(value, dict):
        return f"map of {len(value)}"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    return "scalar" if isinstance(value, int | float) else type(value).__name__


@dataclass
class Case:
    """One (mechanism, n, d, dropout) of the audit, its per-repeat meters and leakage."""

    mechanism: str
    label: str
    n: int
    d: int
    dropout: float
    runs: list[dict[str, dict[str, float]]] = field(default_factory=list)
    leakage: dict[str, dict[str, str]] = field(default_factory=dict)
    extrapolated_from: int | None = None
    exponents: dict[str, float] = field(default_factory=dict)
    drop_phase: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per role/phase: median and IQR of seconds, median bytes, communication rounds."""
        keys: dict[str, None] = {}
        for run in self.runs:
            keys.update(dict.fromkeys(run))
        out = []
        for key in keys:
            r, _, phase = key.partition("/")
            # A phase missing from some repeats (key setup on a protocol's first round) is one-time:
            # its median is over the repeats that ran it, and it stays out of the per-round totals.
            present = [run[key] for run in self.runs if key in run]
            vals = {f: [c[f] for c in present] for f in FIELDS}
            q1, q3 = np.percentile(vals["seconds"], [25, 75])
            sent, recv = float(np.median(vals["bytes_sent"])), float(np.median(vals["bytes_received"]))
            out.append({
                "mechanism": self.mechanism, "label": self.label, "n": self.n, "d": self.d,
                "dropout": self.dropout, "drop_phase": self.drop_phase, "role": r, "phase": phase,
                "seconds": float(np.median(vals["seconds"])), "seconds_iqr": float(q3 - q1),
                "bytes_sent": sent, "bytes_received": recv, "comm_rounds": int(sent + recv > 0),
                "repeats": len(present), "one_time": len(present) < len(self.runs) or phase == "setup",
                "extrapolated": self.extrapolated_from is not None,
                "extrapolated_from_d": self.extrapolated_from,
            })  # fmt: skip
        return out


def summarize(rows: Iterable[dict[str, Any]], network: Network) -> dict[str, Any]:
    """Per-case totals of one case's rows: client and server cost, expansion, rounds, network estimate."""
    rows = list(rows)
    first = rows[0]
    setup = sum(r["bytes_sent"] for r in rows if r["one_time"] and r["role"] == "client")
    rows = [r for r in rows if not r["one_time"]] or rows
    by_role: dict[str, dict[str, float]] = {}
    phases: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        t = by_role.setdefault(r["role"], dict.fromkeys(FIELDS, 0.0))
        for f in FIELDS:
            t[f] += r[f]
        phases.setdefault(r["phase"], []).append(r)
    wall = 0.0
    for phase_rows in phases.values():
        comm = any(r["comm_rounds"] for r in phase_rows)
        wall += max(
            r["seconds"] + 8 * (r["bytes_sent"] + r["bytes_received"]) / network.bits_per_s(r["role"])
            for r in phase_rows
        ) + (network.rtt_s if comm else 0.0)
    client = by_role.get("client", dict.fromkeys(FIELDS, 0.0))
    server = {f: sum(t[f] for k, t in by_role.items() if k != "client") for f in FIELDS}
    return {
        "mechanism": first["mechanism"], "label": first["label"], "n": first["n"], "d": first["d"],
        "dropout": first["dropout"], "drop_phase": first.get("drop_phase"),
        "client_seconds": client["seconds"],
        "client_bytes_sent": client["bytes_sent"], "client_bytes_received": client["bytes_received"],
        "server_seconds": server["seconds"], "server_bytes_received": server["bytes_received"],
        "expansion": expansion(client["bytes_sent"], first["d"]),
        "comm_rounds": sum(any(r["comm_rounds"] for r in p) for p in phases.values()),
        "network_seconds": wall, "client_setup_bytes_sent": setup, "extrapolated": first["extrapolated"],
    }  # fmt: skip


Progress = Callable[[str], None]


@dataclass
class AuditSpec:
    """What to audit; see ``fedsec audit --help``."""

    mechanisms: list[str]
    rule: Any
    clients: list[int]
    dims: list[int]
    dropout: float = 0.0
    repeats: int = 3
    budget_s: float = 60.0
    extrapolate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from protocols.mechanisms import MECHANISMS

        unknown = [m for m in self.mechanisms if m not in MECHANISMS]
        if unknown or not self.mechanisms:
            raise AuditError(f"mechanisms: got {unknown or 'none'}; want some of {MECHANISMS.names()}")
        if self.repeats < 1:
            raise AuditError(f"repeats: got {self.repeats}; want >= 1")
        if any(n < 2 for n in self.clients) or any(d < 1 for d in self.dims):
            raise AuditError(f"clients, dim: got {self.clients}, {self.dims}; want n >= 2 and d >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise AuditError(f"dropout: got {self.dropout}; want 0 <= dropout < 1")


def _run_case(spec: AuditSpec, proto: Any, case: Case, tick: Progress | None) -> None:
    for k in range(spec.repeats):
        meter, leak = measure(proto, case.n, case.d, seed=spec.seed + k)
        case.runs.append(meter)
        case.leakage = leak
        if tick is not None:
            tick(f"{case.label} n={case.n} d={case.d}")


def _affine(d1: int, d2: int, c1: float, c2: float, d: int) -> float:
    """``c(d)`` on the line through ``(d1, c1)`` and ``(d2, c2)``, slope at least 0."""
    return c2 + max(0.0, (c2 - c1) / (d2 - d1)) * (d - d2)


def _extrapolate(spec: AuditSpec, proto: Any, case: Case, tick: Progress | None) -> bool:
    """Run two pilots at ``d/64`` and ``d/16``; when the predicted seconds exceed the budget, fill
    ``case`` from them with the fitted exponents and return True."""
    d1, d2 = max(2, case.d // 64), max(4, case.d // 16)
    pilots = []
    for dp in (d1, d2):
        c = Case(case.mechanism, case.label, case.n, dp, case.dropout)
        _run_case(
            AuditSpec([case.mechanism], None, [case.n], [dp], repeats=1, seed=spec.seed), proto, c, None
        )
        pilots.append(c)
    total = [sum(v["seconds"] for v in c.runs[0].values()) * case.n for c in pilots]
    predicted = _affine(d1, d2, total[0], total[1], case.d)
    if predicted <= spec.budget_s:
        return False
    run = {}
    for key, cost in pilots[1].runs[0].items():
        low = pilots[0].runs[0].get(key, cost)
        out = {}
        for f in FIELDS:
            case.exponents[f"{key}:{f}"] = fit_exponent([d1, d2], [low[f], cost[f]])
            out[f] = _affine(d1, d2, low[f], cost[f], case.d)
        run[key] = out
    case.runs, case.leakage, case.extrapolated_from = [run], pilots[1].leakage, d2
    if tick is not None:
        for _ in range(spec.repeats):
            tick(f"{case.label} n={case.n} d={case.d} (extrapolated)")
    return True


def audit(spec: AuditSpec, tick: Progress | None = None) -> tuple[list[Case], list[str]]:
    """Run every case of ``spec``; returns the cases and the refused compositions (one line each)."""
    import protocols

    cases: list[Case] = []
    refused: list[str] = []
    for mech in spec.mechanisms:
        for dropout in sorted({0.0, spec.dropout}):
            try:
                proto = build(mech, spec.rule, dropout)
            except protocols.CompositionError as e:
                refused.append(f"{mech}: {e}")
                continue
            if proto is None:
                refused.append(f"{mech}: takes no dropout rate (dropout={dropout:g} not simulated)")
                continue
            for n in spec.clients:
                for d in spec.dims:
                    case = Case(mech, proto.name, n, d, dropout)
                    case.drop_phase = WORST_DROP_PHASE.get(mech) if dropout else None
                    if not (spec.extrapolate and d >= 256 and _extrapolate(spec, proto, case, tick)):
                        _run_case(spec, proto, case, tick)
                    cases.append(case)
    return cases, refused


def total_steps(spec: AuditSpec) -> int:
    """Progress-bar length: repeats per case (a mechanism without a dropout model counts anyway)."""
    scenarios = len({0.0, spec.dropout})
    return len(spec.mechanisms) * scenarios * len(spec.clients) * len(spec.dims) * spec.repeats


def growth(summary: list[dict[str, Any]], by: str, cost: str) -> dict[tuple[str, float], float]:
    """Fitted exponent of ``cost`` against ``by`` (``"n"`` or ``"d"``) per (label, dropout), other
    size fixed at its largest value."""
    other = "d" if by == "n" else "n"
    out = {}
    for key in {(s["label"], s["dropout"]) for s in summary}:
        rows = [s for s in summary if (s["label"], s["dropout"]) == key]
        top = max(s[other] for s in rows)
        pts = sorted((s[by], s[cost]) for s in rows if s[other] == top)
        out[key] = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
    return out
