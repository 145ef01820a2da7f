"""Privacy: DP-SGD on clients (Opacus), user-level DP-FedAvg, distributed DP, accounting.

Public names:
    Accountant            standalone Opacus RDP/PRV accountant (``step``, ``epsilon``).
    DPFedAvg              clip -> any rule -> central Gaussian noise (McMahan et al. 2018).
    AdaptiveClipping      geometric clip update with a noised count (Andrew et al. 2021).
    LocalNoise            clip + Gaussian noise on each update, before a robust rule.
    PrivateClient         one client training with DP-SGD on its own private copy (Opacus).
    DDGConfig, DDGClient, DDGServer
                          distributed discrete Gaussian under secure aggregation (Kairouz et al. 2021).
"""

from dp.accounting import Accountant, compose, noise_for_epsilon, statement
from dp.central import AdaptiveClipping, DPFedAvg, LocalNoise, clip_rows, mean_rule
from dp.client import PrivateClient
from dp.distributed import DDGClient, DDGConfig, DDGServer
from dp.errors import (
    AccountingError,
    AlreadyAttachedError,
    BudgetExceededError,
    DPError,
    ModularWrapError,
    PrivacyConfigError,
)

ORDERS: tuple[str, ...] = ("clip_rule_noise", "local_noise_rule")

__all__ = [
    "ORDERS",
    "Accountant",
    "AccountingError",
    "AdaptiveClipping",
    "AlreadyAttachedError",
    "BudgetExceededError",
    "DDGClient",
    "DDGConfig",
    "DDGServer",
    "DPError",
    "DPFedAvg",
    "LocalNoise",
    "ModularWrapError",
    "PrivacyConfigError",
    "PrivateClient",
    "clip_rows",
    "compose",
    "mean_rule",
    "noise_for_epsilon",
    "statement",
]
