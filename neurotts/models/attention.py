"""Decoder-to-encoder attention for Tacotron 2: location-sensitive, DCA and multi-head.

All three share one interface so the decoder never knows which it runs::

    state = attention.init_state(memory, mask)        # once per utterance batch
    context, weights, state = attention(query, state)  # once per decoder step

``memory`` is the encoder output ``(B, T_text, D_mem)``; ``mask`` is ``(B, T_text)`` bool, True
at real symbols. ``weights`` is ``(B, T_text)`` and sums to 1 over valid positions (0 for a
row with no valid position). :class:`AttentionState` carries everything that does not change
from step to step, computed once in ``init_state`` so the per-step work is only what depends
on the query and the previous alignment: the memory projected for scoring, the location
convolution folded with the dense layer after it (both are linear, so one convolution does
both), and the mask as an additive score bias. Then the previous and cumulative alignments.

Precision: scores, the mask and the softmax are always computed in fp32, with autocast turned
off for that part, whatever the module or autocast dtype. Masked scores get
``torch.finfo(float32).min`` added: scores are bounded (a tanh through a linear layer, or a
scaled dot product), so a masked entry is that minimum to fp32 rounding and its softmax weight
is exactly 0; a fully masked row gives a uniform softmax instead of NaN, and the weights are
multiplied by the mask afterwards so such a row attends to nothing.
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
    filters: torch.Tensor  # location conv folded with its dense layer (C_out, C_in, K), or empty
    score_bias: torch.Tensor  # (B, 1, T_text) fp32: constant score offset + mask (0 / fp32 min)
    valid: torch.Tensor  # (B, 1, T_text) fp32: 1 at real symbols, 0 at padding
    weights: torch.Tensor  # (B, T_text) fp32, previous step's alignment
    cumulative: torch.Tensor  # (B, T_text) fp32, sum of all previous alignments


def _fp32_region(x: torch.Tensor) -> torch.autocast:
    """Context that turns autocast off so the ops inside really run in fp32."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def step_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype a matmul/conv on ``weight`` runs in here: autocast's when it is on, else the
    weight's own. Per-step weights that are not parameters (folded or concatenated ones) are
    cast to it once per utterance batch: autocast would cast them again at every step."""
    device = weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


def fold_filters(conv: nn.Conv1d, dense: nn.Linear) -> torch.Tensor:
    """``dense(conv(x).transpose(1, 2))`` as one conv: ``(C_dense, C_in, K)`` filters, in
    :func:`step_dtype`. Exact up to rounding because both maps are linear (no bias on ``conv``)."""
    folded = torch.einsum("af,fck->ack", dense.weight, conv.weight)
    return folded.to(step_dtype(conv.weight))


def mask_bias(mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` bool mask -> ``(B, 1, T)`` fp32 additive bias: ``offset`` (a scalar, e.g. the
    scorer's bias) at valid positions, ``finfo(float32).min`` at masked ones."""
    bias = torch.zeros(mask.shape, device=mask.device, dtype=torch.float32)
    bias = bias.masked_fill(~mask, mask_value(torch.float32))
    if offset is not None:
        bias = bias + offset.float()
    return bias.unsqueeze(1)


def _softmax_biased(scores: torch.Tensor, state: AttentionState) -> torch.Tensor:
    """fp32 ``(B, 1, T)`` scores (bias not yet added) -> weights ``(B, 1, T)``, exact zeros at
    padding and for rows without a valid position (see the module doc)."""
    return torch.softmax(scores + state.score_bias, dim=-1) * state.valid


def _initial_weights(batch: int, length: int, device: torch.device, one_hot: bool) -> torch.Tensor:
    """``(B, T_text)`` fp32 starting alignment: zeros, or all mass on the first symbol."""
    weights = torch.zeros(batch, length, device=device, dtype=torch.float32)
    if one_hot and length > 0:
        weights[:, 0] = 1.0
    return weights


def _start_state(keys: torch.Tensor, values: torch.Tensor, filters: torch.Tensor,
                 mask: torch.Tensor, offset: torch.Tensor | None, one_hot: bool) -> AttentionState:
    b, t = mask.shape
    start = _initial_weights(b, t, mask.device, one_hot)
    valid = mask.to(torch.float32).unsqueeze(1)  # (B, 1, T)
    return AttentionState(keys, values, filters, mask_bias(mask, offset), valid, start,
                          start.clone())


def _advance(state: AttentionState, weights: torch.Tensor) -> AttentionState:
    return state._replace(weights=weights, cumulative=state.cumulative + weights)


