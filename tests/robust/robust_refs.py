"""Slow, obvious references for the robust rules: Python loops over rows and columns on float64 numpy
arrays, written from the papers' definitions (not from the library code)."""

from __future__ import annotations

import math

import numpy as np


def sqdist(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum((ai - bi) ** 2 for ai, bi in zip(a.tolist(), b.tolist())))


def ref_mean(x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    n = x.shape[0]
    w = np.ones(n) if w is None else w
    return sum(w[i] * x[i] for i in range(n)) / sum(w)


def ref_median(x: np.ndarray) -> np.ndarray:
    out = []
    for col in x.T:
        s = sorted(col.tolist())
        n = len(s)
        out.append(s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)
    return np.array(out)


def ref_trimmed_mean(x: np.ndarray, f: int) -> np.ndarray:
    n = x.shape[0]
    return np.array([sum(sorted(col.tolist())[f : n - f]) / (n - 2 * f) for col in x.T])


def ref_krum_scores(x: np.ndarray, f: int, k: int | None = None) -> list[float]:
    n = x.shape[0]
    k = n - f - 2 if k is None else k
    scores = []
    for i in range(n):
        others = sorted(sqdist(x[i], x[j]) for j in range(n) if j != i)
        scores.append(sum(others[: max(k, 0)]))
    return scores


def ref_multi_krum(x: np.ndarray, f: int, m: int) -> tuple[np.ndarray, list[int]]:
    scores = ref_krum_scores(x, f)
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))[:m]
    return sum(x[i] for i in order) / m, sorted(order)


def ref_bulyan(x: np.ndarray, f: int) -> tuple[np.ndarray, list[int]]:
    n = x.shape[0]
    theta = n - 2 * f
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(theta):
        sub = x[remaining]
        scores = ref_krum_scores(sub, f, len(remaining) - f - 2)
        totals = [sum(sqdist(sub[i], sub[j]) for j in range(len(sub))) for i in range(len(sub))]
        best = min(range(len(remaining)), key=lambda i: (scores[i], totals[i], i))
        chosen.append(remaining.pop(best))
    sel = x[chosen]
    beta = theta - 2 * f
    med = ref_median(sel)
    out = []
    for j in range(x.shape[1]):
        vals = sorted(sel[:, j].tolist(), key=lambda v: abs(v - med[j]))[:beta]
        out.append(sum(vals) / beta)
    return np.array(out), sorted(chosen)


def ref_geometric_median_objective(x: np.ndarray, z: np.ndarray) -> float:
    return sum(math.sqrt(sqdist(z, xi)) for xi in x)


def ref_centered_clipping(x: np.ndarray, tau: float, iters: int, v: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    for _ in range(iters):
        acc = np.zeros_like(v)
        for i in range(n):
            diff = x[i] - v
            norm = math.sqrt(float(diff @ diff))
            acc += diff * min(1.0, tau / norm) if norm > 0 else 0.0
        v = v + acc / n
    return v


def ref_sign_majority(x: np.ndarray) -> np.ndarray:
    out = []
    for col in x.T:
        total = sum(1 if v > 0 else -1 if v < 0 else 0 for v in col.tolist())
        out.append(1.0 if total > 0 else -1.0 if total < 0 else 0.0)
    return np.array(out)


def ref_fltrust(x: np.ndarray, g0: np.ndarray) -> np.ndarray:
    g0n = math.sqrt(float(g0 @ g0))
    num = np.zeros_like(g0)
    den = 0.0
    for xi in x:
        ni = math.sqrt(float(xi @ xi))
        ts = max(0.0, float(xi @ g0) / (ni * g0n))
        num += ts * xi * (g0n / ni)
        den += ts
    return num / den if den > 0 else num


def ref_cmls(x: np.ndarray, f: int, penalty: float) -> np.ndarray:
    n = x.shape[0]
    m = ref_median(x)
    r = [math.sqrt(sqdist(xi, m)) for xi in x]
    order = sorted(range(n), key=lambda i: (r[i], i))
    r_ref = r[order[n - f - 1]]
    w = [1.0] * n
    for i in order[n - f :]:
        w[i] = penalty * (r_ref / r[i]) ** 2 if r[i] > 0 else 1.0
    return sum(w[i] * x[i] for i in range(n)) / sum(w)


def ref_nnm(x: np.ndarray, f: int) -> np.ndarray:
    n = x.shape[0]
    out = []
    for i in range(n):
        near = sorted(range(n), key=lambda j: (-1.0 if j == i else sqdist(x[i], x[j]), j))[: n - f]
        out.append(sum(x[j] for j in near) / (n - f))
    return np.array(out)


def ref_clip(x: np.ndarray, c: float) -> np.ndarray:
    out = []
    for xi in x:
        norm = math.sqrt(float(xi @ xi))
        out.append(xi * min(1.0, c / norm) if norm > 0 else xi)
    return np.array(out)


def ref_arc(x: np.ndarray, f: int) -> np.ndarray:
    n = x.shape[0]
    k = int(2 * f * (n - f) // n)
    if k == 0:
        return x.copy()
    norms = sorted((math.sqrt(float(xi @ xi)) for xi in x), reverse=True)
    return ref_clip(x, norms[k])


def ref_dnc(
    x: np.ndarray, f: int, col_sets: list[np.ndarray], c: float = 1.0
) -> tuple[np.ndarray, list[int]]:
    n = x.shape[0]
    n_keep = n - math.floor(c * f)
    kept_count = [0] * n
    for cols in col_sets:
        sub = x[:, cols]
        centered = sub - sub.mean(axis=0)
        v = np.linalg.svd(centered, full_matrices=False)[2][0]
        scores = [float(centered[i] @ v) ** 2 for i in range(n)]
        for i in sorted(range(n), key=lambda i: (scores[i], i))[:n_keep]:
            kept_count[i] += 1
    best = max(kept_count)
    keep = [i for i in range(n) if kept_count[i] == best]
    return sum(x[i] for i in keep) / len(keep), keep
