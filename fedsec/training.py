"""Client computation for a round, computed for all clients of the cohort together.

The model's parameters live in one flat float32 vector ``w`` of length ``d`` (DESIGN.md: an update is
a flat vector). :class:`FlatModel` maps between ``w`` and the ``{name: tensor}`` dict that
:func:`torch.func.functional_call` takes. :class:`ClientData` holds every client's samples in one
tensor, sorted by client, so a minibatch for all clients is one gather.

* FedSGD (McMahan et al. 2017): client ``i`` returns ``g_i = grad L_i(w; batch_i) + wd * w``.
* FedAvg: client ``i`` runs ``K`` SGD steps ``w_i <- w_i - lr * (grad L_i(w_i; batch) + wd * w_i)`` from
  ``w`` and returns the pseudo-gradient ``w - w_i``.

Engines (``engine=``), all computing the same per-client gradients:

* ``"batched"``: :mod:`fedsec.batched`, one forward/backward over all clients' samples with the
  Linear/Conv2d layers run as batched matrix products over clients;
* ``"vmap"``: ``vmap(grad(loss))`` over clients (``torch.func``);
* ``"loop"``: one client at a time with autograd, for models neither can batch (e.g. BatchNorm in
  training mode);
* ``"auto"`` (default): ``"batched"`` when the model qualifies -- :class:`fedsec.batched.BatchedForward`
  accepts it,
  every convolution's output at most ``BATCHED_MAX_POSITIONS`` positions (beyond that the gathered
  patches outweigh the saving: measured on LeNet-5 at 28x28, ``vmap`` is faster) and its first result
  equal to ``vmap``'s -- else ``"vmap"``, else the loop.

Minibatches are drawn uniformly *with replacement* from each client's samples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsec.batched import BatchedForward
from fedsec.errors import ConfigError
from fedsec.sections import ENGINES

#: Largest convolution output (``H_out * W_out``) the ``"auto"`` engine runs batched.
BATCHED_MAX_POSITIONS = 64


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
        return self.take(clients, self.draw(int(clients.shape[0]), batch, gen))

    def draw(self, m: int, batch: int, gen: torch.Generator) -> torch.Tensor:
        """The ``(m, B)`` uniforms in ``[0, 1)`` that one :meth:`sample` of ``m`` clients consumes."""
        return torch.rand((m, batch), generator=gen, device=gen.device).to(self.x.device)

    def take(self, clients: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch that uniforms ``u (m, B)`` pick: sample ``floor(u * count)`` of each client."""
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
        engine: str = "auto",
        chunk: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ConfigError(f"engine: got {engine!r}; want one of {list(ENGINES)}")
        self.model = model
        self.data = data
        self.mode = mode
        self.lr = lr
        self.batch_size = batch_size
        self.local_steps = local_steps
        self.weight_decay = weight_decay
        self.requested = engine
        #: The engine in use: ``None`` until the first call has checked and chosen it.
        self.engine: str | None = "loop" if engine == "loop" else None
        self.chunk = chunk
        self._grad = grad(self.model.loss)
        self._batched: BatchedForward | None = None
        if engine in ("auto", "batched"):
            try:
                self._batched = BatchedForward(model.module)
            except ValueError as e:
                if engine == "batched":
                    raise ConfigError(f"engine 'batched': the {e}") from e

    # ---------------------------------------------------------------- gradients at given params
    def _chunked(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        w: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        shared: bool,
    ) -> torch.Tensor:
        """``fn(w_part, x_part, y_part)`` over chunks of ``self.chunk`` clients (all at once by default)."""
        m = int(x.shape[0])
        step = self.chunk or m
        outs = [
            fn(w if shared else w[s : s + step], x[s : s + step], y[s : s + step]) for s in range(0, m, step)
        ]
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _grads_vmap(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        def part(wp: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
            g = vmap(self._grad, in_dims=(None if shared else 0, 0, 0))(self.model.unflatten(wp), xp, yp)
            return self.model.flatten_grads(g, int(xp.shape[0]))

        return self._chunked(part, w, x, y, shared)

    def _grads_batched(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        bf = self._batched
        assert bf is not None

        def part(wp: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
            m, b = int(xp.shape[0]), int(xp.shape[1])
            leaf = wp.detach().requires_grad_(True)
            wc = leaf.expand(m, -1) if shared else leaf  # grad w.r.t. the expanded view: one row a client
            with torch.enable_grad():
                logits = bf.logits(self.model.unflatten(wc), xp)
                loss = F.cross_entropy(logits, yp.reshape(-1), reduction="sum") / b
                (g,) = torch.autograd.grad(loss, wc)
            return g

        return self._chunked(part, w, x, y, shared)

    def _grads_loop(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        m = int(x.shape[0])
        out = torch.empty((m, self.model.d), dtype=w.dtype, device=w.device)
        for i in range(m):
            wi = (w if shared else w[i]).detach().requires_grad_(True)
            loss = self.model.loss(self.model.unflatten(wi), x[i], y[i])
            (gi,) = torch.autograd.grad(loss, wi)
            out[i] = gi
        return out

    def _try_batched(
        self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> torch.Tensor | None:
        """The batched gradients, or ``None`` when the model does not run batched (``"auto"``)."""
        if self._batched is None:
            return None
        try:
            return self._grads_batched(w, x, y, shared)
        except (RuntimeError, ValueError, TypeError) as e:  # the traced graph does not run batched
            if self.requested == "batched":
                raise ConfigError(f"engine 'batched': the model failed to run client-batched ({e})") from e
            return None

    def _first_grads(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        """Choose the engine on the first call and return its gradients. ``vmap`` runs first (the loop
        when vmap cannot batch the model); the batched engine is kept only where its gradients equal
        those on this very input (and, for ``"auto"``, the feature maps are small)."""
        batched = self._try_batched(w, x, y, shared)
        try:
            reference, used = self._grads_vmap(w, x, y, shared), "vmap"
        except (RuntimeError, NotImplementedError) as e:  # vmap cannot batch this model
            reference, used, why = self._grads_loop(w, x, y, shared), "loop", str(e).splitlines()[0]
        if batched is not None:
            assert self._batched is not None
            scale = float(reference.abs().max()) if reference.numel() else 0.0
            agree = torch.allclose(batched, reference, rtol=1e-4, atol=1e-5 * max(scale, 1e-12))
            if self.requested == "batched" and not agree:
                raise ConfigError(
                    "engine 'batched': its gradients differ from per-client autograd on this model; got "
                    f"max |difference| {float((batched - reference).abs().max()):.3g}; want agreement "
                    "(an operation mixes samples across the batch?)"
                )
            if agree and (
                self.requested == "batched" or self._batched.max_positions <= BATCHED_MAX_POSITIONS
            ):
                self.engine = "batched"
                return batched
        if used == "loop":
            warnings.warn(
                f"vectorized clients unavailable for this model ({why}); "
                "falling back to a Python loop over clients",
                RuntimeWarning,
                stacklevel=4,
            )
        self.engine = used
        return reference

    def _grads(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool) -> torch.Tensor:
        if self.engine is None:
            return self._first_grads(w, x, y, shared)
        if self.engine == "batched":
            return self._grads_batched(w, x, y, shared)
        if self.engine == "vmap":
            return self._grads_vmap(w, x, y, shared)
        return self._grads_loop(w, x, y, shared)

    # ---------------------------------------------------------------- public
    @property
    def draws_per_update(self) -> int:
        """How many :meth:`ClientData.draw` calls one :meth:`updates` makes: one per local step."""
        return 1 if self.mode == "fedsgd" else self.local_steps

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