def _mix(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """weights ``(B, 1, T)`` fp32, values ``(B, T, D)`` -> context ``(B, D)`` in values' dtype."""
    return torch.bmm(weights.to(values.dtype), values).squeeze(1)


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
        """memory ``(B, T_text, D_mem)`` -> state with fp32 keys ``(B, A, T_text)`` (channels
        first, the layout the location conv produces) and ``(A, 2, K)`` folded filters."""
        keys = self.memory_layer(memory).transpose(1, 2).float().contiguous()  # (B, A, T)
        filters = fold_filters(self.location_conv, self.location_layer)  # (A, 2, K)
        # The scorer's bias shifts every score alike; it rides in the score bias.
        return _start_state(keys, memory, filters, mask, self.v.bias, one_hot=False)

    def forward(
        self, query: torch.Tensor, state: AttentionState
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        filters = state.filters
        history = torch.stack([state.weights, state.cumulative], dim=1).to(filters.dtype)
        location = F.conv1d(history, filters, padding=filters.shape[-1] // 2)  # (B, A, T)
        q = self.query_layer(query).unsqueeze(-1)  # (B, A, 1)
        with _fp32_region(query):
            # fp32 keys promote the sum to fp32 whatever q's and location's dtype.
            energies = torch.tanh(state.keys + q + location)  # (B, A, T)
            scores = torch.matmul(self.v.weight.float(), energies)  # (1, A) @ -> (B, 1, T)
            weights = _softmax_biased(scores, state)  # (B, 1, T)
        context = _mix(weights, state.values)
        weights = weights.squeeze(1)
        return context, weights, _advance(state, weights)


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
        """DCA starts with all mass on the first symbol; keys are unused (location only); the
        static conv and its dense layer are folded into ``(A, 1, K)`` filters."""
        b, t, _ = memory.shape
        filters = fold_filters(self.static_conv, self.static_layer)
        return _start_state(memory.new_zeros(b, t, 0), memory, filters, mask, None, one_hot=True)

    def _dynamic(self, query: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Filters predicted from the query, one set per item: ``(B, n_dynamic, T)``."""
        b, t = prev.shape
        k = self.dynamic_kernel_size
        filters = self.dynamic_filters(torch.tanh(self.dynamic_hidden(query)))  # (B, n_dyn*k)
        filters = filters.reshape(b * self.n_dynamic, 1, k)
        # One group per item runs every item's own filters in a single conv call.
        out = F.conv1d(prev.reshape(1, b, t).to(filters.dtype), filters, padding=k // 2, groups=b)
        return out.reshape(b, self.n_dynamic, t)

    def forward(
        self, query: torch.Tensor, state: AttentionState
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        prev = state.weights  # (B, T) fp32
        filters = state.filters
        static = F.conv1d(prev.unsqueeze(1).to(filters.dtype), filters, self.static_layer.bias,
                          padding=filters.shape[-1] // 2)  # (B, A, T)
        dynamic = torch.matmul(self.dynamic_layer.weight, self._dynamic(query, prev))  # (B, A, T)
        with _fp32_region(query):
            # Causal prior: position j only collects mass from j-L+1 .. j (left padding; the
            # right-hand outputs are cut off).
            length, t = self.prior.shape[-1], prev.shape[1]
            # .float(): module.to(fp16) casts buffers too, and the prior must stay exact.
            spread = F.conv1d(prev.unsqueeze(1).float(), self.prior.float(), padding=length - 1)
            # Clamp keeps log finite where the prior puts no mass (far behind the focus).
            log_prior = torch.log(spread[..., :t].clamp_min(1e-6))  # (B, 1, T)
            energies = torch.tanh(static.float() + dynamic.float())  # (B, A, T)
            scores = torch.matmul(self.v.weight.float(), energies) + log_prior  # (B, 1, T)
            weights = _softmax_biased(scores, state)
        context = _mix(weights, state.values)
        weights = weights.squeeze(1)
        return context, weights, _advance(state, weights)


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
        """fp32 keys ``(B, H, d, T_text)`` pre-scaled by 1/sqrt(d), values ``(B, H, T_text, d)``,
        ``(H, 2, K)`` folded location filters (or empty); history starts at the first symbol."""
        keys = self._split(self.key_layer(memory)).float() / math.sqrt(self.head_dim)
        keys = keys.transpose(-1, -2).contiguous()  # (B, H, d, T)
        values = self._split(self.value_layer(memory))
        filters = memory.new_zeros(0)
        if self.location_conv is not None and self.location_layer is not None:
            filters = fold_filters(self.location_conv, self.location_layer)
        return _start_state(keys, values, filters, mask, None, one_hot=True)

    def forward(
        self, query: torch.Tensor, state: AttentionState
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """query ``(B, D_q)`` -> context ``(B, D_mem)``, weights ``(B, T_text)``, new state."""
        b = query.shape[0]
        q = self.query_layer(query).reshape(b, self.n_heads, 1, self.head_dim)  # (B, H, 1, d)
        location = None
        if state.filters.numel():  # per-head score offsets from the alignment history
            filters = state.filters
            history = torch.stack([state.weights, state.cumulative], dim=1).to(filters.dtype)
            location = F.conv1d(history, filters, padding=filters.shape[-1] // 2)  # (B, H, T)
        with _fp32_region(query):
            scores = q.float() @ state.keys  # (B, H, 1, T)
            if location is not None:
                scores = scores + location.float().unsqueeze(2)
            # (B, 1, 1, T) bias and validity broadcast over the heads.
            head_weights = torch.softmax(scores + state.score_bias.unsqueeze(1), dim=-1)
            head_weights = head_weights * state.valid.unsqueeze(1)  # (B, H, 1, T)
        mixed = head_weights.to(state.values.dtype) @ state.values  # (B, H, 1, d)
        context = self.out_layer(mixed.reshape(b, self.n_heads * self.head_dim))  # (B, D_mem)
        weights = head_weights.mean(dim=1).squeeze(1)  # (B, T)
        return context, weights, _advance(state, weights)
