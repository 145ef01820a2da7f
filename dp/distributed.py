"""Distributed discrete Gaussian (DDG) under secure aggregation: the pure math of each client's
encoding and of the server's decoding, and the accounting of the noisy sum.

Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation" (ICML 2021). For an update ``x`` in R^d, a public per-round seed, clip ``c`` and a ring
Z_{2^b}, a client sends::

    y = clip_c(x)                                   L2 clip
    y = H D_s pad(y) / sqrt(D)                      randomized Hadamard rotation, D = 2^ceil(log2 d)
    y = y / gamma                                   scale to the integer grid (granularity gamma)
    v = conditional_round(y, Delta2)                integers with ||v|| <= Delta2 (the sensitivity)
    v = v + N_Z(0, sigma^2)^D                       its share of the noise, sigma = z Delta2 / sqrt(n)
    send v mod 2^b                                  (the secure sum adds these in the ring)

The server lifts the ring sum to the centered range [-2^(b-1), 2^(b-1)), multiplies by gamma, rotates
back and drops the padding: an estimate of ``sum_i clip_c(x_i)`` carrying the discrete noise of all
contributors, central-equivalent std about ``z * gamma * Delta2`` per rotated coordinate.

Granularity (:meth:`DDGConfig.gamma`): the smallest gamma for which a union bound over the D
coordinates bounds the chance that the sum leaves the ring by ``wrap_prob``, treating each rotated
coordinate of the sum as sub-Gaussian with variance proxy
``S^2 = (n c / gamma)^2 / D + n sigma^2 + n / 4`` (Hoeffding for the random signs, sigma^2 for each
discrete Gaussian, 1/4 for each rounding error); so ``2 D exp(-(2^(b-1))^2 / (2 S^2)) <= wrap_prob``.
The conditioning of the rounding makes that last term approximate. Each client also checks that its own
integers fit the ring (:class:`dp.errors.ModularWrapError`).

Accounting (:func:`ddg_rdp`): Kairouz et al. (arXiv 2102.06387), Proposition 14: the sum of n iid
N_Z(0, sigma^2)^D vectors with L2 sensitivity Delta2 (integer units) satisfies Renyi DP of every integer
order alpha >= 2 with

    RDP(alpha) <= min( alpha/2 * s^2 + tau D,  alpha/2 * (s + sqrt(D) tau)^2 ),
    s = Delta2 / (sqrt(n) sigma),   tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)),

(the proposition's third term needs an L1 bound and is left out, which only loosens the bound). With
sigma >~ 2, tau is negligible and this is the continuous Gaussian's alpha / (2 z^2). Rounds compose by
adding RDP curves; Opacus's RDP conversion gives (epsilon, delta). Assumptions, stated in the privacy
statement: every contributor adds its share honestly (Byzantine clients that skip their noise are not
discounted unless the caller passes fewer noisy contributors), the server sees only the sum (secure
aggregation), and no amplification by subsampling is claimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import nacl.utils
import numpy as np

from dp.accounting import check_delta, check_noise_multiplier, statement
from dp.discrete import UniformSource, conditional_round, rounded_norm_bound, sample_discrete_gaussian
from dp.errors import ModularWrapError, PrivacyConfigError
from fedcore import l2_clip_factors
from fedcore.ring import centered_lift

SEED_BYTES = 32
RDP_ORDERS: tuple[int, ...] = tuple(range(2, 257))  # integer orders: Proposition 14 is stated for them


# ---- rotation -------------------------------------------------------------------------------------


def padded_dim(d: int) -> int:
    """The smallest power of two >= d."""
    return 1 << max(0, (int(d) - 1).bit_length())


def hadamard(x: np.ndarray) -> np.ndarray:
    """Orthonormal fast Walsh-Hadamard transform along the last axis (length a power of two):
    ``H x / sqrt(D)``, with ``H`` the Sylvester matrix. Self-inverse; O(D log D), no Python loop over
    coordinates."""
    a = np.array(x, dtype=np.float64, copy=True)
    n = a.shape[-1]
    if n & (n - 1):
        raise PrivacyConfigError(f"got length {n}; want a power of two")
    lead = a.shape[:-1]
    h = 1
    while h < n:
        v = a.reshape(*lead, n // (2 * h), 2, h)
        top, bot = v[..., 0, :], v[..., 1, :]
        a = np.stack((top + bot, top - bot), axis=-2).reshape(*lead, n)
        h *= 2
    return a / math.sqrt(n)


def rotation_signs(seed: bytes, dim: int) -> np.ndarray:
    """The diagonal of D_s: ``dim`` signs +-1 from libsodium's stream keyed by the public round seed."""
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        got = len(seed) if isinstance(seed, bytes) else type(seed).__name__
        raise PrivacyConfigError(f"got a rotation seed of {got}; want {SEED_BYTES} bytes")
    raw = np.frombuffer(nacl.utils.randombytes_deterministic((dim + 7) // 8, seed), dtype=np.uint8)
    bits = np.unpackbits(raw)[:dim]
    return 1.0 - 2.0 * bits.astype(np.float64)


def rotate(x: np.ndarray, seed: bytes) -> np.ndarray:
    """``H D_s pad(x) / sqrt(D)`` along the last axis (zero padding to D = :func:`padded_dim`)."""
    a = np.asarray(x, dtype=np.float64)
    dim = padded_dim(a.shape[-1])
    pad = np.zeros((*a.shape[:-1], dim))
    pad[..., : a.shape[-1]] = a
    return hadamard(pad * rotation_signs(seed, dim))


def unrotate(y: np.ndarray, seed: bytes, d: int) -> np.ndarray:
    """Inverse of :func:`rotate`: ``D_s H y / sqrt(D)``, then the first ``d`` coordinates."""
    a = np.asarray(y, dtype=np.float64)
    return (hadamard(a) * rotation_signs(seed, a.shape[-1]))[..., :d]


def clip_l2(x: np.ndarray, clip: float) -> np.ndarray:
    """``x * min(1, clip / ||x||_2)``."""
    a = np.asarray(x, dtype=np.float64)
    return a * float(l2_clip_factors(np.array([np.linalg.norm(a)]), clip)[0])


# ---- ring -----------------------------------------------------------------------------------------


def to_ring(v: np.ndarray, bits: int) -> np.ndarray:
    """Signed integers -> Z_{2^bits} (uint64, two's complement). Refuses values outside
    ``[-2^(bits-1), 2^(bits-1))``: they would wrap on their own."""
    a = np.asarray(v, dtype=np.int64)
    half = 1 << (bits - 1)
    if a.size and (int(a.max()) >= half or int(a.min()) < -half):
        raise ModularWrapError(
            f"got an integer of magnitude {int(np.abs(a).max())}; want within [-2^{bits - 1}, 2^{bits - 1}) "
            "(raise bits or lower the clip)"
        )
    return a.astype(np.uint64) & np.uint64((1 << bits) - 1)


def from_ring(y: np.ndarray, bits: int) -> np.ndarray:
    """Z_{2^bits} -> the centered integers ``[-2^(bits-1), 2^(bits-1))`` (int64;
    :func:`fedcore.ring.centered_lift`)."""
    return centered_lift(y, bits)


# ---- accounting -----------------------------------------------------------------------------------


def ddg_tau(sigma: float, n: int) -> float:
    """tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1)) (Kairouz et al. 2021, Theorem 1)."""
    k = np.arange(1, max(n, 1), dtype=np.float64)
    return float(10.0 * np.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1.0)).sum())


