"""Decoder-to-encoder attention for Tacotron 2: location-sensitive, DCA and multi-head.

All three share one interface so the decoder never knows which it runs::

    state = attention.init_state(memory, mask)              # once per utterance batch
    context, weights, state = attention(query, state, mask)  # once per decoder step

``memory`` is the encoder output ``(B, T_text, D_mem)``; ``mask`` is ``(B, T_text)`` bool, True
at real symbols. ``weights`` is ``(B, T_text)`` and sums to 1 over valid positions (0 for a
row with no valid position). :class:`AttentionState` carries the memory once projected (so each
step does not redo a ``T_text``-long matmul) plus the previous and cumulative alignments.

Precision: scores, the mask and the softmax are always computed in fp32, with autocast turned
off for that part, whatever the module or autocast dtype. Masked scores get
``torch.finfo(float32).min``: a fully masked row then gives a uniform softmax instead of NaN,
and the weights are multiplied by the mask afterwards so such a row attends to nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from neurotts.models.layers import mask_value

ATTENTION_TYPES = ("location", "dca", "multihead")


class AttentionState(NamedTuple):
    """Per-utterance attention state; only ``weights`` and ``cumulative`` change per step."""

    keys: torch.Tensor  # memory projected for scoring, layout is the mechanism's own
    values: torch.Tensor  # what contexts are mixed from, (B, T_text, D) or (B, H, T_text, d)
    weights: torch.Tensor  # (B, T_text) fp32, previous step's alignment
    cumulative: torch.Tensor  # (B, T_text) fp32, sum of all previous alignments


def _fp32_region(x: torch.Tensor) -> torch.autocast:
    """Context that turns autocast off so the ops inside really run in fp32."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _linear32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in fp32 even when the module itself was cast to fp16/bf16."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """fp32 softmax over the last axis; masked entries are exactly 0, and so are empty rows.

    scores: ``(..., T)`` any float dtype; mask: broadcastable to it, True where valid.
    """
    scores = scores.float().masked_fill(~mask, mask_value(torch.float32))
    return torch.softmax(scores, dim=-1) * mask.to(torch.float32)


def _initial_weights(batch: int, length: int, device: torch.device, one_hot: bool) -> torch.Tensor:
    """``(B, T_text)`` fp32 starting alignment: zeros, or all mass on the first symbol."""
    weights = torch.zeros(batch, length, device=device, dtype=torch.float32)
    if one_hot and length > 0:
        weights[:, 0] = 1.0
    return weights


def _mix(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """weights ``(B, T)`` fp32, values ``(B, T, D)`` -> context ``(B, D)`` in values' dtype."""
    return torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)


