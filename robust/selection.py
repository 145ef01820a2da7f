"""Selections as pure functions of the ``(n, n)`` squared-distance matrix.

These are the single implementation of distance-based selection in fedsec. Plaintext rules
(``robust.Krum``, ``robust.MultiKrum``, ...) call them on distances computed from the stack; the
encrypted-domain protocols (``protocols``) call them on distances a key holder decrypts.
"""

from __future__ import annotations

import torch

from robust.errors import ByzantineBoundError, ParameterError, StackError


def pairwise_sq_distances(stack: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``stack``.

    Computed through one Gram matrix, ``D_ij = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j>`` (no ``(n, n, d)``
    intermediate). The Gram is taken in the input dtype; the result is clamped at 0 and its diagonal
    set to exactly 0.

    Args:
        stack: ``(n, d)`` tensor.

    Returns:
        ``(n, n)`` tensor of the same dtype, symmetric, zero diagonal, non-negative.
    """
    if stack.ndim != 2:
        raise StackError(f"stack must be 2-D (n, d); got shape {tuple(stack.shape)}")
    return sq_distances_from_gram(stack @ stack.T)


def sq_distances_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """``D_ij = G_ii + G_jj - 2 G_ij`` from a Gram matrix ``G = X X^T``, clamped at 0, zero diagonal
    (the second half of :func:`pairwise_sq_distances`, for callers that already hold ``G``)."""
    _check_square(gram)
    sq = torch.diagonal(gram)
    dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0)
    dist.fill_diagonal_(0.0)
    return dist


def _check_square(dist: torch.Tensor) -> int:
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise StackError(f"dist must be a square (n, n) matrix; got shape {tuple(dist.shape)}")
    return int(dist.shape[0])


def krum_scores(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Krum scores (Blanchard et al., NeurIPS 2017).

    ``score_i = sum of D_ij over the n - f - 2 nearest j != i``. Requires ``n > 2f + 2``.
    ByzFL uses the ``n - f - 1`` nearest others instead; fedsec follows the paper.

    Args:
        dist: ``(n, n)`` squared distances (zero diagonal).
        f: number of Byzantine rows tolerated.

    Returns:
        ``(n,)`` scores; lower is more central.
    """
    n = _check_square(dist)
    if f < 0:
        raise ParameterError(f"f must be >= 0; got f={f}")
    if n <= 2 * f + 2:
        raise ByzantineBoundError(f"got f={f}, n={n}; Krum needs n > 2f + 2")
    k = n - f - 2
    # Exclude self by pushing the diagonal to +inf before taking the k smallest.
    masked = dist.clone()
    masked.fill_diagonal_(float("inf"))
    nearest = torch.topk(masked, k, dim=1, largest=False).values
    return nearest.sum(dim=1)


def krum_select(dist: torch.Tensor, f: int, m: int = 1) -> torch.Tensor:
    """Indices of the ``m`` rows with the lowest Krum scores (Multi-Krum when ``m > 1``).

    Ties are broken by the lower index (stable sort), so plaintext and encrypted callers agree.

    Returns:
        ``(m,)`` int64 tensor of row indices, sorted by score.
    """
    n = _check_square(dist)
    if not 1 <= m <= n:
        raise ParameterError(f"m must be in [1, n]; got m={m}, n={n}")
    scores = krum_scores(dist, f)
    order = torch.sort(scores, stable=True).indices
    return order[:m]


def selection_weights(
    sel: torch.Tensor, n: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None
) -> torch.Tensor:
    """Weights of the mean of the selected rows: ``w_i = 1 / |S|`` for ``i`` in ``S = sel``, else 0,
    so ``w @ X`` is Multi-Krum's (or Krum's, ``|S| = 1``) output. Shape ``(n,)``."""
    w = torch.zeros(n, dtype=dtype, device=device)
    w[sel.to(w.device)] = 1.0 / int(sel.numel())
    return w


def coordinate_ranks(stack: torch.Tensor) -> torch.Tensor:
    """Per-coordinate ranks of the rows: ``R[i, j]`` is the position of ``x_ij`` in column ``j`` sorted
    ascending (0 = smallest), ties broken by row index. Shape ``(n, d)``, int64."""
    if stack.ndim != 2:
        raise StackError(f"stack must be 2-D (n, d); got shape {tuple(stack.shape)}")
    order = torch.sort(stack, dim=0, stable=True).indices
    ranks = torch.empty_like(order)
    ar = torch.arange(stack.shape[0], device=stack.device).unsqueeze(1).expand_as(order)
    ranks.scatter_(0, order, ar)
    return ranks


def trimmed_mean_weights(ranks: torch.Tensor, f: int) -> torch.Tensor:
    """Selection weights of the coordinate-wise trimmed mean from ranks.

    ``W[i, j] = 1 / (n - 2f)`` if ``f <= R[i, j] < n - f`` else 0, so ``(W * X).sum(0)`` is the mean of
    each column without its f largest and f smallest entries. Requires ``n > 2f``.
    """
    n = int(ranks.shape[0])
    if f < 0:
        raise ParameterError(f"f must be >= 0; got f={f}")
    if n <= 2 * f:
        raise ByzantineBoundError(f"got f={f}, n={n}; trimmed mean needs n > 2f")
    keep = (ranks >= f) & (ranks < n - f)
    return keep.to(torch.float32) / float(n - 2 * f)


def median_weights(ranks: torch.Tensor) -> torch.Tensor:
    """Selection weights of the coordinate-wise median from ranks.

    Odd n: weight 1 on rank ``(n - 1) / 2``. Even n: weight 1/2 on each of ranks ``n/2 - 1`` and
    ``n/2`` (the average of the two middle values, as ``numpy.median``; ``torch.median`` would return
    the lower one).
    """
    n = int(ranks.shape[0])
    if n < 1:
        raise ParameterError("ranks must have at least one row")
    if n % 2 == 1:
        return (ranks == (n - 1) // 2).to(torch.float32)
    mid = (ranks == n // 2 - 1) | (ranks == n // 2)
    return mid.to(torch.float32) * 0.5


def _nearest_sum(dist: torch.Tensor, k: int) -> torch.Tensor:
    """``sum`` of the ``k`` smallest off-diagonal entries of every row (``k = 0`` -> zeros)."""
    n = int(dist.shape[0])
    if k <= 0:
        return torch.zeros(n, dtype=dist.dtype, device=dist.device)
    masked = dist.clone()
    masked.fill_diagonal_(float("inf"))
    return torch.topk(masked, k, dim=1, largest=False).values.sum(dim=1)


def bulyan_select(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Selection phase of Bulyan (El Mhamdi et al., ICML 2018) with Krum as the base rule.

    ``theta = n - 2f`` times: compute Krum scores on the rows not yet selected (each with the
    ``n_k - f - 2`` nearest others among those ``n_k`` rows, at least 0) and move the lowest-scoring
    row to the selection. Ties -- always the case in the last steps, where ``n_k - f - 2 <= 0`` makes
    every score 0 -- go to the row with the smallest sum of squared distances to all remaining rows,
    then to the lower index, so the selection does not depend on the order of the rows.
    Requires ``n >= 4f + 3``.

    Returns:
        ``(theta,)`` int64 row indices in the order they were selected.
    """
    n = _check_square(dist)
    if f < 0:
        raise ParameterError(f"f must be >= 0; got f={f}")
    if n < 4 * f + 3:
        raise ByzantineBoundError(f"got f={f}, n={n}; Bulyan needs n >= 4f + 3")
    theta = n - 2 * f
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(theta):
        idx = torch.tensor(remaining, device=dist.device)
        sub = dist.index_select(0, idx).index_select(1, idx)
        scores = _nearest_sum(sub, len(remaining) - f - 2)
        # Lexicographic (score, sum of all distances, index): a symmetric tie-break, so the
        # degenerate last steps (n_k - f - 2 <= 0: every score is 0) do not depend on row order.
        total = sub.sum(dim=1)
        tied = torch.nonzero(scores == scores.min()).flatten()
        best = int(tied[torch.sort(total[tied], stable=True).indices[0]])
        chosen.append(remaining.pop(best))
    return torch.tensor(chosen, dtype=torch.int64, device=dist.device)


def nnm_mixing(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Mixing matrix of Nearest-Neighbour Mixing (Allouah et al., AISTATS 2023).

    ``M[i, j] = 1 / (n - f)`` if ``j`` is among the ``n - f`` rows nearest to row ``i`` (itself
    included, distance 0; ties: lower index), else 0; the mixed stack is ``M @ X``. Requires
    ``n > f``.
    """
    n = _check_square(dist)
    if f < 0:
        raise ParameterError(f"f must be >= 0; got f={f}")
    if n <= f:
        raise ByzantineBoundError(f"got f={f}, n={n}; NNM needs n > f")
    k = n - f
    # Make self the nearest for sure (distance -1), then a stable sort keeps ties by index.
    key = dist.clone()
    key.fill_diagonal_(-1.0)
    nearest = torch.sort(key, dim=1, stable=True).indices[:, :k]
    mix = torch.zeros_like(dist)
    mix.scatter_(1, nearest, 1.0 / k)
    return mix
