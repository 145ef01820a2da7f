"""Cohort sampling: which clients take part in a round, and under which sampling the accountant may claim
amplification.

Privacy amplification by subsampling for the Gaussian mechanism under add/remove-one neighbouring
(Abadi et al. 2016; Mironov, Talwar and Zhang 2019, the analysis behind Opacus's RDP accountant and
McMahan et al. 2018's DP-FedAvg) holds for **Poisson sampling**: each client joins the round
independently with probability ``q``, so the cohort size is random (Binomial(N, q)). A fixed-size
sample of ``m`` of ``N`` without replacement is a different mechanism; accounting it as Poisson with
``q = m / N`` is not a proven bound. So :func:`sampler_for` samples by Poisson whenever the round's
release is accounted with a proven amplification (user-level DP-FedAvg around the mean at ``q < 1``)
and uniformly otherwise.

A Poisson cohort can be empty (probability ``(1 - q)^N``). The mechanism must still release its output
then -- the noise alone, divided by the fixed denominator ``m`` -- or whether a cohort was empty would
leak participation; :class:`dp.DPFedAvg` accepts an empty stack for that reason.

>>> rng = np.random.default_rng(0)
>>> sampler = CohortSampler(population=10, cohort_size=10, poisson=True)
>>> draw_cohort(sampler, rng).tolist()  # q = 1: everyone
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
>>> CohortSampler(population=100, cohort_size=10, poisson=True).sample_rate
0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsec.config import Config
from fedsec.errors import ConfigError


@dataclass(frozen=True)
class CohortSampler:
    """How a round's cohort is drawn.

    Args:
        population: N, the number of clients.
        cohort_size: m, the (expected, for Poisson) cohort size, ``1 <= m <= N``.
        poisson: ``True``: each client joins independently with probability ``q = m / N``;
            ``False``: ``m`` clients uniformly without replacement (``N`` of ``N`` when ``m = N``).
    """

    population: int
    cohort_size: int
    poisson: bool

    def __post_init__(self) -> None:
        if not 1 <= self.cohort_size <= self.population:
            raise ConfigError(
                f"got cohort_size={self.cohort_size}, population={self.population}; "
                "want 1 <= cohort_size <= population"
            )

    @property
    def sample_rate(self) -> float:
        """q = m / N: the inclusion probability of each client."""
        return self.cohort_size / self.population

    @property
    def kind(self) -> str:
        if self.cohort_size == self.population:
            return "full"
        return "poisson" if self.poisson else "fixed"


def poisson_cohort(rng: np.random.Generator, population: int, q: float) -> np.ndarray:
    """Sorted ids of a Poisson sample: client ``i`` is included iff ``U_i < q`` for i.i.d. uniform ``U_i``."""
    return np.flatnonzero(rng.random(population) < q).astype(np.int64)


def draw_cohort(sampler: CohortSampler, rng: np.random.Generator) -> np.ndarray:
    """The cohort of one round (sorted int64 ids; possibly empty under Poisson sampling)."""
    n, m = sampler.population, sampler.cohort_size
    if m == n:
        return np.arange(n, dtype=np.int64)
    if sampler.poisson:
        return poisson_cohort(rng, n, sampler.sample_rate)
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


def sampler_for(cfg: Config) -> CohortSampler:
    """The run's sampler: Poisson exactly when user-level DP-FedAvg (``clip_rule_noise``) around the
    plain mean accounts the round with amplification by sampling -- the one composition whose
    epsilon is proven. Uniform fixed-size otherwise: local noise claims no amplification, DP-SGD
    samples inside each client, and a robust rule's epsilon under DP-FedAvg is heuristic anyway
    (its statement says so) while its Byzantine bound needs a cohort of known size."""
    n = cfg.data.n_clients
    m = cfg.train.clients_per_round or n
    poisson = cfg.dp.mode == "user" and cfg.dp.order == "clip_rule_noise" and _plain_mean(cfg)
    return CohortSampler(population=n, cohort_size=m, poisson=poisson)


def _plain_mean(cfg: Config) -> bool:
    d = cfg.defenses[0] if len(cfg.defenses) == 1 else None
    return d is not None and d.rule == "mean" and not d.pre and not d.reputation


__all__ = ["CohortSampler", "draw_cohort", "poisson_cohort", "sampler_for"]
