"""Whole-run validation: everything a run will build is built and checked before anything trains.

:func:`check_run` builds every defense of a config (rule, pre-aggregators, reputation wrapper),
checks its Byzantine bound on the cohort the server will see, builds the attack with its strength and
resolves the device; any failure is a :class:`fedsec.errors.ConfigError` naming the defense and the
key ("got X; want Y"). Without it, an out-of-range parameter of the third defense surfaced only after
the first two had trained. Checks that need the data (``attack.backdoor_target`` below the number of
classes) run in :func:`check_data`, after the dataset is loaded and before the first round.
"""

from __future__ import annotations

import torch

import robust
from fedsec.config import Config
from fedsec.errors import ConfigError

__all__ = ["check_data", "check_device", "check_run"]


def check_device(name: str) -> None:
    """``train.device = "cuda"`` needs a CUDA device."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError('train.device: got "cuda" but no CUDA device is available; want "auto" or "cpu"')


def check_data(cfg: Config, num_classes: int) -> None:
    """Checks that need the loaded dataset's number of classes."""
    a = cfg.attack
    if a.data == "backdoor" and not 0 <= a.backdoor_target < num_classes:
        raise ConfigError(
            f"attack.backdoor_target: got {a.backdoor_target}; want a class in [0, {num_classes - 1}]"
        )


def check_run(cfg: Config) -> None:
    """Build and check every unit of ``cfg`` (see the module docstring); raises :class:`ConfigError`."""
    from fedsec.simulation import build_attack, build_defense

    check_device(cfg.train.device)
    for unit in cfg.units():
        label = unit.defense.label
        rule = build_defense(unit)
        cohort = unit.train.clients_per_round or unit.data.n_clients
        inner = rule.rule if isinstance(rule, robust.Reputation) else rule
        try:
            inner.check_bound(cohort, inner.f)
        except robust.RobustError as e:
            raise ConfigError(f"defense {label!r}: {e} (cohort of {cohort} clients)") from e
    build_attack(cfg)
