"""Small building blocks shared by the acoustic models: masks, conv stacks, prenet, zoneout LSTM.

Everything here takes explicit sizes (never a config object) and documents its tensor shapes.
Sequence tensors are batch-first; conv stacks take and return ``(B, T, C)`` and transpose
internally, so callers never juggle channel-first layouts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sequence_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool mask, True at valid positions."""
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)  # (T,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def mask_value(dtype: torch.dtype) -> float:
    """Most negative finite value of ``dtype``.

    Used to mask scores: unlike -inf it cannot turn a fully masked row into NaN (softmax of a
    row of equal finite values is uniform), and unlike a literal such as -1e9 it never overflows
    to -inf in fp16.
    """
    return torch.finfo(dtype).min


class ConvNormStack(nn.Module):
    """``n_layers`` x (Conv1d -> BatchNorm -> activation -> dropout) over ``(B, T, C)``.

    The Tacotron 2 encoder uses it with ReLU, the postnet with tanh on all but the last layer.
    Padded positions are zeroed before every convolution so a padded item sees exactly what it
    would see alone (the conv's own zero padding at the true sequence end).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        n_layers: int,
        kernel_size: int,
        dropout: float,
        activation: str,
        final_activation: bool,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep lengths, got {kernel_size}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        self.activation = activation
        self.final_activation = final_activation
        self.dropout = dropout
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(n_layers):
            c_in = in_channels if i == 0 else hidden_channels
            c_out = out_channels if i == n_layers - 1 else hidden_channels
            # bias is redundant before BatchNorm
            self.convs.append(
                nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
            )
            self.norms.append(nn.BatchNorm1d(c_out))
            gain = "linear" if (i == n_layers - 1 and not final_activation) else activation
            nn.init.xavier_uniform_(self.convs[-1].weight, gain=nn.init.calculate_gain(gain))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: ``(B, T, C_in)``, mask: ``(B, T)`` bool -> ``(B, T, C_out)``, zero where padded."""
        keep = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = x.transpose(1, 2)  # (B, C_in, T)
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h * keep))
            if i < last or self.final_activation:
                h = torch.relu(h) if self.activation == "relu" else torch.tanh(h)
            h = F.dropout(h, self.dropout, self.training)
        return (h * keep).transpose(1, 2)  # (B, T, C_out)


