"""Discrete randomness for distributed DP: a libsodium uniform source, the discrete Gaussian, and
conditional randomized rounding.

* :class:`UniformSource`: uniforms in (0, 1) from libsodium's ChaCha20 stream
  (``randombytes_deterministic``), keyed by a 32-byte seed from the OS CSPRNG (``nacl.utils.random``)
  unless the caller passes a seed to reproduce a run. Each call derives a fresh stream key
  ``BLAKE2b(counter, key=seed)``, so no stream is ever reused.
* :func:`sample_discrete_gaussian`: the rejection sampler of Canonne, Kamath and Steinke ("The Discrete
  Gaussian for Differential Privacy", NeurIPS 2020, Algorithm 3), **vectorized in float64**: propose
  ``Y`` from the discrete Laplace with scale ``t = floor(sigma) + 1`` (difference of two geometric
  variables, each ``floor(-t ln U)``), accept with probability
  ``exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2))``; rejected entries are redrawn. The paper's version uses
  exact rational arithmetic; this one evaluates logs and exps in double precision, so the output law
  matches N_Z(0, sigma^2) up to floating-point error (about 1e-16 relative per probability) -- a stated
  deviation, chosen for speed (a Python loop per coordinate would take seconds per LeNet-sized update).
* :func:`conditional_round`: Kairouz, Liu, Steinke ("The Distributed Discrete Gaussian Mechanism for
  Federated Learning with Secure Aggregation", ICML 2021, section 4): round every coordinate up with
  probability equal to its fractional part, and redraw the whole vector until its L2 norm is at most
  :func:`rounded_norm_bound`; the bound holds for every output, so it is the L2 sensitivity used by the
  accounting.
"""

from __future__ import annotations

import math

import nacl.encoding
import nacl.hash
import nacl.utils
import numpy as np

from dp.errors import PrivacyConfigError

SEED_BYTES = 32
_PERSON = b"fedsec.dp.unif1".ljust(16, b"\0")


class UniformSource:
    """Uniform floats in the open interval (0, 1) from a libsodium ChaCha20 stream.

    Args:
        seed: 32 bytes to reproduce a run; ``None`` (default) draws one from the OS CSPRNG.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            seed = nacl.utils.random(SEED_BYTES)
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            got = len(seed) if isinstance(seed, bytes) else type(seed).__name__
            raise PrivacyConfigError(f"got a seed of {got}; want {SEED_BYTES} bytes or None")
        self._seed = seed
        self._counter = 0

    def __repr__(self) -> str:  # never show the seed
        return f"UniformSource(calls={self._counter})"

    def words(self, size: int) -> np.ndarray:
        """``size`` uniform uint64 words from a fresh stream."""
        key = nacl.hash.blake2b(
            self._counter.to_bytes(8, "little"),
            digest_size=32,
            key=self._seed,
            person=_PERSON,
            encoder=nacl.encoding.RawEncoder,
        )
        self._counter += 1
        raw = nacl.utils.randombytes_deterministic(8 * size, key) if size else b""
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def uniform(self, size: int) -> np.ndarray:
        """``size`` floats ``(k + 0.5) / 2^53`` with ``k`` a uniform 53-bit integer: never 0 or 1."""
        k = self.words(size) >> np.uint64(11)
        return (k.astype(np.float64) + 0.5) * (1.0 / 2.0**53)


def _discrete_laplace(t: float, size: int, src: UniformSource) -> np.ndarray:
    """P(Y = y) proportional to exp(-|y| / t): a difference of two geometric variables on {0, 1, ...}."""
    u = src.uniform(2 * size)
    g = np.floor(-t * np.log(u))
    return (g[:size] - g[size:]).astype(np.int64)


def sample_discrete_gaussian(sigma: float, size: int, src: UniformSource | None = None) -> np.ndarray:
    """``size`` iid draws from the discrete Gaussian N_Z(0, sigma^2): P(k) proportional to
    exp(-k^2 / (2 sigma^2)) on the integers (see the module docstring for the sampler).

    ``sigma = 0`` gives zeros. Returns int64.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma < 0:
        raise PrivacyConfigError(f"got sigma={sigma!r}; want a finite number >= 0")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise PrivacyConfigError(f"got size={size!r}; want an int >= 0")
    out = np.zeros(int(size), dtype=np.int64)
    if sigma == 0 or size == 0:
        return out
    src = src if src is not None else UniformSource()
    t = math.floor(sigma) + 1.0
    s2 = float(sigma) ** 2
    todo = np.arange(int(size))
    while todo.size:
        y = _discrete_laplace(t, todo.size, src)
        accept = src.uniform(todo.size) < np.exp(-((np.abs(y) - s2 / t) ** 2) / (2.0 * s2))
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out


def rounded_norm_bound(norm: float, dim: int, beta: float) -> float:
    """Kairouz et al. (2021): with probability >= 1 - beta, randomized rounding of a vector of L2 norm
    at most ``norm`` in ``dim`` coordinates has norm at most

        min( norm + sqrt(dim),  sqrt(norm^2 + dim / 4 + sqrt(2 ln(1/beta)) * (norm + sqrt(dim) / 2)) ).

    ``beta = 0`` means "no conditioning": the deterministic bound ``norm + sqrt(dim)``.
    """
    if not (0.0 <= beta < 1.0):
        raise PrivacyConfigError(f"got beta={beta!r}; want 0 <= beta < 1")
    hard = norm + math.sqrt(dim)
    if beta == 0.0:
        return hard
    soft = math.sqrt(
        norm**2 + dim / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (norm + math.sqrt(dim) / 2.0)
    )
    return min(hard, soft)


def conditional_round(
    x: np.ndarray, bound: float, src: UniformSource | None = None, max_tries: int = 1000
) -> np.ndarray:
    """Unbiased randomized rounding of ``x`` to integers, redrawn until ``||round(x)||_2 <= bound``.

    Each try succeeds with probability >= 1 - beta when ``bound = rounded_norm_bound(||x||, d, beta)``;
    ``max_tries`` failures in a row raise (probability beta^max_tries). The conditioning introduces a
    small bias (Kairouz et al. quantify it); without it the sensitivity would be the looser hard bound.
    """
    src = src if src is not None else UniformSource()
    a = np.asarray(x, dtype=np.float64)
    lo = np.floor(a)
    frac = a - lo
    for _ in range(max_tries):
        r = lo + (src.uniform(a.size).reshape(a.shape) < frac)
        if float(np.dot(r.ravel(), r.ravel())) <= bound * bound:
            return r.astype(np.int64)
    raise PrivacyConfigError(
        f"got no rounding within norm bound {bound:.4g} after {max_tries} tries (input norm "
        f"{float(np.linalg.norm(a)):.4g}); want an input clipped to the configured norm"
    )
