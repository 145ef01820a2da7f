"""Client-batched execution: every client's forward and backward in one pass of large kernels.

For a model whose parameterized layers are ``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` (``groups=1``,
zero padding) and ``nn.GroupNorm``, and whose other operations act on each sample on its own
(activations, pooling, flatten), the forward of ``m`` clients with parameters ``W`` ``(m, d)`` on
minibatches ``x`` ``(m, B, ...)`` runs once on the ``(m * B, ...)`` stack of samples; only the
parameterized layers differ per client:

* Linear: ``y_c = x_c W_c^T + b_c``, one batched matrix product (``baddbmm``) over clients;
* Conv2d: the patches of every output position are gathered with precomputed indices (im2col as
  one ``index_select``), then ``out_c[(s, p), o] = sum_k U_c[(s, p), k] W_c[o, k] + b_c[o]`` is one
  ``baddbmm`` over clients; a Conv1d runs as a Conv2d of height 1;
* GroupNorm (Wu and He, ECCV 2018) normalizes each sample on its own, so only its affine map
  ``gamma_c * y + beta_c`` differs per client.

Reverse-mode autograd through this forward gives every client's gradient at once: clients share no
parameters, so the gradient of ``sum_c L_c`` with respect to ``W_c`` is ``grad L_c``. That is what
``vmap(grad(loss))`` over clients computes, with fewer, larger kernels (``benchmarks/simulation.py``
times the three: Python loop, ``vmap`` and this).

The graph is captured with ``torch.fx``. :func:`batchable` refuses a model it cannot trace or whose
parameters live outside these layers. An operation that mixes samples (a batch mean, say)
cannot be seen in the graph, so :class:`fedsec.training.ClientComputer` checks the first result
against ``vmap`` once and keeps the batched path only when they agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["BatchedForward", "batchable"]


def _pair(v: int | tuple[int, ...] | str) -> tuple[int, int] | None:
    if isinstance(v, str):
        return None
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1])) if len(v) == 2 else None


Conv = nn.Conv1d | nn.Conv2d
#: ``(kernel, stride, padding, dilation)``, each as ``(height, width)``; a Conv1d is a Conv2d of height 1.
Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


def _geometry(c: nn.Module) -> Geometry | None:
    """A convolution's geometry as a 2-D one, or ``None`` when it does not run batched (groups > 1,
    non-zero padding mode, string padding)."""
    if not isinstance(c, Conv) or c.groups != 1 or c.padding_mode != "zeros":
        return None
    if isinstance(c, nn.Conv1d):
        if isinstance(c.padding, str):
            return None
        return (1, c.kernel_size[0]), (1, c.stride[0]), (0, int(c.padding[0])), (1, c.dilation[0])
    parts = [_pair(v) for v in (c.kernel_size, c.stride, c.padding, c.dilation)]
    if any(v is None for v in parts):
        return None
    k, s, p, d = parts
    return k, s, p, d  # type: ignore[return-value]


def _trace(module: nn.Module) -> fx.GraphModule | str:
    """The traced graph, or why ``module`` cannot run client-batched."""
    try:
        graph = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types on untraceable control flow
        return f"torch.fx cannot trace it ({type(e).__name__})"
    covered: set[str] = set()
    for node in graph.graph.nodes:
        if node.op == "get_attr":
            return f"it reads the attribute {node.target!r} directly"
        if node.op != "call_module":
            continue
        sub = graph.get_submodule(str(node.target))
        names = [n for n, _ in sub.named_parameters()]
        if not names:
            continue
        if isinstance(sub, nn.Linear | nn.GroupNorm) or _geometry(sub) is not None:
            covered.update(f"{node.target}.{n}" for n in names)
        else:
            return f"its layer {node.target!r} ({type(sub).__name__}) has parameters"
    missing = [n for n, _ in module.named_parameters() if n not in covered]
    if missing:
        return f"parameters {missing[:3]} are used outside Linear/Conv/GroupNorm calls"
    return graph


def batchable(module: nn.Module) -> str | None:
    """``None`` when ``module`` can run client-batched, else the reason it cannot."""
    traced = _trace(module)
    return traced if isinstance(traced, str) else None


class BatchedForward(fx.Interpreter):
    """Runs a traced model on ``(m * B, ...)`` samples with per-client parameters.

    ``params`` maps the model's parameter names to ``(m, *shape)`` tensors (views of ``W`` are fine,
    expanded ones included); ``m`` is the number of clients.
    """

    def __init__(self, module: nn.Module) -> None:
        traced = _trace(module)
        if isinstance(traced, str):
            raise ValueError(f"model cannot run client-batched: {traced}")
        super().__init__(traced)
        self._index: dict[tuple[object, ...], tuple[torch.Tensor, int, int]] = {}
        self.params: dict[str, torch.Tensor] = {}
        self.m = 1
        #: Largest convolution output (``H_out * W_out``) seen so far.
        self.max_positions = 0

    def logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(m, B, ...)`` -> logits ``(m * B, classes)``, client ``c``'s rows at ``c*B:(c+1)*B``."""
        self.params, self.m = params, int(x.shape[0])
        try:
            out = self.run(x.reshape(-1, *x.shape[2:]))
        finally:
            self.params = {}
        return out

    def call_module(self, target: str, args: tuple, kwargs: dict) -> object:  # type: ignore[override]
        sub = self.fetch_attr(str(target))
        if isinstance(sub, nn.Linear):
            return self._linear(args[0], str(target), sub)
        if isinstance(sub, Conv):
            return self._conv(args[0], str(target), sub)
        if isinstance(sub, nn.GroupNorm):
            return self._group_norm(args[0], str(target), sub)
        return super().call_module(target, args, kwargs)

    def _bias(self, target: str, sub: nn.Module) -> torch.Tensor | None:
        return self.params[f"{target}.bias"] if getattr(sub, "bias", None) is not None else None

    def _linear(self, a: torch.Tensor, target: str, sub: nn.Linear) -> torch.Tensor:
        w = self.params[f"{target}.weight"]  # (m, out, in)
        b = self._bias(target, sub)
        lead = a.shape[:-1]
        a3 = a.reshape(self.m, -1, a.shape[-1])
        wt = w.transpose(1, 2)
        y = torch.bmm(a3, wt) if b is None else torch.baddbmm(b.unsqueeze(1), a3, wt)
        return y.reshape(*lead, w.shape[1])

    def _group_norm(self, a: torch.Tensor, target: str, sub: nn.GroupNorm) -> torch.Tensor:
        """GroupNorm normalizes each sample on its own; only the affine map is per client:
        ``y = (a - mean_g) / sqrt(var_g + eps) * gamma_c + beta_c``."""
        y = F.group_norm(a, sub.num_groups, None, None, sub.eps)
        if not sub.affine:
            return y
        view = (self.m, 1, sub.num_channels) + (1,) * (a.dim() - 2)
        gamma = self.params[f"{target}.weight"].reshape(view)
        beta = self.params[f"{target}.bias"].reshape(view)
        return torch.addcmul(beta, y.reshape(self.m, -1, *a.shape[1:]), gamma).reshape(a.shape)

    def _patch_index(
        self, c: int, h: int, w: int, geometry: Geometry, device: torch.device, nhwc: bool
    ) -> tuple[torch.Tensor, int, int]:
        """Indices into one zero-padded sample stored ``(C, Hp, Wp)`` (or ``(Hp, Wp, C)`` when ``nhwc``),
        ordered ``(position, C * kh * kw)`` like the flattened weight."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geometry
        key = (c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, str(device), nhwc)
        if key not in self._index:
            hp, wp = h + 2 * ph, w + 2 * pw
            ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
            oh = torch.arange(ho).view(ho, 1, 1, 1, 1)
            ow = torch.arange(wo).view(1, wo, 1, 1, 1)
            ch = torch.arange(c).view(1, 1, c, 1, 1)
            row = oh * sh + torch.arange(kh).view(1, 1, 1, kh, 1) * dh
            col = ow * sw + torch.arange(kw).view(1, 1, 1, 1, kw) * dw
            idx = (row * wp + col) * c + ch if nhwc else ch * hp * wp + row * wp + col
            self._index[key] = (idx.reshape(-1).to(device), ho, wo)
        return self._index[key]

    def _conv(self, a: torch.Tensor, target: str, sub: nn.Conv1d | nn.Conv2d) -> torch.Tensor:
        """A Conv1d runs as a Conv2d of height 1: ``(N, C, L)`` is viewed as ``(N, C, 1, L)``."""
        one_d = isinstance(sub, nn.Conv1d)
        if one_d:
            a = a.unsqueeze(2)
        geometry = _geometry(sub)
        assert geometry is not None
        w = self.params[f"{target}.weight"]  # (m, out, C, kh, kw) or (m, out, C, k)
        b = self._bias(target, sub)
        n, c, h, wd = a.shape
        out = int(w.shape[1])
        # Outputs of this method are NHWC in memory (a permuted view); read such inputs in place.
        nhwc = c > 1 and a.permute(0, 2, 3, 1).is_contiguous()
        idx, ho, wo = self._patch_index(c, h, wd, geometry, a.device, nhwc)
        self.max_positions = max(self.max_positions, ho * wo)
        ph, pw = geometry[2]
        src = a.permute(0, 2, 3, 1) if nhwc else a
        if ph or pw:
            src = F.pad(src, (0, 0, pw, pw, ph, ph) if nhwc else (pw, pw, ph, ph))
        k = c * geometry[0][0] * geometry[0][1]
        patches = src.reshape(n, -1).index_select(1, idx).view(self.m, -1, k)  # (m, B * L, k)
        wt = w.reshape(self.m, out, k).transpose(1, 2)
        y = torch.bmm(patches, wt) if b is None else torch.baddbmm(b.unsqueeze(1), patches, wt)
        y = y.view(n, ho, wo, out).permute(0, 3, 1, 2)
        return y.squeeze(2) if one_d else y