class Prenet(nn.Module):
    """Bottleneck MLP on the previous frame; dropout is applied in eval mode too.

    Tacotron 2 (Shen et al. 2018, sec. 2.3) keeps prenet dropout on at inference: it is the
    only source of variation in the autoregressive loop and it stops the decoder from copying
    its own previous frame.
    """

    def __init__(self, in_dim: int, sizes: list[int], dropout: float):
        super().__init__()
        dims = [in_dim, *sizes]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(..., in_dim)`` -> ``(..., sizes[-1])``."""
        for layer in self.layers:
            x = F.dropout(torch.relu(layer(x)), self.dropout, training=True)
        return x


class _StepLinear(torch.autograd.Function):
    """``base + x @ w.T + bias`` for one loop step; backward stores the output gradient in
    ``grads[step]`` and returns only the input's (and base's) gradient."""

    @staticmethod
    def forward(ctx, base, x, w, bias, inputs, grads, step):  # noqa: ANN001, ANN205
        x = x.to(w.dtype)
        inputs[step].copy_(x)
        ctx.save_for_backward(w)
        ctx.grads, ctx.step, ctx.has_base = grads, step, base is not None
        if base is None:
            return torch.addmm(bias, x, w.t()) if bias is not None else x @ w.t()
        out = torch.addmm(base.to(w.dtype), x, w.t())
        return out if bias is None else out + bias

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (w,) = ctx.saved_tensors
        ctx.grads[ctx.step].copy_(grad)
        return (grad if ctx.has_base else None), grad.to(w.dtype) @ w, None, None, None, None, None


class _LoopWeightGrad(torch.autograd.Function):
    """Identity on the loop's initial state whose backward, which autograd can only run after
    every step's backward, turns the stored inputs and output gradients into the weight's (and
    bias's) gradient with one GEMM."""

    @staticmethod
    def forward(ctx, anchor, w, bias, inputs, grads):  # noqa: ANN001, ANN205
        ctx.inputs, ctx.grads, ctx.has_bias = inputs, grads, bias is not None
        return anchor.view_as(anchor)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        g = ctx.grads.flatten(0, 1)  # (T * B, out)
        grad_w = g.t() @ ctx.inputs.flatten(0, 1)  # (out, in)
        grad_b = g.sum(0) if ctx.has_bias else None
        return grad, grad_w, grad_b, None, None


class LoopLinear:
    """``base + x_t @ weight.T + bias`` at step ``t`` of a ``steps``-long recurrent loop.

    Autograd computes a weight's gradient at each use: in a loop that is one rank-B outer
    product per step, each added into a weight-sized buffer, and at small batch those dominate
    the backward pass (measured ~35% of a CPU training step). With ``steps`` given and
    gradients on, each step's backward only stores its output gradient ``(B, out)``; the
    weight's gradient is one ``(out, T*B) @ (T*B, in)`` GEMM when the backward pass reaches
    the loop's start. For that the loop's initial state must pass through :meth:`anchor`
    (autograd runs its backward only after every step's). Costs ``T * B * (in + out)`` of
    memory, about what autograd would have saved anyway. Without ``steps`` (free running,
    no_grad) it is a plain ``addmm``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None,
                 steps: int | None = None, batch: int = 0):
        self.weight, self.bias = weight, bias
        self.deferred = steps is not None and torch.is_grad_enabled() and weight.requires_grad
        if self.deferred:
            out_dim, in_dim = weight.shape
            self.inputs = weight.new_empty(steps, batch, in_dim)  # (T, B, in)
            self.grads = weight.new_zeros(steps, batch, out_dim)  # (T, B, out)

    def anchor(self, initial: torch.Tensor) -> torch.Tensor:
        """Pass the loop's initial state through this (identity in value)."""
        if not self.deferred:
            return initial
        return _LoopWeightGrad.apply(initial, self.weight, self.bias, self.inputs, self.grads)

    def __call__(self, step: int, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """x ``(B, in)``, base ``(B, out)`` or None -> ``(B, out)`` in the weight's dtype."""
        if self.deferred:
            return _StepLinear.apply(base, x, self.weight.detach(), self.bias, self.inputs,
                                     self.grads, step)
        w, x = self.weight, x.to(self.weight.dtype)
        if base is None:
            return F.linear(x, w, self.bias)
        out = torch.addmm(base.to(w.dtype), x, w.t())
        return out if self.bias is None else out + self.bias


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM state update from pre-activation gates: ``(B, 4H)`` in nn.LSTMCell's (i, f, g, o)
    order, cell ``(B, H)`` -> new ``(h, c)`` in the gates' dtype.

    On CUDA this is the one fused kernel nn.LSTMCell itself uses (one launch forward, one
    backward, instead of nine element-wise ops each way); elsewhere the same arithmetic op by op.
    """
    c = c.to(gates.dtype)
    if gates.is_cuda:
        # The fused op adds two gate tensors; the second is all zeros here (the caller already
        # summed input and recurrent parts into one GEMM).
        h, c_new, _ = torch.ops.aten._thnn_fused_lstm_cell(gates, torch.zeros_like(gates), c)
        return h, c_new
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


class ZoneoutLSTMCell(nn.Module):
    """LSTMCell with zoneout (Krueger et al. 2017) on both hidden and cell state.

    In training each unit keeps its previous value with probability ``zoneout``; in eval the
    expectation is used (a fixed blend), so inference is deterministic given the inputs.
    ``zoneout=0`` is a plain LSTMCell.

    Besides the one-step ``forward``, a recurrent loop can compute the gates itself (one GEMM
    over concatenated inputs, see :func:`lstm_update`) and call :meth:`update` with zoneout
    masks drawn for all its steps at once by :meth:`draw_keep`.
    """

    def __init__(self, input_size: int, hidden_size: int, zoneout: float):
        super().__init__()
        if not 0.0 <= zoneout < 1.0:
            raise ValueError(f"zoneout must be in [0, 1), got {zoneout}")
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.hidden_size = hidden_size
        self.zoneout = zoneout

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: ``(B, input_size)``, state: ``(h, c)`` each ``(B, H)`` -> new ``(h, c)``."""
        h_new, c_new = self.cell(x, state)
        return self._zone(state, (h_new, c_new), None)

    def update(
        self,
        gates: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activation gates ``(B, 4H)`` (biases included) and the old ``(h, c)`` -> new
        ``(h, c)`` with zoneout; ``keep`` is one step of :meth:`draw_keep` (or None: drawn now)."""
        return self._zone(state, lstm_update(gates, state[1]), keep)

    def draw_keep(self, steps: int, batch: int, device: torch.device) -> torch.Tensor | None:
        """Zoneout masks for ``steps`` training steps, ``(steps, 2, B, H)`` bool (True: keep
        the old h / c), drawn in one call; None when there is nothing to draw."""
        if not self.training or self.zoneout == 0.0:
            return None
        shape = (steps, 2, batch, self.hidden_size)
        # One byte per unit: 0/1 uint8 draws read as bool (no float tensor of this size).
        keep = torch.empty(shape, dtype=torch.uint8, device=device).bernoulli_(self.zoneout)
        return keep.view(torch.bool)

    def _zone(
        self,
        old: tuple[torch.Tensor, torch.Tensor],
        new: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.zoneout == 0.0:
            return new
        if not self.training:
            z = self.zoneout
            return z * old[0] + (1.0 - z) * new[0], z * old[1] + (1.0 - z) * new[1]
        if keep is None:  # (2, B, H) True -> keep the old value
            keep = torch.rand(2, *new[0].shape, device=new[0].device) < self.zoneout
        return torch.where(keep[0], old[0], new[0]), torch.where(keep[1], old[1], new[1])
