"""Attacks: callables that return the Byzantine rows of a round.

>>> import torch
>>> from robust import attacks
>>> atk = attacks.make("ipm", eps=2.0)
>>> own = torch.ones(2, 3)
>>> atk(own, ctx=attacks.AttackContext(n=5, f=2))
tensor([[-2., -2., -2.],
        [-2., -2., -2.]])

Knowledge is explicit: by default an attack sees only the Byzantine clients' own honest gradients;
omniscient attacks (``Mimic``, or ``ALIE``/``IPM``/``MinMax``/``MinSum``/``Calibrated`` built with
``omniscient=True``) also receive the honest clients' gradients.
"""

from robust.attacks.base import (
    ATTACKS,
    Attack,
    AttackContext,
    AttackError,
    KnowledgeError,
    make,
)
from robust.attacks.calibrated import Calibrated, simulated_honest
from robust.attacks.faults import LargeNorm, NonFinite
from robust.attacks.optimize import MinMax, MinSum, ndss_search, perturbation
from robust.attacks.stats import (
    ALIE,
    IPM,
    Gaussian,
    Mimic,
    NoAttack,
    Scaling,
    SignFlip,
    alie_z_max,
    mimic_target,
)

__all__ = [
    "ALIE",
    "ATTACKS",
    "IPM",
    "Attack",
    "AttackContext",
    "AttackError",
    "Calibrated",
    "Gaussian",
    "KnowledgeError",
    "LargeNorm",
    "Mimic",
    "MinMax",
    "MinSum",
    "NoAttack",
    "NonFinite",
    "Scaling",
    "SignFlip",
    "alie_z_max",
    "make",
    "mimic_target",
    "ndss_search",
    "perturbation",
    "simulated_honest",
]
