"""Split a dataset's examples among clients: IID, Dirichlet label skew and label shards.

Every scheme returns ``n_clients`` disjoint, sorted int64 index arrays whose union is exactly
``range(len(labels))``: no scheme drops or duplicates an example. Randomness comes from the
``numpy.random.Generator`` the caller passes (a data split is not a secret).
"""

from __future__ import annotations

import numpy as np

from fedsec.errors import ConfigError

__all__ = ["PARTITION_SCHEMES", "label_histogram", "label_skew", "partition"]

PARTITION_SCHEMES = ("iid", "dirichlet", "shards")


def partition(
    labels: np.ndarray,
    n_clients: int,
    scheme: str = "dirichlet",
    *,
    beta: float = 0.5,
    shards_per_client: int = 2,
    min_samples: int = 2,
    rng: np.random.Generator,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Assign every example index to exactly one of ``n_clients`` clients.

    Schemes
    -------
    ``"iid"``
        A random permutation cut into ``n_clients`` nearly equal parts (sizes differ by at most 1).
    ``"dirichlet"``
        Label skew by Latent Dirichlet Sampling (Hsu et al. 2019; the setting of the stress-testing
        paper, Dir(beta) with beta in {0.1, 0.3, 0.5}): for each class c independently draw
        ``p_c ~ Dir(beta * 1_n)`` over clients and give client k the share ``p_{c,k}`` of class c's
        (shuffled) examples, cutting at ``round(cumsum(p_c) * n_c)``. Small beta -> each client
        sees few classes; large beta -> close to IID. The whole draw is repeated until every client
        holds at least ``min_samples`` examples, at most ``max_tries`` times.
    ``"shards"``
        Pathological non-IID (McMahan et al. 2017): sort examples by label (ties in random order),
        cut the sorted list into ``n_clients * shards_per_client`` contiguous shards of nearly
        equal size, and deal the shards out at random, ``shards_per_client`` to each client.

    Raises
    ------
    ConfigError
        Unknown scheme, non-positive parameters, fewer than ``n_clients * min_samples`` examples,
        or (dirichlet) no draw in ``max_tries`` met ``min_samples``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (len(y) and not np.issubdtype(y.dtype, np.integer)) or (len(y) and y.min() < 0):
        raise ConfigError(
            f"partition labels: got shape {y.shape}, dtype {y.dtype}; want 1-d non-negative ints"
        )
    if scheme not in PARTITION_SCHEMES:
        raise ConfigError(f"partition scheme: got {scheme!r}; want one of: {', '.join(PARTITION_SCHEMES)}")
    n_clients = _int("n_clients", n_clients, 1)
    min_samples = _int("min_samples", min_samples, 0)
    max_tries = _int("max_tries", max_tries, 1)
    n = len(y)
    if n < n_clients * max(min_samples, 1):
        raise ConfigError(
            f"partition: got {n} examples for n_clients={n_clients} with min_samples={min_samples}; "
            f"want at least {n_clients * max(min_samples, 1)} examples"
        )
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), n_clients)
    elif scheme == "dirichlet":
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < float("inf"):
            raise ConfigError(f"partition beta: got {beta!r}; want a finite number > 0")
        parts = _dirichlet(y, n_clients, float(beta), min_samples, rng, max_tries)
    else:
        spc = _int("shards_per_client", shards_per_client, 1)
        n_shards = n_clients * spc
        if n < n_shards:
            raise ConfigError(
                f"partition shards: got {n} examples for {n_shards} shards "
                f"(n_clients={n_clients} x shards_per_client={spc}); want at least one example per shard"
            )
        if spc * (n // n_shards) < min_samples:
            raise ConfigError(
                f"partition shards: got {spc} shards of >= {n // n_shards} examples per client; "
                f"want >= min_samples={min_samples} examples per client"
            )
        order = rng.permutation(n)
        order = order[np.argsort(y[order], kind="stable")]
        shards = np.array_split(order, n_shards)
        deal = rng.permutation(n_shards).reshape(n_clients, spc)
        parts = [np.concatenate([shards[s] for s in row]) for row in deal]
    return [np.sort(p).astype(np.int64) for p in parts]


def _int(key: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"partition {key}: got {value!r}; want an int >= {low}")
    return int(value)


def _dirichlet(
    y: np.ndarray, n_clients: int, beta: float, min_samples: int, rng: np.random.Generator, max_tries: int
) -> list[np.ndarray]:
    classes = [np.flatnonzero(y == c) for c in np.unique(y)]
    smallest = 0
    for _ in range(max_tries):
        cuts = []
        sizes = np.zeros(n_clients, dtype=np.int64)
        for idx in classes:
            p = rng.dirichlet(np.full(n_clients, beta))
            bounds = np.round(np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            sizes += np.diff(np.concatenate(([0], bounds, [len(idx)])))
            cuts.append(bounds)
        smallest = int(sizes.min())
        if smallest >= min_samples:
            pieces = [np.split(rng.permutation(idx), b) for idx, b in zip(classes, cuts)]
            return [np.concatenate([pc[k] for pc in pieces]) for k in range(n_clients)]
    raise ConfigError(
        f"partition dirichlet: no draw in {max_tries} tries gave every one of {n_clients} clients "
        f">= min_samples={min_samples} examples (last draw's smallest client: {smallest}) with "
        f"beta={beta} and {len(y)} examples; want a larger beta, fewer clients or a smaller min_samples"
    )


def label_histogram(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """``H[k, c]`` = count of class ``c`` at client ``k``; shape ``(n_clients, C)``, int64."""
    y = np.asarray(labels)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ConfigError(f"label_histogram num_classes: got {num_classes!r}; want an int >= 1")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"label_histogram: got labels in [{y.min()}, {y.max()}]; want [0, {num_classes})")
    out = np.zeros((len(parts), int(num_classes)), dtype=np.int64)
    for k, p in enumerate(parts):
        out[k] = np.bincount(y[np.asarray(p, dtype=np.int64)], minlength=int(num_classes))
    return out


def label_skew(hist: np.ndarray) -> float:
    """Mean total-variation distance between each client's label distribution and the global one.

    ``skew = (1/n) sum_k (1/2) sum_c |H[k,c]/|H[k]| - G[c]|`` with ``G = sum_k H[k] / sum H``:
    0 for identical label mixes, approaching 1 when every client holds one rare class. Clients
    with no examples are skipped.
    """
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.size == 0 or h.sum() <= 0:
        raise ConfigError(
            f"label_skew: got histogram of shape {h.shape}; want a non-empty (n_clients, C) array"
        )
    g = h.sum(axis=0) / h.sum()
    rows = h.sum(axis=1)
    keep = rows > 0
    local = h[keep] / rows[keep, None]
    return float(0.5 * np.abs(local - g).sum(axis=1).mean())