def ddg_rdp(
    delta2: float, sigma: float, n: int, dim: int, orders: tuple[int, ...] = RDP_ORDERS
) -> np.ndarray:
    """RDP at ``orders`` of one release of the sum of ``n`` iid N_Z(0, sigma^2)^dim with L2 sensitivity
    delta2 (Proposition 14 of Kairouz et al., see the module docstring); ``inf`` without noise. The
    result assumes sigma >= 1/2; a smaller positive sigma raises."""
    a = np.asarray(orders, dtype=np.float64)
    if n < 1 or sigma <= 0:
        return np.full(a.shape, math.inf)
    if sigma < 0.5:
        raise PrivacyConfigError(
            f"got a per-client discrete Gaussian sigma={sigma:.4g}; want >= 0.5 (Prop. 14)"
        )
    s = delta2 / (math.sqrt(n) * sigma)
    tau = ddg_tau(sigma, n)
    return np.minimum(a / 2.0 * s**2 + tau * dim, a / 2.0 * (s + math.sqrt(dim) * tau) ** 2)


def rdp_epsilon(rdp: np.ndarray, delta: float, orders: tuple[int, ...] = RDP_ORDERS) -> float:
    """(epsilon, delta) from an RDP curve at ``orders`` via Opacus's conversion; 0 for a zero curve."""
    r = np.asarray(rdp, dtype=np.float64)
    if not np.any(r):
        return 0.0
    if not np.isfinite(r).any():
        return math.inf
    # Imported here: opacus takes seconds to import, and importing this module must not pay it.
    from opacus.accountants.analysis.rdp import get_privacy_spent

    eps, _ = get_privacy_spent(orders=list(orders), rdp=r, delta=delta)
    return float(eps)


