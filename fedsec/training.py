"""Client computation for a round, vectorized across clients with ``torch.func``.

The model's parameters live in one flat float32 vector ``w`` of length ``d`` (DESIGN.md: an update is
a flat vector). :class:`FlatModel` maps between ``w`` and the ``{name: tensor}`` dict that
:func:`torch.func.functional_call` takes. :class:`ClientData` holds every client's samples in one
tensor, sorted by client, so a minibatch for all clients is one gather.

* FedSGD (McMahan et al. 2017): client ``i`` returns ``g_i = grad L_i(w; batch_i) + wd * w``.
* FedAvg: client ``i`` runs ``K`` SGD steps ``w_i <- w_i - lr * (grad L_i(w_i; batch) + wd * w_i)`` from
  ``w`` and returns the pseudo-gradient ``w - w_i``.

With ``vectorize=True`` both use ``vmap(grad(loss))`` over clients: one batched forward/backward per
step. The loop (``vectorize=False``) computes the same quantities one client at a time with autograd;
it is the fallback for models ``vmap`` cannot batch (e.g. BatchNorm in training mode).
Minibatches are drawn uniformly *with replacement* from each client's samples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class FlatModel:
    """A module viewed as a function of one flat parameter vector."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [p.numel() for _, p in module.named_parameters()]
        self.buffers = {n: b for n, b in module.named_buffers()}
        self.d = int(sum(self.sizes))

    def flat(self) -> torch.Tensor:
        """The module's current parameters as one detached flat vector."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()]).clone()

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(..., d) -> {name: (..., *shape)}`` (views, no copy)."""
        lead = w.shape[:-1]
        parts = torch.split(w, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def flatten_grads(self, grads: dict[str, torch.Tensor], lead: int) -> torch.Tensor:
        return torch.cat([grads[n].reshape(lead, -1) for n in self.names], dim=1)

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (self.unflatten(w), self.buffers), (x,))

    def loss(self, w_dict: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.module, (w_dict, self.buffers), (x,))
        return F.cross_entropy(out, y)

    def load(self, w: torch.Tensor) -> None:
        """Copy ``w`` into the module's parameters (for checkpoints and plain-module users)."""
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(
                w.to(next(self.module.parameters()).dtype), self.module.parameters()
            )


