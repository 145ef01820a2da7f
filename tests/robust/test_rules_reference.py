"""Every rule and pre-aggregator against the slow references of robust_refs on random small stacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import robust_refs as ref
import torch

import robust
from robust import coordinate

SHAPES = [(7, 5), (8, 6), (11, 4), (16, 9)]  # odd and even n


def stack(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + rng.normal(size=d)  # a common offset, like real gradients
    x[: max(1, n // 5)] *= 6.0  # a few far rows so selections are not trivial
    return x


def f_for(n: int) -> int:
    return (n - 3) // 4  # satisfies every bound, Bulyan's n >= 4f + 3 included


Case = tuple[Callable[[int], robust.Aggregator], Callable[[np.ndarray, int], np.ndarray]]
CASES: dict[str, Case] = {
    "mean": (lambda f: robust.Mean(), lambda x, f: ref.ref_mean(x)),
    "median": (lambda f: robust.Median(), lambda x, f: ref.ref_median(x)),
    "trimmed_mean": (lambda f: robust.TrimmedMean(f=f), ref.ref_trimmed_mean),
    "krum": (lambda f: robust.Krum(f=f), lambda x, f: ref.ref_multi_krum(x, f, 1)[0]),
    "multi_krum": (lambda f: robust.MultiKrum(f=f), lambda x, f: ref.ref_multi_krum(x, f, x.shape[0] - f)[0]),
    "multi_krum_m3": (lambda f: robust.MultiKrum(f=f, m=3), lambda x, f: ref.ref_multi_krum(x, f, 3)[0]),
    "bulyan": (lambda f: robust.Bulyan(f=f), lambda x, f: ref.ref_bulyan(x, f)[0]),
    "centered_clipping": (
        lambda f: robust.CenteredClipping(tau=1.5, iters=3),
        lambda x, f: ref.ref_centered_clipping(x, 1.5, 3, np.zeros(x.shape[1])),
    ),
    "sign_majority": (lambda f: robust.SignMajority(), lambda x, f: ref.ref_sign_majority(x)),
    "cmls": (lambda f: robust.CMLS(f=f, penalty=0.3), lambda x, f: ref.ref_cmls(x, f, 0.3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_rule_matches_reference(name: str, shape: tuple[int, int], seed: int) -> None:
    n, d = shape
    x = stack(n, d, seed)
    f = f_for(n)
    build, reference = CASES[name]
    out = build(f)(torch.from_numpy(x))
    assert out.shape == (d,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), reference(x, f), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_path_matches_numpy_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The non-CPU code path (torch.sort/topk) gives the same answer as the numpy one."""
    x = torch.from_numpy(stack(11, 13, 3))
    expected = CASES[name][0](2)(x)
    monkeypatch.setattr(coordinate, "numpy_ok", lambda t: False)
    from robust import distance

    monkeypatch.setattr(distance, "numpy_ok", lambda t: False)
    np.testing.assert_allclose(CASES[name][0](2)(x).numpy(), expected.numpy(), rtol=1e-12)


