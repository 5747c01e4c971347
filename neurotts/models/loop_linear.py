"""A linear layer for recurrent loops whose weight gradient is one GEMM after the loop.

Two custom autograd functions do it (:class:`LoopLinear` explains why and what it costs):
``_StepLinear`` is one step's product, whose backward stores the output gradient instead of
adding a rank-B outer product into the weight's gradient, and ``_LoopWeightGrad`` sits on the
loop's initial state, so its backward runs after every step's and turns the stored inputs and
output gradients into the weight's gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