# ---- configuration --------------------------------------------------------------------------------


def _int_at_least(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise PrivacyConfigError(f"got {name}={value!r}; want an int >= {low}")
    return int(value)


@dataclass(frozen=True)
class DDGConfig:
    """Public parameters of the distributed discrete Gaussian, shared by clients and server.

    Args:
        dim: d, the update length.
        n_clients: n, the number of contributors the noise is split over (each adds sigma^2 = var / n).
        clip: c, the L2 clip of each update (real units).
        noise_multiplier: z; the sum carries N_Z noise of std ``z * Delta2`` in integer units, i.e.
            sensitivity-relative noise z as in the central Gaussian mechanism.
        bits: b, the ring Z_{2^b} of the secure sum (at most 62).
        beta: conditional-rounding failure probability per try (Kairouz et al. use exp(-1/2)).
        wrap_prob: per-round bound on the chance that any coordinate of the sum wraps around the ring.
    """

    dim: int
    n_clients: int
    clip: float
    noise_multiplier: float
    bits: int = 16
    beta: float = math.exp(-0.5)
    wrap_prob: float = 1e-6

    def __post_init__(self) -> None:
        _int_at_least("dim", self.dim, 1)
        _int_at_least("n_clients", self.n_clients, 1)
        if (
            isinstance(self.clip, bool)
            or not isinstance(self.clip, int | float)
            or not math.isfinite(self.clip)
            or self.clip <= 0
        ):
            raise PrivacyConfigError(f"got clip={self.clip!r}; want a finite number > 0")
        check_noise_multiplier(self.noise_multiplier)
        _int_at_least("bits", self.bits, 2)
        if self.bits > 62:
            raise PrivacyConfigError(f"got bits={self.bits}; want 2 <= bits <= 62")
        for key in ("beta", "wrap_prob"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise PrivacyConfigError(f"got {key}={v!r}; want a number")
        if not (0.0 <= self.beta < 1.0):
            raise PrivacyConfigError(f"got beta={self.beta!r}; want 0 <= beta < 1")
        if not (0.0 < self.wrap_prob < 1.0):
            raise PrivacyConfigError(f"got wrap_prob={self.wrap_prob!r}; want 0 < wrap_prob < 1")
        g = self.gamma  # fails early when no granularity fits the ring
        if self.noise_multiplier > 0 and self.sigma_client(g) < 0.5:
            raise PrivacyConfigError(
                f"got noise_multiplier={self.noise_multiplier} giving a per-client sigma of "
                f"{self.sigma_client(g):.3g}; want sigma >= 0.5 (the accounting bound's assumption)"
            )

    @property
    def padded_dim(self) -> int:
        return padded_dim(self.dim)

    def delta2(self, gamma: float) -> float:
        """Sensitivity in integer units at granularity gamma (:func:`rounded_norm_bound`)."""
        return rounded_norm_bound(self.clip / gamma, self.padded_dim, self.beta)

    def sigma_client(self, gamma: float) -> float:
        """Per-client discrete Gaussian std: ``z * Delta2 / sqrt(n)``."""
        return float(self.noise_multiplier) * self.delta2(gamma) / math.sqrt(self.n_clients)

    def _spread(self, gamma: float) -> float:
        n, D = self.n_clients, self.padded_dim
        return math.sqrt((n * self.clip / gamma) ** 2 / D + n * self.sigma_client(gamma) ** 2 + n / 4.0)

    @cached_property
    def tail(self) -> float:
        """k with 2 D exp(-k^2 / 2) = wrap_prob: the ring must hold k times the spread."""
        return math.sqrt(2.0 * math.log(2.0 * self.padded_dim / self.wrap_prob))

    @cached_property
    def gamma(self) -> float:
        """The finest granularity whose sum stays in the ring with probability >= 1 - wrap_prob."""
        room = float(1 << (self.bits - 1)) / self.tail
        lo, hi = self.clip * 1e-15, self.clip * 1e15
        if self._spread(hi) > room:
            raise PrivacyConfigError(
                f"got bits={self.bits} for n_clients={self.n_clients}, dim={self.dim}, "
                f"noise_multiplier={self.noise_multiplier}; want more bits: even the coarsest grid "
                f"needs a spread of {self._spread(hi):.4g} > 2^{self.bits - 1} / {self.tail:.3g}"
            )
        for _ in range(200):  # bisection on log(gamma): the spread decreases with gamma
            mid = math.sqrt(lo * hi)
            if self._spread(mid) > room:
                lo = mid
            else:
                hi = mid
            if hi / lo < 1 + 1e-9:
                break
        return hi

    def rdp(self, contributors: int | None = None) -> np.ndarray:
        """RDP curve (at :data:`RDP_ORDERS`) of one round with ``contributors`` noisy clients (default n)."""
        n = self.n_clients if contributors is None else contributors
        return ddg_rdp(self.delta2(self.gamma), self.sigma_client(self.gamma), n, self.padded_dim)


# ---- parties --------------------------------------------------------------------------------------


class DDGClient:
    """One client's encoding: clip -> rotate -> scale -> conditional round -> discrete noise -> ring.

    Args:
        config: the public :class:`DDGConfig`.
        seed: 32 bytes to reproduce the client's rounding and noise; ``None`` (default) uses the OS
            CSPRNG through libsodium.
    """

    def __init__(self, config: DDGConfig, seed: bytes | None = None) -> None:
        self.config = config
        self._src = UniformSource(seed)

    def encode(self, x: np.ndarray, round_seed: bytes) -> np.ndarray:
        """Ring elements (uint64 < 2^bits, length ``padded_dim``) ready for the secure sum."""
        cfg = self.config
        a = np.asarray(x, dtype=np.float64).reshape(-1)
        if a.size != cfg.dim:
            raise PrivacyConfigError(f"got an update of length {a.size}; want {cfg.dim}")
        if not np.all(np.isfinite(a)):
            raise PrivacyConfigError("got a NaN or infinite update; want finite floats")
        g = cfg.gamma
        y = rotate(clip_l2(a, cfg.clip), round_seed) / g
        v = conditional_round(y, cfg.delta2(g), self._src)
        v = v + sample_discrete_gaussian(cfg.sigma_client(g), v.size, self._src)
        return to_ring(v, cfg.bits)


class DDGServer:
    """The server's decoding of the ring sum and the round-by-round accounting.

    Args:
        config: the public :class:`DDGConfig`.
    """

    def __init__(self, config: DDGConfig) -> None:
        self.config = config
        self.rdp_total = np.zeros(len(RDP_ORDERS))
        self.rounds = 0
        self.min_contributors: int | None = None

    def decode(self, ring_sum: np.ndarray, round_seed: bytes, contributors: int) -> np.ndarray:
        """Estimate of ``sum_i clip(x_i)`` (float64, length ``dim``) from the secure sum of
        ``contributors`` encodings; records the round's privacy cost with that many noisy clients."""
        cfg = self.config
        _int_at_least("contributors", contributors, 1)
        y = np.asarray(ring_sum)
        if y.shape != (cfg.padded_dim,):
            raise PrivacyConfigError(f"got a ring sum of shape {y.shape}; want ({cfg.padded_dim},)")
        out = unrotate(from_ring(y, cfg.bits).astype(np.float64) * cfg.gamma, round_seed, cfg.dim)
        self.rdp_total = self.rdp_total + cfg.rdp(contributors)
        self.rounds += 1
        self.min_contributors = (
            contributors if self.min_contributors is None else min(self.min_contributors, contributors)
        )
        return out

    def reset(self) -> None:
        self.rdp_total = np.zeros(len(RDP_ORDERS))
        self.rounds = 0
        self.min_contributors = None

    def epsilon(self, delta: float) -> float:
        return rdp_epsilon(self.rdp_total, check_delta(delta))

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        delta = check_delta(delta)
        cfg = self.config
        g = cfg.gamma
        return statement(
            epsilon=self.epsilon(delta),
            delta=delta,
            accountant="rdp (Kairouz et al. 2021, Prop. 14; Opacus conversion)",
            mechanism=(
                f"distributed discrete Gaussian under secure aggregation: rotate, clip {cfg.clip}, "
                f"round to grid {g:.4g}, N_Z noise split over {cfg.n_clients} clients, {cfg.bits}-bit ring"
            ),
            sampling="none claimed (q=1); every contributor adds its noise share honestly",
            level="user",
            guarantee="proven under the stated assumptions",
            noise_multiplier=float(cfg.noise_multiplier),
            rounds=self.rounds,
            min_contributors=self.min_contributors,
            sensitivity_int=cfg.delta2(g),
            sigma_client_int=cfg.sigma_client(g),
            granularity=g,
            wrap_prob_per_round=cfg.wrap_prob,
        )
