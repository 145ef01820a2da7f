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

from typing import TYPE_CHECKING, Any

from dp.accounting import Accountant, compose, noise_for_epsilon, statement
from dp.central import AdaptiveClipping, DPFedAvg, LocalNoise, clip_rows, mean_rule
from dp.distributed import DDGClient, DDGConfig, DDGServer
from dp.errors import (
    AccountingError,
    AlreadyAttachedError,
    BudgetExceededError,
    DPError,
    ModularWrapError,
    PrivacyConfigError,
)

if TYPE_CHECKING:
    from dp.client import PrivateClient

ORDERS: tuple[str, ...] = ("clip_rule_noise", "local_noise_rule")


def __getattr__(name: str) -> Any:
    """``PrivateClient`` on first use (PEP 562): dp.client imports Opacus, seconds of import time that
    ``import protocols`` (every Flower ClientApp process) would otherwise pay without training privately."""
    if name == "PrivateClient":
        from dp.client import PrivateClient

        return PrivateClient
    raise AttributeError(f"module 'dp' has no attribute {name!r}")


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