@pytest.mark.parametrize("n", [5, 6])
def test_column_blocks_and_threads(n: int) -> None:
    """Stacks wider than one column block (threaded path) agree with numpy's own median/sort."""
    d = 2 * coordinate.BLOCK_COLS + 17
    x = np.random.default_rng(n).normal(size=(n, d)).astype(np.float32)
    np.testing.assert_array_equal(robust.Median()(x).numpy(), np.median(x, axis=0).astype(np.float32))
    tm = np.sort(x, axis=0)[1 : n - 1].mean(axis=0)
    np.testing.assert_allclose(robust.TrimmedMean(f=1)(x).numpy(), tm, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "d", "threads"), [(25, 500_000, 2), (100, 100_000, 2), (7, 1500, 1), (3, 10, 4), (9, 123_457, 3)]
)
def test_column_blocks_are_equal_capped_and_shared_evenly(n: int, d: int, threads: int) -> None:
    cols = coordinate.block_cols(n, d, threads)
    blocks = -(-d // cols)
    assert cols <= max(1024, min(coordinate.BLOCK_COLS, coordinate.BLOCK_VALUES // n)) or cols == min(d, 1024)
    if cols > 1024:  # equal blocks, as many as a multiple of the threads
        assert blocks % threads == 0 and d - (blocks - 1) * cols > cols - blocks


@pytest.mark.parametrize("n", [3, 255, 256, 300])
def test_sign_votes_count_exactly_past_one_byte(n: int) -> None:
    """Votes are summed in uint8 up to 255 rows and wider beyond; zeros (either sign) do not vote."""
    x = np.random.default_rng(n).normal(size=(n, 40)).astype(np.float32)
    x[: n // 2 + 1, 0] = 1.0  # a narrow majority
    x[n // 2 + 1 :, 0] = -1.0
    x[:, 1] = 0.0
    x[0, 2:5], x[1, 2:5] = 0.0, -0.0
    np.testing.assert_array_equal(robust.SignMajority()(x).numpy(), ref.ref_sign_majority(x))


def test_weighted_mean() -> None:
    x = stack(6, 4, 5)
    w = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 3.0])
    agg = robust.Mean()
    np.testing.assert_allclose(agg(x, weights=torch.from_numpy(w)).numpy(), ref.ref_mean(x, w), rtol=1e-12)
    assert agg.last_selection == [1, 2, 3, 5]


@pytest.mark.parametrize("shape", SHAPES)
def test_krum_selections_match_reference(shape: tuple[int, int]) -> None:
    n, d = shape
    x = stack(n, d, 7)
    f = f_for(n)
    mk = robust.MultiKrum(f=f)
    mk(x)
    assert mk.last_selection == ref.ref_multi_krum(x, f, n - f)[1]
    b = robust.Bulyan(f=f)
    b(x)
    assert b.last_selection == ref.ref_bulyan(x, f)[1]
    dist = robust.pairwise_sq_distances(torch.from_numpy(x))
    np.testing.assert_allclose(robust.krum_scores(dist, f).numpy(), ref.ref_krum_scores(x, f), rtol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_geometric_median_is_optimal(shape: tuple[int, int]) -> None:
    """The output minimises sum_i ||z - x_i|| up to the tolerance: no nearby point does better, and it
    beats the mean and the coordinate-wise median."""
    n, d = shape
    x = stack(n, d, 11)
    gm = robust.GeometricMedian(tol=1e-10, max_iter=5000)
    z = gm(x).numpy()
    assert gm.last_converged
    obj = ref.ref_geometric_median_objective(x, z)
    rng = np.random.default_rng(0)
    scale = float(np.median([np.sqrt(ref.sqdist(z, xi)) for xi in x]))
    for _ in range(20):
        probe = z + rng.normal(size=d) * 1e-3 * scale
        assert obj <= ref.ref_geometric_median_objective(x, probe) + 1e-9 * obj
    assert obj <= ref.ref_geometric_median_objective(x, ref.ref_mean(x))
    assert obj <= ref.ref_geometric_median_objective(x, ref.ref_median(x))


def test_geometric_median_warns_when_not_converged() -> None:
    x = stack(9, 5, 2)
    gm = robust.GeometricMedian(tol=1e-12, max_iter=1)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        gm(x)
    assert not gm.last_converged and gm.last_iterations == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_fltrust_matches_reference(shape: tuple[int, int]) -> None:
    n, d = shape
    x = stack(n, d, 4)
    g0 = x[n // 2 :].mean(axis=0) + 0.1
    agg = robust.FLTrust()
    assert agg.needs_root and not robust.Mean().needs_root
    out = agg(x, root=torch.from_numpy(g0))
    np.testing.assert_allclose(out.numpy(), ref.ref_fltrust(x, g0), rtol=1e-9, atol=1e-12)
    cos = x @ g0 / (np.linalg.norm(x, axis=1) * np.linalg.norm(g0))
    assert agg.last_selection == [i for i in range(n) if cos[i] > 0]


def test_fltrust_all_distrusted_gives_zero() -> None:
    x = -np.ones((5, 3))
    agg = robust.FLTrust()
    np.testing.assert_array_equal(agg(x, root=np.ones(3)).numpy(), np.zeros(3))
    assert agg.last_selection == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dnc_matches_reference(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """DnC's scoring and intersection against the reference on the very columns DnC sampled."""
    from robust import spectral

    n, d, f, b = 12, 40, 2, 15
    x = stack(n, d, seed)
    col_sets: list[np.ndarray] = []
    real = spectral.sample_columns

    def spy(d: int, b: int, generator: torch.Generator) -> torch.Tensor:
        cols = real(d, b, generator)
        col_sets.append(cols.numpy().copy())
        return cols

    monkeypatch.setattr(spectral, "sample_columns", spy)
    agg = robust.DnC(f=f, sub_dim=b, niters=3, seed=seed)
    out = agg(x)
    assert len(col_sets) == 3
    expected, keep = ref.ref_dnc(x, f, col_sets)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9)
    assert agg.last_selection == keep


@pytest.mark.parametrize(("d", "b"), [(10, 10), (40, 15), (500_000, 10_000), (1000, 3)])
def test_sample_columns_distinct_and_in_range(d: int, b: int) -> None:
    from robust.spectral import sample_columns

    cols = sample_columns(d, b, torch.Generator().manual_seed(1))
    assert cols.numel() == b and torch.unique(cols).numel() == b
    assert int(cols.min()) >= 0 and int(cols.max()) < d


def test_sample_columns_is_uniform() -> None:
    """Sparse path: every column is picked with probability b/d (chi-square, 20 cells, p ~ 1e-6 cut)."""
    from robust.spectral import sample_columns

    d, b, trials = 2000, 50, 2000
    g = torch.Generator().manual_seed(2)
    counts = torch.zeros(d)
    for _ in range(trials):
        counts[sample_columns(d, b, g)] += 1
    cells = counts.reshape(20, -1).sum(dim=1).numpy()
    expected = trials * b / 20
    chi2 = float(((cells - expected) ** 2 / expected).sum())
    assert chi2 < 55.0  # 19 degrees of freedom
    assert set(sample_columns(d, 1, g).tolist()) <= set(range(d))


PRE_CASES = {
    "nnm": (lambda f: robust.NNM(f=f), ref.ref_nnm),
    "clip": (lambda f: robust.Clip(c=2.5), lambda x, f: ref.ref_clip(x, 2.5)),
    "arc": (lambda f: robust.ARC(f=f), ref.ref_arc),
}


@pytest.mark.parametrize("name", sorted(PRE_CASES))
@pytest.mark.parametrize("shape", SHAPES)
def test_pre_aggregator_matches_reference(name: str, shape: tuple[int, int]) -> None:
    n, d = shape
    x = stack(n, d, 9)
    build, reference = PRE_CASES[name]
    pre = build(f_for(n) + 1)
    out = pre(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), reference(x, f_for(n) + 1), rtol=1e-9, atol=1e-12)
    assert pre.last_sources == [[i] for i in range(n)]


@pytest.mark.parametrize(("n", "s"), [(10, 2), (11, 2), (9, 3), (5, 1)])
def test_bucketing_matches_reference(n: int, s: int) -> None:
    x = stack(n, 4, n)
    pre = robust.Bucketing(s=s, seed=3)
    out = pre(x).numpy()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3)).tolist()
    buckets = [sorted(perm[i : i + s]) for i in range(0, n, s)]
    assert pre.last_sources == buckets
    assert sorted(i for b in buckets for i in b) == list(range(n))
    np.testing.assert_allclose(out, np.array([ref.ref_mean(x[b]) for b in buckets]), rtol=1e-12)