@dataclass
class ClientData:
    """Every client's samples in one tensor, sorted by client.

    Attributes:
        x, y: samples of all clients, client ``c``'s at ``starts[c] : starts[c] + counts[c]``.
        starts, counts: ``(n,)`` int64 on the device.
    """

    x: torch.Tensor
    y: torch.Tensor
    starts: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def build(
        cls, x: torch.Tensor, y: torch.Tensor, parts: Sequence[np.ndarray], device: torch.device
    ) -> ClientData:
        order = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        idx = torch.from_numpy(order)
        return cls(
            x=x[idx].to(device),
            y=y[idx].to(device),
            starts=torch.from_numpy(starts).to(device),
            counts=torch.from_numpy(counts).to(device),
        )

    @property
    def n(self) -> int:
        return int(self.counts.shape[0])

    def sample(
        self, clients: torch.Tensor, batch: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One minibatch per client in ``clients``: ``x (m, B, ...)``, ``y (m, B)``."""
        m = int(clients.shape[0])
        u = torch.rand((m, batch), generator=gen, device=gen.device)
        u = u.to(self.x.device)
        local = (u * self.counts[clients, None]).long().clamp_max_(self.counts[clients, None] - 1)
        idx = self.starts[clients, None] + local
        return self.x[idx], self.y[idx]


class ClientComputer:
    """Computes the ``(m, d)`` stack of client updates for a cohort at the global parameters ``w``."""

    def __init__(
        self,
        model: FlatModel,
        data: ClientData,
        *,
        mode: str,
        lr: float,
        batch_size: int,
        local_steps: int,
        weight_decay: float,
        vectorize: bool = True,
        chunk: int | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.mode = mode
        self.lr = lr
        self.batch_size = batch_size
        self.local_steps = local_steps
        self.weight_decay = weight_decay
        self.vectorize = vectorize
        self.chunk = chunk
        self._grad = grad(self.model.loss)

    # ---------------------------------------------------------------- gradients at given params
    def _grads_vmap(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        m = int(x.shape[0])
        params = self.model.unflatten(w)
        in_dims = (None if shared else 0, 0, 0)
        step = self.chunk or m
        outs = []
        for s in range(0, m, step):
            p = params if shared else {k: v[s : s + step] for k, v in params.items()}
            g = vmap(self._grad, in_dims=in_dims)(p, x[s : s + step], y[s : s + step])
            outs.append(self.model.flatten_grads(g, int(x[s : s + step].shape[0])))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _grads_loop(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        m = int(x.shape[0])
        out = torch.empty((m, self.model.d), dtype=w.dtype, device=w.device)
        for i in range(m):
            wi = (w if shared else w[i]).detach().requires_grad_(True)
            loss = self.model.loss(self.model.unflatten(wi), x[i], y[i])
            (gi,) = torch.autograd.grad(loss, wi)
            out[i] = gi
        return out

    def _grads(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        if self.vectorize:
            try:
                return self._grads_vmap(w, x, y, shared)
            except (RuntimeError, NotImplementedError) as e:  # vmap cannot batch this model
                warnings.warn(
                    f"vectorized clients unavailable for this model ({str(e).splitlines()[0]}); "
                    "falling back to a Python loop over clients",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.vectorize = False
        return self._grads_loop(w, x, y, shared)

    # ---------------------------------------------------------------- public
    def updates(
        self,
        w: torch.Tensor,
        clients: torch.Tensor,
        gen: torch.Generator,
    ) -> torch.Tensor:
        """The ``(m, d)`` updates of ``clients`` (int64 indices) at global parameters ``w`` ``(d,)``."""
        if self.mode == "fedsgd":
            x, y = self.data.sample(clients, self.batch_size, gen)
            g = self._grads(w, x, y, shared=True)
            if self.weight_decay:
                g = g + self.weight_decay * w
            return g
        m = int(clients.shape[0])
        wl = w.expand(m, -1).clone()
        for _ in range(self.local_steps):
            x, y = self.data.sample(clients, self.batch_size, gen)
            g = self._grads(wl, x, y, shared=False)
            if self.weight_decay:
                g = g + self.weight_decay * wl
            wl = wl - self.lr * g
        return w - wl


@torch.no_grad()
def evaluate(
    model: FlatModel, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of parameters ``w`` on ``(x, y)``."""
    correct = 0
    loss = 0.0
    n = int(x.shape[0])
    if n == 0:
        return math.nan, math.nan
    for s in range(0, n, batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        out = model.logits(w, xb)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    return correct / n, loss / n


@torch.no_grad()
def predict(model: FlatModel, w: torch.Tensor, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = [model.logits(w, x[s : s + batch_size]).argmax(1) for s in range(0, int(x.shape[0]), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, dtype=torch.long)


# ------------------------------------------------------------------------------- data-level attacks
def trigger_size(shape: Sequence[int]) -> int:
    """Side (images) or count (flat features) of the backdoor trigger for samples of ``shape``."""
    if len(shape) >= 2:
        return max(2, int(shape[-1]) // 10)
    return max(1, int(shape[-1]) // 10)


def trigger_value(x: torch.Tensor) -> float:
    """The trigger's pixel value: the brightest value of the data (at least 1.0, so it is visible)."""
    return max(float(x.max()), 1.0) if x.numel() else 1.0


def apply_trigger(x: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of samples ``x`` ``(N, ...)`` with a bright square in the bottom-right corner (images) or
    the last features set to ``value`` (flat inputs): the pixel trigger of BadNets (Gu et al. 2017)."""
    out = x.clone()
    s = trigger_size(tuple(x.shape[1:]))
    if x.ndim >= 3:
        out[..., -s:, -s:] = value
    else:
        out[:, -s:] = value
    return out


def poison(
    x: torch.Tensor,
    y: torch.Tensor,
    byz_samples: np.ndarray,
    *,
    kind: str,
    num_classes: int,
    target: int = 0,
    fraction: float = 0.5,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data-level attacks on the samples held by Byzantine clients (indices ``byz_samples``).

    ``label_flip``: ``y -> C - 1 - y``. ``backdoor``: a ``fraction`` of them get the trigger and label
    ``target``. Returns copies; other samples are unchanged.
    """
    x, y = x.clone(), y.clone()
    idx = torch.from_numpy(np.asarray(byz_samples, dtype=np.int64))
    if kind == "label_flip":
        y[idx] = num_classes - 1 - y[idx]
    elif kind == "backdoor":
        k = max(1, round(fraction * len(idx))) if len(idx) else 0
        chosen = idx[torch.from_numpy(rng.permutation(len(idx))[:k])]
        x[chosen] = apply_trigger(x[chosen], trigger_value(x))
        y[chosen] = target
    elif kind != "none":
        raise ValueError(f"data attack: got {kind!r}; want 'none', 'label_flip' or 'backdoor'")
    return x, y