class LocationSensitiveAttention(nn.Module):
    """Additive attention with location features (Chorowski et al. 2015; Tacotron 2).

    ``e_j = v^T tanh(W q + V h_j + U (F * [a_prev, a_cum])_j)``: the convolution over the
    previous and cumulative alignment tells the scorer where it attended before, which is
    what lets it move forward monotonically.
    """

    def __init__(
        self,
        query_dim: int,
        memory_dim: int,
        attention_dim: int,
        n_filters: int,
        kernel_size: int,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"location kernel_size must be odd, got {kernel_size}")
        self.query_layer = nn.Linear(query_dim, attention_dim, bias=False)
        self.memory_layer = nn.Linear(memory_dim, attention_dim, bias=False)
        self.location_conv = nn.Conv1d(
            2, n_filters, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.location_layer = nn.Linear(n_filters, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=True)

    def init_state(self, memory: torch.Tensor, mask: torch.Tensor) -> AttentionState:
        """memory ``(B, T_text, D_mem)`` -> state with keys ``(B, T_text, A)``."""
        del mask  # zeros are a valid start for any mask
        b, t, _ = memory.shape
        zeros = _initial_weights(b, t, memory.device, one_hot=False)
        return AttentionState(self.memory_layer(memory), memory, zeros, zeros.clone())

    def forward(
        self, query: torch.Tensor, state: AttentionState, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        dtype = self.location_conv.weight.dtype
        history = torch.stack([state.weights, state.cumulative], dim=1).to(dtype)  # (B, 2, T)
        location = self.location_layer(self.location_conv(history).transpose(1, 2))  # (B, T, A)
        q = self.query_layer(query).unsqueeze(1)  # (B, 1, A)
        with _fp32_region(query):
            hidden = torch.tanh(q.float() + state.keys.float() + location.float())  # (B, T, A)
            scores = _linear32(self.v, hidden).squeeze(-1)  # (B, T)
            weights = masked_softmax(scores, mask)
        context = _mix(weights, state.values)
        new_state = state._replace(weights=weights, cumulative=state.cumulative + weights)
        return context, weights, new_state


def beta_binomial_prior(length: int, alpha: float, beta: float) -> torch.Tensor:
    """Beta-binomial pmf over ``0 .. length-1`` shifts, ``(length,)`` fp32, sums to 1.

    ``p(k) = C(n, k) B(k + alpha, n - k + beta) / B(alpha, beta)`` with ``n = length - 1``;
    with alpha < beta the mass sits on small forward moves (DCA's "mostly stay, sometimes
    step ahead" prior).
    """
    n = length - 1
    k = torch.arange(length, dtype=torch.float64)

    def log_beta(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)

    log_choose = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    log_pmf = log_choose + log_beta(k + alpha, n - k + beta) - log_beta(alpha, beta)
    return torch.exp(log_pmf).float()


class DynamicConvolutionAttention(nn.Module):
    """Dynamic Convolution Attention (Battenberg et al. 2020, "Location-relative attention
    mechanisms for robust long-form speech synthesis").

    Purely location-relative: scores depend only on the previous alignment, never on the
    memory content, so it cannot jump to a similar-looking word elsewhere in the sentence::

        f = F * a_prev                        static filters        (B, n_static, T)
        g = G(q) * a_prev                     query-predicted filters (B, n_dynamic, T)
        p = log(P * a_prev)                   fixed causal beta-binomial prior
        e = v^T tanh(U f + T g + b) + p,      a = softmax(e)

    The prior only lets mass move forward by 0 .. prior_length-1 symbols per step.
    """

    def __init__(
        self,
        query_dim: int,
        attention_dim: int,
        n_static_filters: int,
        static_kernel_size: int,
        n_dynamic_filters: int,
        dynamic_kernel_size: int,
        prior_length: int,
        prior_alpha: float,
        prior_beta: float,
    ):
        super().__init__()
        for name, k in (("static", static_kernel_size), ("dynamic", dynamic_kernel_size)):
            if k % 2 != 1:
                raise ValueError(f"DCA {name} kernel size must be odd, got {k}")
        self.n_dynamic = n_dynamic_filters
        self.dynamic_kernel_size = dynamic_kernel_size
        self.static_conv = nn.Conv1d(
            1, n_static_filters, static_kernel_size, padding=static_kernel_size // 2, bias=False
        )
        self.static_layer = nn.Linear(n_static_filters, attention_dim, bias=True)
        self.dynamic_hidden = nn.Linear(query_dim, attention_dim, bias=True)
        self.dynamic_filters = nn.Linear(
            attention_dim, n_dynamic_filters * dynamic_kernel_size, bias=False
        )
        self.dynamic_layer = nn.Linear(n_dynamic_filters, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=False)
        # Flipped so that conv1d (a correlation) applies p(k) to the mass k symbols behind.
        prior = beta_binomial_prior(prior_length, prior_alpha, prior_beta).flip(0)
        self.register_buffer("prior", prior.view(1, 1, prior_length), persistent=False)

    def init_state(self, memory: torch.Tensor, mask: torch.Tensor) -> AttentionState:
        """DCA starts with all mass on the first symbol; keys are unused (location only)."""
        del mask
        b, t, _ = memory.shape
        start = _initial_weights(b, t, memory.device, one_hot=True)
        return AttentionState(memory.new_zeros(b, t, 0), memory, start, start.clone())

    def _dynamic(self, query: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Filters predicted from the query, one set per item: ``(B, T, n_dynamic)``."""
        b, t = prev.shape
        k = self.dynamic_kernel_size
        filters = self.dynamic_filters(torch.tanh(self.dynamic_hidden(query)))  # (B, n_dyn*k)
        filters = filters.reshape(b * self.n_dynamic, 1, k)
        # One group per item runs every item's own filters in a single conv call.
        out = F.conv1d(prev.reshape(1, b, t).to(filters.dtype), filters, padding=k // 2, groups=b)
        return out.reshape(b, self.n_dynamic, t).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, state: AttentionState, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        prev = state.weights  # (B, T) fp32
        dtype = self.static_conv.weight.dtype
        static = self.static_conv(prev.unsqueeze(1).to(dtype)).transpose(1, 2)  # (B, T, n_st)
        features = self.static_layer(static) + self.dynamic_layer(self._dynamic(query, prev))
        with _fp32_region(query):
            # Causal prior: left-pad so position j only collects mass from j-L+1 .. j.
            length = self.prior.shape[-1]
            # .float(): module.to(fp16) casts buffers too, and the prior must stay exact.
            spread = F.conv1d(F.pad(prev.unsqueeze(1).float(), (length - 1, 0)), self.prior.float())
            # Clamp keeps log finite where the prior puts no mass (far behind the focus).
            log_prior = torch.log(spread.squeeze(1).clamp_min(1e-6))  # (B, T)
            scores = _linear32(self.v, torch.tanh(features.float())).squeeze(-1) + log_prior
            weights = masked_softmax(scores, mask)
        context = _mix(weights, state.values)
        new_state = state._replace(weights=weights, cumulative=state.cumulative + weights)
        return context, weights, new_state


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product cross attention (Transformer TTS, Li et al. 2019).

    With ``use_location`` each head also gets a location bias from a convolution over the
    previous and cumulative (head-averaged) alignment, which makes content attention far more
    willing to move monotonically. The returned ``weights`` are the head average, which is
    what alignment metrics and the guided attention loss see.
    """

    def __init__(
        self,
        query_dim: int,
        memory_dim: int,
        attention_dim: int,
        n_heads: int,
        use_location: bool,
        n_filters: int,
        kernel_size: int,
    ):
        super().__init__()
        if attention_dim % n_heads != 0:
            raise ValueError(f"attention_dim {attention_dim} is not divisible by {n_heads} heads")
        if kernel_size % 2 != 1:
            raise ValueError(f"location kernel_size must be odd, got {kernel_size}")
        self.n_heads = n_heads
        self.head_dim = attention_dim // n_heads
        self.query_layer = nn.Linear(query_dim, attention_dim, bias=False)
        self.key_layer = nn.Linear(memory_dim, attention_dim, bias=False)
        self.value_layer = nn.Linear(memory_dim, attention_dim, bias=False)
        self.out_layer = nn.Linear(attention_dim, memory_dim, bias=False)
        self.location_conv: nn.Conv1d | None = None
        self.location_layer: nn.Linear | None = None
        if use_location:
            self.location_conv = nn.Conv1d(
                2, n_filters, kernel_size, padding=kernel_size // 2, bias=False
            )
            self.location_layer = nn.Linear(n_filters, n_heads, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, H*d)`` -> ``(B, H, T, d)``."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def init_state(self, memory: torch.Tensor, mask: torch.Tensor) -> AttentionState:
        """keys and values ``(B, H, T_text, d)``; location history starts at the first symbol."""
        del mask
        b, t, _ = memory.shape
        start = _initial_weights(b, t, memory.device, one_hot=True)
        keys = self._split(self.key_layer(memory))
        values = self._split(self.value_layer(memory))
        return AttentionState(keys, values, start, start.clone())

    def _location_bias(self, state: AttentionState) -> torch.Tensor:
        """``(B, H, 1, T)`` per-head score offsets from the alignment history (or 0)."""
        if self.location_conv is None or self.location_layer is None:
            return state.weights.new_zeros(())
        dtype = self.location_conv.weight.dtype
        history = torch.stack([state.weights, state.cumulative], dim=1).to(dtype)  # (B, 2, T)
        bias = self.location_layer(self.location_conv(history).transpose(1, 2))  # (B, T, H)
        return bias.permute(0, 2, 1).unsqueeze(2)

    def forward(
        self, query: torch.Tensor, state: AttentionState, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        b = query.shape[0]
        q = self.query_layer(query).reshape(b, self.n_heads, 1, self.head_dim)  # (B, H, 1, d)
        bias = self._location_bias(state)
        with _fp32_region(query):
            scores = q.float() @ state.keys.float().transpose(-1, -2)  # (B, H, 1, T)
            scores = scores / math.sqrt(self.head_dim) + bias.float()
            head_weights = masked_softmax(scores, mask[:, None, None, :])  # (B, H, 1, T)
        mixed = head_weights.to(state.values.dtype) @ state.values  # (B, H, 1, d)
        context = self.out_layer(mixed.reshape(b, self.n_heads * self.head_dim))  # (B, D_mem)
        weights = head_weights.mean(dim=1).squeeze(1)  # (B, T)
        new_state = state._replace(weights=weights, cumulative=state.cumulative + weights)
        return context, weights, new_state
