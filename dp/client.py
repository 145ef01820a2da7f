"""Sample-level DP-SGD on one federated client, through Opacus.

Each :class:`PrivateClient` owns a private deep copy of the model, fixed once with
``ModuleValidator.fix`` (BatchNorm -> GroupNorm and the like) and made private once with
``PrivacyEngine.make_private`` (Poisson sampling, per-sample clipping to ``max_grad_norm``, Gaussian
noise of std ``noise_multiplier * max_grad_norm``; Abadi et al., CCS 2016). The server's model is never
touched. Opacus must never be attached twice to one module (it would duplicate the per-sample hooks
and the noise): a module already wrapped, or a client attached a second time, raises
:class:`dp.errors.AlreadyAttachedError`.

Accounting: Opacus's accountant (RDP or PRV) steps once per noised batch with the loader's Poisson
rate ``q = 1 / ceil(len(data) / batch_size)``; the epsilon is per client, at the sample level.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import Any, Literal

import torch
from opacus import GradSampleModule, PrivacyEngine
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dp._rng import secure_generator
from dp.accounting import KINDS, check_delta, check_noise_multiplier, statement
from dp.errors import AlreadyAttachedError, PrivacyConfigError

GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch", "ew", "ghost")
MODES: tuple[str, ...] = ("fedsgd", "fedavg")

# Every module Opacus was attached to by this package; a second attachment is refused.
_ATTACHED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def is_opacus_module(module: nn.Module) -> bool:
    """True if ``module`` is already wrapped by Opacus or carries its per-sample gradient hooks."""
    if isinstance(module, GradSampleModule) or module in _ATTACHED:
        return True
    for m in module.modules():
        if isinstance(m, GradSampleModule) or hasattr(m, "autograd_grad_sample_hooks"):
            return True
        hooks = [*m._forward_hooks.values(), *m._backward_hooks.values()]
        if any(_from_opacus(h) for h in hooks):
            return True
    return False


def _from_opacus(hook: object) -> bool:
    """True for a hook Opacus registered (a function or a ``functools.partial`` from its modules)."""
    fn = getattr(hook, "func", hook)
    return str(getattr(fn, "__module__", "") or "").startswith("opacus")


def as_dataset(data: object) -> Dataset[Any]:
    """A map-style torch ``Dataset`` as is; an object with tensor attributes ``x`` and ``y`` of equal
    length (e.g. a features/labels container) as ``TensorDataset(x, y)``."""
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return data
    x, y = getattr(data, "x", None), getattr(data, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and len(x) == len(y):
        return TensorDataset(x, y)
    raise PrivacyConfigError(
        f"got data of type {type(data).__name__}; want a map-style torch Dataset or an object with "
        "tensors x and y of equal length"
    )


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PrivacyConfigError(f"got {name}={value!r}; want a number > 0")
    return float(value)


class PrivateClient:
    """One client training with DP-SGD on its own private copy of the model.

    Args:
        model: the (server's) model; it is deep-copied, never modified or wrapped.
        data: the client's dataset of ``(input, label)`` pairs: a map-style torch ``Dataset``, or an
            object with tensors ``x`` and ``y`` (see :func:`as_dataset`).
        noise_multiplier: z, noise std over ``max_grad_norm``.
        max_grad_norm: C, per-sample L2 clip.
        batch_size: expected Poisson batch size (sampling rate ``~ batch_size / len(data)``).
        lr: SGD learning rate for ``mode="fedavg"``.
        accountant: ``"rdp"`` or ``"prv"``.
        grad_sample_mode: Opacus's per-sample gradient engine (``"hooks"``, ``"functorch"``, ``"ew"``,
            ``"ghost"``).
        secure_seed: ``True`` (default): noise and Poisson sampling come from generators seeded by the
            OS CSPRNG. ``False``: Opacus's defaults, i.e. torch's global RNG -- reproducible after
            ``torch.manual_seed``, only when the user asks for it.
        loss_fn: the training loss (mean reduction); default cross-entropy.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset[Any] | Any,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        batch_size: int,
        lr: float,
        accountant: Literal["rdp", "prv"] = "rdp",
        grad_sample_mode: str = "hooks",
        secure_seed: bool = True,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise PrivacyConfigError(f"got model of type {type(model).__name__}; want torch.nn.Module")
        if is_opacus_module(model):
            raise AlreadyAttachedError(
                "got a module already made private by Opacus; want the plain (server) model: "
                "attaching twice duplicates hooks and noise"
            )
        if accountant not in KINDS:
            raise PrivacyConfigError(f"got accountant={accountant!r}; want one of {KINDS}")
        if grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise PrivacyConfigError(
                f"got grad_sample_mode={grad_sample_mode!r}; want one of {GRAD_SAMPLE_MODES}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PrivacyConfigError(f"got batch_size={batch_size!r}; want an int >= 1")
        data = as_dataset(data)
        n = len(data)  # type: ignore[arg-type]
        if n < 1:
            raise PrivacyConfigError("got an empty dataset; want at least one example")
        self.noise_multiplier = check_noise_multiplier(noise_multiplier)
        self.max_grad_norm = _positive("max_grad_norm", max_grad_norm)
        self.lr = _positive("lr", lr)
        self.batch_size = batch_size
        self.grad_sample_mode = grad_sample_mode
        self.secure_seed = bool(secure_seed)
        self.accountant_kind = accountant
        self.n_examples = n
        self._data = data
        self._loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
        self._n_params = sum(p.numel() for p in model.parameters())
        private = ModuleValidator.fix(copy.deepcopy(model))
        if sum(p.numel() for p in private.parameters()) != self._n_params:
            raise PrivacyConfigError(
                "got a model whose Opacus fix changes its parameter count; want a model whose "
                "parameters keep their layout (replace unsupported layers yourself)"
            )
        self._plain = private
        self.steps = 0
        self.module: nn.Module | None = None
        self.attach()

    def attach(self) -> None:
        """Make the private copy private with Opacus. Called once by ``__init__``; again raises."""
        if self.module is not None or self._plain in _ATTACHED:
            raise AlreadyAttachedError("got a second attach on this client's model; want exactly one")
        ModuleValidator.validate(self._plain, strict=True)
        self.engine = PrivacyEngine(accountant=self.accountant_kind)
        optimizer = torch.optim.SGD(self._plain.parameters(), lr=self.lr)
        loader_gen = secure_generator() if self.secure_seed else None
        loader = DataLoader(self._data, batch_size=self.batch_size, generator=loader_gen)
        out = self.engine.make_private(
            module=self._plain,
            optimizer=optimizer,
            data_loader=loader,
            criterion=self._loss_fn,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=self.grad_sample_mode,
            noise_generator=secure_generator() if self.secure_seed else None,
        )
        _ATTACHED.add(self._plain)
        if self.grad_sample_mode == "ghost":
            self.module, self.optimizer, self._criterion, self.loader = out
        else:
            self.module, self.optimizer, self.loader = out
            self._criterion = self._loss_fn
        self.sample_rate = 1.0 / len(self.loader)
        self._batches = iter(self.loader)

    def _params(self) -> list[nn.Parameter]:
        return list(self._plain.parameters())

    def _next_batch(self) -> Any:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def _load(self, flat: torch.Tensor) -> None:
        flat = torch.as_tensor(flat)
        if flat.ndim != 1 or flat.numel() != self._n_params:
            raise PrivacyConfigError(
                f"got global_params of shape {tuple(flat.shape)}; want ({self._n_params},)"
            )
        with torch.no_grad():
            i = 0
            for p in self._params():
                k = p.numel()
                p.copy_(flat[i : i + k].view_as(p))
                i += k

    def _private_grad_step(self) -> None:
        """One Poisson batch: per-sample clip, sum, noise, average (Opacus's ``pre_step``)."""
        assert self.module is not None
        x, y = self._next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        self.module.train()
        loss = self._criterion(self.module(x), y)
        loss.backward()

    def compute(
        self, global_params: torch.Tensor, *, mode: str = "fedsgd", local_steps: int = 1
    ) -> torch.Tensor:
        """The client's private contribution from the flat global parameters.

        ``fedsgd``: the private (clipped, noised, averaged) gradient of one Poisson batch, flattened
        in ``model.parameters()`` order; the parameters are not changed. ``fedavg``: ``local_steps``
        DP-SGD steps with SGD(lr), returning ``new_params - global_params``. Each noised batch is one
        accountant step.
        """
        if mode not in MODES:
            raise PrivacyConfigError(f"got mode={mode!r}; want one of {MODES}")
        if isinstance(local_steps, bool) or not isinstance(local_steps, int) or local_steps < 1:
            raise PrivacyConfigError(f"got local_steps={local_steps!r}; want an int >= 1")
        start = torch.as_tensor(global_params).detach().to(torch.float32).cpu().clone()
        self._load(start)
        if mode == "fedsgd":
            self._private_grad_step()
            if not self.optimizer.pre_step():  # pragma: no cover - only with virtual steps
                raise RuntimeError("Opacus skipped the noise step; want one noised batch")
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params()]
            out = torch.nn.utils.parameters_to_vector(grads).detach().clone()
            self.optimizer.zero_grad(set_to_none=True)
            self.steps += 1
            return out
        for _ in range(local_steps):
            self._private_grad_step()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.steps += 1
        new = torch.nn.utils.parameters_to_vector(self._params()).detach().clone()
        return new - start

    def epsilon(self, delta: float) -> float:
        """Sample-level epsilon this client has spent so far, from Opacus's accountant."""
        delta = check_delta(delta)
        if self.steps == 0:
            return 0.0
        if self.noise_multiplier == 0.0:
            return float("inf")
        return float(self.engine.accountant.get_epsilon(delta))

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        return statement(
            epsilon=self.epsilon(delta),
            delta=delta,
            accountant=self.accountant_kind,
            mechanism=f"DP-SGD (Opacus, {self.grad_sample_mode}): per-sample clip -> Gaussian",
            sampling=f"Poisson with q={self.sample_rate:.6g} over the client's {self.n_examples} examples",
            level="sample",
            guarantee="proven",
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            steps=self.steps,
        )
