"""Wiring of the ``[dp]`` section into the round loop (the mechanisms themselves live in ``dp/``).

* ``user`` + ``clip_rule_noise``: ``dp.DPFedAvg`` wraps the server's rule (clip each update to C, run
  the rule, add N(0, (zC)^2 / m^2)-scaled noise; McMahan et al. 2018). One accountant step per round
  with sampling rate q = cohort / population; the cohort is then Poisson-sampled (:mod:`fedsec.cohorts`),
  so the amplification the accountant claims holds. A robust rule's epsilon is labelled ``heuristic``
  in the statement, the metrics (``dp_guarantee``), the reports and a budget stop.
* ``user`` + ``local_noise_rule``: ``dp.LocalNoise`` clips and noises every update before the rule
  (local DP per user); accounted at z/2 per round with q = 1 (replace-one sensitivity 2C, no gain
  from sampling claimed). Each mechanism keeps its own accountant and statement.
* ``dpsgd``: every honest client trains with DP-SGD (``dp.PrivateClient``, Opacus); the reported epsilon
  is the largest over clients (sample-level).
* ``distributed``: the ``secagg_ddp`` protocol adds the noise; its ``privacy_statement`` is reported.

The statement written into metrics and report.md: epsilon, delta, accountant, mechanism, sampling, level.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import numpy as np
import torch

from fedsec.cohorts import sampler_for
from fedsec.config import Config
from fedsec.errors import ConfigError


class PrivacyWiring:
    """Holds the DP objects of one run; a no-op when ``dp.mode = "none"``."""

    def __init__(self, cfg: Config, *, expected_clients: int) -> None:
        self.cfg = cfg
        self.dp = cfg.dp
        self.mode = cfg.dp.mode
        self.m = expected_clients
        self.mechanism: Any = None  # user level: the dp mechanism, which also keeps the accountant
        self.clients: dict[int, Any] = {}
        self.protocol: Any = None
        if self.mode == "none":
            return
        try:
            import dp
        except ImportError as e:  # pragma: no cover - dp/ is part of the distribution
            raise ConfigError(
                f"dp.mode: got {self.mode!r}; want 'none' (the dp package is unavailable: {e})"
            ) from e
        self._dp = dp
        if self.mode == "user" and self.dp.order == "local_noise_rule":
            self.mechanism = dp.LocalNoise(
                self.dp.clip, self.dp.noise_multiplier, accountant=cast(Any, self.dp.accountant)
            )

    # ---------------------------------------------------------------- server side
    @property
    def client_level(self) -> bool:
        return self.mode == "dpsgd"

    def wrap_rule(self, rule: Any) -> Any:
        if self.mode == "user" and self.dp.order == "clip_rule_noise":
            self.mechanism = self._dp.DPFedAvg(
                rule,
                clip=self.dp.clip,
                noise_multiplier=self.dp.noise_multiplier,
                expected_clients=self.m,
                population=self.cfg.data.n_clients,
                accountant=cast(Any, self.dp.accountant),
                sampling="poisson" if sampler_for(self.cfg).poisson else "fixed",
            )
            return self.mechanism
        return rule

    def local_noise(self, stack: torch.Tensor) -> torch.Tensor:
        if self.mode == "user" and self.dp.order == "local_noise_rule":
            return self.mechanism(stack)
        return stack

    def bind_protocol(self, proto: Any) -> None:
        self.protocol = proto

    def would_exceed_budget(self) -> bool:
        """Whether one more round would push epsilon above ``dp.budget_epsilon`` (user-level only)."""
        if self.dp.budget_epsilon is None or self.mechanism is None:
            return False
        return bool(self.mechanism.would_exceed(self.dp.budget_epsilon, self.dp.delta))

    def budget_stop_reason(self) -> str:
        """Why a run stopped on its budget; says so when the epsilon it stopped on is not proven."""
        s = self.statement() or {}
        kind = "" if s.get("guarantee", "proven") == "proven" else f" ({s['guarantee']} epsilon, not proven)"
        return f"privacy budget: epsilon would exceed {self.dp.budget_epsilon}{kind}"

    # ---------------------------------------------------------------- client side (DP-SGD)
    def setup_clients(
        self, model: torch.nn.Module, train: Any, parts: list[np.ndarray], is_byz: np.ndarray
    ) -> None:
        if self.mode != "dpsgd":
            return
        for i, idx in enumerate(parts):
            if is_byz[i]:
                continue
            self.clients[i] = self._dp.PrivateClient(
                copy.deepcopy(model),
                train.subset(idx),
                noise_multiplier=self.dp.noise_multiplier,
                max_grad_norm=self.dp.clip,
                batch_size=self.cfg.train.batch_size,
                lr=self.cfg.train.lr,
                accountant=cast(Any, self.dp.accountant),
            )

    def client_updates(
        self, w: torch.Tensor, cohort: np.ndarray, computer: Any, clients: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """DP-SGD updates for honest clients, plain ones for Byzantine clients (they do not privatize)."""
        stack = computer.updates(w, clients, gen)
        mode = self.cfg.train.mode
        for row, c in enumerate(cohort):
            pc = self.clients.get(int(c))
            if pc is not None:
                upd = pc.compute(w.detach().cpu(), mode=mode, local_steps=self.cfg.train.local_steps)
                stack[row] = torch.as_tensor(upd, dtype=stack.dtype, device=stack.device)
        return stack

    # ---------------------------------------------------------------- reporting
    def statement(self) -> dict[str, Any] | None:
        if self.mode == "none":
            return None
        if self.mode == "user":
            # The mechanism's own statement: it knows its sensitivity, sampling and whether the
            # guarantee is proven (mean) or heuristic (a robust rule under DP-FedAvg).
            return dict(self.mechanism.privacy_statement(self.dp.delta))
        if self.mode == "dpsgd":
            stmts = [pc.privacy_statement(self.dp.delta) for pc in self.clients.values()]
            if not stmts:
                return None
            worst = max(stmts, key=lambda s: float(s["epsilon"]))
            return {**worst, "level": "sample", "note": "largest epsilon over honest clients"}
        if self.protocol is not None and hasattr(self.protocol, "privacy_statement"):
            return dict(self.protocol.privacy_statement(self.dp.delta))
        return {
            "epsilon": None,
            "delta": self.dp.delta,
            "mechanism": "distributed discrete noise",
            "level": "user",
        }

    def metrics(self) -> dict[str, Any]:
        s = self.statement()
        if s is None:
            return {}
        return {
            "dp_epsilon": s.get("epsilon"),
            "dp_delta": s.get("delta"),
            "dp_guarantee": s.get("guarantee", "proven" if s.get("epsilon") is not None else None),
        }
