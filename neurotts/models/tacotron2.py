"""Tacotron 2 (Shen et al. 2018) with a choice of attention and a reduction factor.

Text ids ``(B, T_text)`` -> encoder (embedding, conv stack, BiLSTM) -> autoregressive decoder
(prenet, attention LSTM, attention, decoder LSTM, ``r`` frames + ``r`` stop logits per step)
-> conv postnet residual. Mels are ``(B, T_mel, n_mels)`` everywhere; the decoder runs
``T_dec = ceil(T_mel / r)`` steps and mels are zero-padded to ``T_dec * r`` internally.

The module computes outputs only: training steps, optimizers, devices and logging live in the
training engine. :func:`tacotron2_loss` is the matching criterion.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from neurotts.config import constrained
from neurotts.models.attention import (
    ATTENTION_TYPES,
    AttentionState,
    DynamicConvolutionAttention,
    LocationSensitiveAttention,
    MultiHeadAttention,
    step_dtype,
)
from neurotts.models.layers import (
    ConvNormStack,
    Prenet,
    SpeakerEmbedding,
    ZoneoutLSTMCell,
    add_speaker,
    sequence_mask,
)
from neurotts.models.loop_linear import LoopLinear

MEL_LOSSES = ("mse", "l1", "l1+mse")

# --------------------------------------------------------------------------------------------
# Configuration. The defaults are configs/model/tacotron2.yaml's values (a test keeps the two
# equal), so ``Tacotron2Config(n_mels=80)`` is the shipped model without any YAML; n_mels has
# none: it is the audio's.
# --------------------------------------------------------------------------------------------


@dataclass
class EncoderConfig:
    embedding_dim: int = constrained(512, ge=1)
    conv_channels: int = constrained(512, ge=1)
    conv_layers: int = constrained(3, ge=1)
    conv_kernel: int = constrained(5, ge=1)
    lstm_dim: int = constrained(512, ge=2)  # both directions together; each direction gets half
    dropout: float = constrained(0.5, ge=0, lt=1)


@dataclass
class DecoderConfig:
    prenet_dims: list[int] = field(default_factory=lambda: [256, 256])
    # Applied at inference too (paper, sec. 2.3).
    prenet_dropout: float = constrained(0.5, ge=0, lt=1)
    attention_rnn_dim: int = constrained(1024, ge=1)
    decoder_rnn_dim: int = constrained(1024, ge=1)
    zoneout: float = constrained(0.1, ge=0, lt=1)  # 0 disables


@dataclass
class LocationAttentionConfig:
    n_filters: int = constrained(32, ge=1)
    kernel_size: int = constrained(31, ge=1)


@dataclass
class DCAConfig:
    n_static_filters: int = constrained(8, ge=1)
    static_kernel_size: int = constrained(21, ge=1)
    n_dynamic_filters: int = constrained(8, ge=1)
    dynamic_kernel_size: int = constrained(21, ge=1)
    prior_length: int = constrained(11, ge=1)
    prior_alpha: float = constrained(0.1, gt=0)
    prior_beta: float = constrained(0.9, gt=0)


@dataclass
class MultiHeadConfig:
    n_heads: int = constrained(4, ge=1)
    use_location: bool = True
    n_filters: int = constrained(32, ge=1)
    kernel_size: int = constrained(31, ge=1)


@dataclass
class AttentionConfig:
    type: str = constrained("location", choices=ATTENTION_TYPES)
    dim: int = constrained(128, ge=1)
    location: LocationAttentionConfig = field(default_factory=LocationAttentionConfig)
    dca: DCAConfig = field(default_factory=DCAConfig)
    multihead: MultiHeadConfig = field(default_factory=MultiHeadConfig)


@dataclass
class PostnetConfig:
    channels: int = constrained(512, ge=1)
    layers: int = constrained(5, ge=0)
    kernel: int = constrained(5, ge=1)
    dropout: float = constrained(0.5, ge=0, lt=1)


@dataclass
class InferenceConfig:
    # sigmoid(stop logit) above this ends an utterance.
    stop_threshold: float = constrained(0.5, gt=0, lt=1)
    # Guard against attention that never reaches the end: an item may produce at most
    # max_frames_per_symbol * T_text + max_frames_offset frames.
    max_frames_per_symbol: float = constrained(12.0, gt=0)
    max_frames_offset: int = constrained(100, ge=0)


@dataclass
class Tacotron2LossConfig:
    # Distance of the predicted frames to the targets, before and after the postnet.
    mel_loss: str = constrained("mse", choices=MEL_LOSSES)
    # One positive frame per utterance: up-weight it.
    stop_pos_weight: float = constrained(10.0, gt=0)
    guided_attn_weight: float = constrained(1.0, ge=0)  # 0 disables the guide
    guided_attn_sigma: float = constrained(0.2, gt=0)  # width g of Tachibana et al.'s guide
    # weight *= decay each step; 1.0 keeps it constant.
    guided_attn_decay: float = constrained(1.0, gt=0, le=1)


@dataclass
class SpeakersConfig:
    # Width of each speaker's learned vector (used only when the store has 2+ speakers; the
    # speaker count is the store's, never set here).
    embedding_dim: int = constrained(64, ge=1)


@dataclass
class TeacherForcingConfig:
    """What the decoder is fed during training (the training task reads this; the model only
    ever sees the frames it is given). Both tricks narrow the gap between teacher-forced
    training, which always sees true frames, and synthesis, which sees its own."""

    # Gaussian noise of this std (in normalised-mel units) added to the fed frames only.
    input_noise: float = constrained(0.0, ge=0)
    # Scheduled sampling, one-pass parallel form (Duckworth et al. 2019): each fed frame is,
    # with this probability, the model's own teacher-forced prediction of it (no gradient).
    sampling_prob: float = constrained(0.0, ge=0, le=1)
    # The probability ramps linearly from 0 to sampling_prob over these steps after
    # sampling_start (0 = at once).
    sampling_start: int = constrained(0, ge=0)
    sampling_ramp: int = constrained(0, ge=0)


@dataclass
class Tacotron2Config:
    name: str = "tacotron2"
    n_mels: int = constrained(ge=1)  # the audio's: interpolated from ${audio.n_mels}
    reduction_factor: int = 2
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    postnet: PostnetConfig = field(default_factory=PostnetConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    loss: Tacotron2LossConfig = field(default_factory=Tacotron2LossConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)
    teacher_forcing: TeacherForcingConfig = field(default_factory=TeacherForcingConfig)


def decoder_lengths(mel_lengths: torch.Tensor, r: int) -> torch.Tensor:
    """``(B,)`` mel frames -> ``(B,)`` decoder steps, ``ceil(T_mel / r)``: each step emits
    ``r`` frames, the last one padded."""
    return torch.div(mel_lengths + r - 1, r, rounding_mode="floor")


def check_config(cfg: Tacotron2Config) -> None:
    """Raise ``ValueError`` naming the field when the values cannot build a Tacotron 2 (the
    model registry calls this when a config is loaded, so a bad value fails at start-up)."""
    if cfg.attention.type not in ATTENTION_TYPES:
        raise ValueError(f"model.attention.type={cfg.attention.type!r}: choose one of "
                         f"{', '.join(ATTENTION_TYPES)}")
    if cfg.reduction_factor < 1:
        raise ValueError(f"model.reduction_factor={cfg.reduction_factor}: must be at least 1")
    if cfg.encoder.lstm_dim % 2:
        raise ValueError(f"model.encoder.lstm_dim={cfg.encoder.lstm_dim}: must be even "
                         "(two directions)")


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


class Tacotron2Output(NamedTuple):
    mel_before: torch.Tensor  # (B, T_mel, n_mels) decoder output
    mel_after: torch.Tensor  # (B, T_mel, n_mels) after the postnet residual
    stop_logits: torch.Tensor  # (B, T_mel)
    alignments: torch.Tensor  # (B, T_dec, T_text), T_dec = ceil(T_mel / r)


class Tacotron2Inference(NamedTuple):
    mels: torch.Tensor  # (B, T_out, n_mels) postnet output, zero past each item's length
    mel_lengths: torch.Tensor  # (B,) frames per item
    alignments: torch.Tensor  # (B, T_dec, T_text), zero past each item's last step
    hit_max: torch.Tensor  # (B,) bool: stopped by the length guard, not by its stop token


# (memory (B, T_text, D_mem), mask (B, T_text), mels (B, T_dec * r, n_mels)) -> frames
# (B, T_dec * r, n_mels), stop logits (B, T_dec * r), alignments (B, T_dec, T_text)
DecodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                    tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class DecoderState(NamedTuple):
    attention_rnn: tuple[torch.Tensor, torch.Tensor]  # (h, c) each (B, attention_rnn_dim)
    decoder_rnn: tuple[torch.Tensor, torch.Tensor]  # (h, c) each (B, decoder_rnn_dim)
    context: torch.Tensor  # (B, D_mem) last attention context
    attention: AttentionState


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def build_attention(cfg: AttentionConfig, query_dim: int, memory_dim: int) -> nn.Module:
    """The attention module named by ``cfg.type``; all share the AttentionState interface."""
    if cfg.type == "location":
        loc = cfg.location
        return LocationSensitiveAttention(
            query_dim, memory_dim, cfg.dim, loc.n_filters, loc.kernel_size
        )
    if cfg.type == "dca":
        d = cfg.dca
        return DynamicConvolutionAttention(
            query_dim,
            cfg.dim,
            d.n_static_filters,
            d.static_kernel_size,
            d.n_dynamic_filters,
            d.dynamic_kernel_size,
            d.prior_length,
            d.prior_alpha,
            d.prior_beta,
        )
    if cfg.type == "multihead":
        m = cfg.multihead
        return MultiHeadAttention(
            query_dim, memory_dim, cfg.dim, m.n_heads, m.use_location, m.n_filters, m.kernel_size
        )
    raise ValueError(f"attention.type must be one of {ATTENTION_TYPES}, got {cfg.type!r}")


class Encoder(nn.Module):
    """ids ``(B, T_text)`` -> memory ``(B, T_text, lstm_dim)``, zero at padded positions."""

    def __init__(self, n_symbols: int, cfg: EncoderConfig):
        super().__init__()
        if cfg.lstm_dim % 2 != 0:
            raise ValueError(f"encoder.lstm_dim must be even (two directions), got {cfg.lstm_dim}")
        self.embedding = nn.Embedding(n_symbols, cfg.embedding_dim)
        self.convs = ConvNormStack(
            cfg.embedding_dim,
            cfg.conv_channels,
            cfg.conv_channels,
            cfg.conv_layers,
            cfg.conv_kernel,
            cfg.dropout,
            activation="relu",
            final_activation=True,
        )
        self.lstm = nn.LSTM(
            cfg.conv_channels, cfg.lstm_dim // 2, batch_first=True, bidirectional=True
        )

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        mask = sequence_mask(text_lengths, text.shape[1])  # (B, T_text)
        x = self.convs(self.embedding(text), mask)  # (B, T_text, C)
        # oneDNN's bf16 LSTM rejects some packed shapes (a batch of one among them); on CPU,
        # where bf16 autocast only exercises the AMP path, this layer runs in fp32.
        cpu_amp = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False) if cpu_amp else contextlib.nullcontext():
            # Packing keeps the backward direction from reading padding into valid positions.
            packed = nn.utils.rnn.pack_padded_sequence(
                x.float() if cpu_amp else x, text_lengths.cpu(), batch_first=True,
                enforce_sorted=False,
            )
            out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=text.shape[1])
        return out  # (B, T_text, lstm_dim)


class StepWeights(NamedTuple):
    """The decoder's LSTM weights arranged for the recurrent loop, built once per call.

    The attention LSTM's input is ``[prenet(frame), context]``: the prenet part does not depend
    on the recurrence, so it is one GEMM over all steps before the loop (``prenet_in``). What
    remains per step is one GEMM per cell over its concatenated recurrent inputs.
    """

    prenet_in: torch.Tensor  # (4 H_att, P) attention LSTM weight on the prenet output
    prenet_bias: torch.Tensor  # (4 H_att,) both attention LSTM biases
    attention_rec: torch.Tensor  # (4 H_att, D_mem + H_att) on [context, h_att]
    decoder_rec: torch.Tensor  # (4 H_dec, H_att + D_mem + H_dec) on [h_att, context, h_dec]
    decoder_bias: torch.Tensor  # (4 H_dec,) both decoder LSTM biases


class Decoder(nn.Module):
    """One autoregressive step makes ``r`` frames and ``r`` stop logits.

    Teacher forcing (:meth:`forward`) keeps only the recurrence in its per-step loop: the
    prenet and its share of the attention LSTM's input GEMM run over all steps first, zoneout
    masks are drawn once, and the frame and stop projections run once over the stacked
    decoder outputs after the loop. Free running (:meth:`step`) does the same arithmetic one
    step at a time.
    """

    def __init__(
        self, n_mels: int, r: int, memory_dim: int, cfg: DecoderConfig, attention: nn.Module
    ):
        super().__init__()
        self.n_mels = n_mels
        self.r = r
        self.prenet = Prenet(n_mels, list(cfg.prenet_dims), cfg.prenet_dropout)
        self.prenet_dim = cfg.prenet_dims[-1]
        self.attention_rnn = ZoneoutLSTMCell(
            self.prenet_dim + memory_dim, cfg.attention_rnn_dim, cfg.zoneout
        )
        self.attention = attention
        self.decoder_rnn = ZoneoutLSTMCell(
            cfg.attention_rnn_dim + memory_dim, cfg.decoder_rnn_dim, cfg.zoneout
        )
        self.frame_layer = nn.Linear(cfg.decoder_rnn_dim + memory_dim, n_mels * r)
        self.stop_layer = nn.Linear(cfg.decoder_rnn_dim + memory_dim, r)

    def init_state(self, memory: torch.Tensor, mask: torch.Tensor) -> DecoderState:
        b = memory.shape[0]

        def zeros(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            return memory.new_zeros(b, n), memory.new_zeros(b, n)

        return DecoderState(
            attention_rnn=zeros(self.attention_rnn.hidden_size),
            decoder_rnn=zeros(self.decoder_rnn.hidden_size),
            context=memory.new_zeros(b, memory.shape[2]),
            attention=self.attention.init_state(memory, mask),
        )

    def step_weights(self) -> StepWeights:
        """Split and concatenate the LSTM weights for the loop (differentiable: gradients reach
        the parameters), cast once to the dtype the per-step GEMMs run in."""
        att, dec = self.attention_rnn.cell, self.decoder_rnn.cell
        dtype = step_dtype(att.weight_hh)
        p = self.prenet_dim
        return StepWeights(
            prenet_in=att.weight_ih[:, :p],
            prenet_bias=att.bias_ih + att.bias_hh,
            attention_rec=torch.cat([att.weight_ih[:, p:], att.weight_hh], dim=1).to(dtype),
            decoder_rec=torch.cat([dec.weight_ih, dec.weight_hh], dim=1).to(dtype),
            decoder_bias=(dec.bias_ih + dec.bias_hh).to(dtype),
        )

    def prenet_gates(self, prenet_out: torch.Tensor, weights: StepWeights) -> torch.Tensor:
        """``(..., P)`` prenet output -> ``(..., 4 H_att)``: its part of the attention LSTM's
        gates, biases included."""
        return F.linear(prenet_out, weights.prenet_in, weights.prenet_bias)

    def loop_linears(self, weights: StepWeights, steps: int | None = None,
                     batch: int = 0) -> tuple[LoopLinear, LoopLinear]:
        """The two cells' per-step GEMMs; with ``steps``, their weight gradients are deferred
        to one GEMM each after the loop's backward (see :class:`LoopLinear`)."""
        return (LoopLinear(weights.attention_rec, None, steps, batch),
                LoopLinear(weights.decoder_rec, weights.decoder_bias, steps, batch))

    def recur(
        self,
        gates_in: torch.Tensor,
        state: DecoderState,
        linears: tuple[LoopLinear, LoopLinear],
        step: int = 0,
        keep: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> DecoderState:
        """One step of the recurrence: ``(B, 4 H_att)`` prenet gates -> the next state.
        ``keep``: this step's zoneout masks of the two cells (None: drawn now if training)."""
        h_att, c_att = state.attention_rnn
        gates = linears[0](step, torch.cat([state.context, h_att], dim=1), gates_in)  # (B, 4 H_att)
        h_att, c_att = self.attention_rnn.update(gates, state.attention_rnn, keep[0])
        context, _, attention = self.attention(h_att, state.attention)  # (B, D_mem)
        dec_in = torch.cat([h_att, context, state.decoder_rnn[0]], dim=1)
        gates = linears[1](step, dec_in)  # (B, 4 H_dec)
        decoder_rnn = self.decoder_rnn.update(gates, state.decoder_rnn, keep[1])
        return DecoderState((h_att, c_att), decoder_rnn, context, attention)

    def project(self, dec_h: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., H_dec)`` and ``(..., D_mem)`` -> frames ``(..., r * n_mels)``, stop ``(..., r)``."""
        features = torch.cat([dec_h, context], dim=-1)  # (..., H_dec + D_mem)
        return self.frame_layer(features), self.stop_layer(features)

    def step(
        self, prenet_out: torch.Tensor, state: DecoderState, weights: StepWeights
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DecoderState]:
        """prenet_out ``(B, P)`` -> frames ``(B, r, n_mels)``, stop ``(B, r)``,
        weights ``(B, T_text)`` and the next state (free running)."""
        state = self.recur(self.prenet_gates(prenet_out, weights), state,
                           self.loop_linears(weights))
        frames, stop = self.project(state.decoder_rnn[0], state.context)
        return frames.reshape(-1, self.r, self.n_mels), stop, state.attention.weights, state

    def go_frame(self, memory: torch.Tensor) -> torch.Tensor:
        """All-zero ``(B, n_mels)`` frame fed before the first step."""
        return memory.new_zeros(memory.shape[0], self.n_mels)

    def forward(
        self, memory: torch.Tensor, mask: torch.Tensor, mels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher forcing. mels ``(B, T_dec * r, n_mels)`` (already padded to a multiple of r)
        -> frames ``(B, T_dec * r, n_mels)``, stop ``(B, T_dec * r)``, weights
        ``(B, T_dec, T_text)``."""
        b, t_dec = mels.shape[0], mels.shape[1] // self.r
        # Step i sees the last real frame of group i-1 (the go frame for i = 0); time-major,
        # so that each step's slice below is contiguous.
        previous = torch.cat(
            [self.go_frame(memory).unsqueeze(0), mels[:, self.r - 1 :: self.r][:, :-1].transpose(0, 1)]
        )  # (T_dec, B, n_mels)
        weights = self.step_weights()
        gates_in = self.prenet_gates(self.prenet(previous), weights)  # (T_dec, B, 4 H_att)
        keep_att = self.attention_rnn.draw_keep(t_dec, b, memory.device)  # (T_dec, 2, B, H)
        keep_dec = self.decoder_rnn.draw_keep(t_dec, b, memory.device)
        linears = self.loop_linears(weights, t_dec, b)
        state = self.init_state(memory, mask)
        # Each cell's initial hidden state enters its first step's GEMM: the anchor of its
        # deferred weight gradient.
        state = state._replace(
            attention_rnn=(linears[0].anchor(state.attention_rnn[0]), state.attention_rnn[1]),
            decoder_rnn=(linears[1].anchor(state.decoder_rnn[0]), state.decoder_rnn[1]),
        )
        dec_h, contexts, alignments = [], [], []
        # unbind, not gates_in[i]: indexing in a loop makes each step's backward write a
        # zero-filled copy of the whole (T_dec, B, 4 H_att) tensor; unbind's backward stacks once.
        for i, step_gates in enumerate(gates_in.unbind(0)):
            keep = (None if keep_att is None else keep_att[i],
                    None if keep_dec is None else keep_dec[i])
            state = self.recur(step_gates, state, linears, i, keep)
            dec_h.append(state.decoder_rnn[0])
            contexts.append(state.context)
            alignments.append(state.attention.weights)
        frames, stop = self.project(torch.stack(dec_h, dim=1), torch.stack(contexts, dim=1))
        return (frames.reshape(b, t_dec * self.r, self.n_mels), stop.reshape(b, t_dec * self.r),
                torch.stack(alignments, dim=1))


def _freeze(active: torch.Tensor, new: DecoderState, old: DecoderState) -> DecoderState:
    """Take ``new`` for active items and keep ``old`` for finished ones (``active`` is (B,))."""

    def pick(n: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return torch.where(active.view(-1, *([1] * (n.dim() - 1))), n, o)

    attention = new.attention._replace(
        weights=pick(new.attention.weights, old.attention.weights),
        cumulative=pick(new.attention.cumulative, old.attention.cumulative),
    )
    return DecoderState(
        attention_rnn=(
            pick(new.attention_rnn[0], old.attention_rnn[0]),
            pick(new.attention_rnn[1], old.attention_rnn[1]),
        ),
        decoder_rnn=(
            pick(new.decoder_rnn[0], old.decoder_rnn[0]),
            pick(new.decoder_rnn[1], old.decoder_rnn[1]),
        ),
        context=pick(new.context, old.context),
        attention=attention,
    )


class Tacotron2(nn.Module):
    """Tacotron 2 acoustic model; ``n_symbols`` comes from the symbol table, not the config,
    and ``n_speakers`` (0: a single-speaker model) from the store's speaker table.

    Several speakers: a learned vector per speaker, projected to the encoder's width, is added
    to every encoder output (ESPnet's ``spk_embed_integration_type: add``; Deep Voice 2 sec. 4
    likewise conditions Tacotron through speaker-dependent terms rather than a separate
    network). Why there: the attention's keys and values are the encoder outputs, so the
    alignment sees the speaker (speaking rate), and since each step's context is an average of
    encoder outputs with weights summing to one, the context carries the speaker's vector
    unchanged into the attention LSTM, the decoder LSTM and the frame projection at every
    step (pitch, timbre) -- one entry point that reaches the whole decoder. Adding, rather
    than concatenating, keeps every existing layer's shape, so a single-speaker checkpoint
    initialises all but ``speaker_embedding.*`` (``init_from``), and the projection starts at
    zero so such a run starts from exactly that checkpoint's output.
    """

    def __init__(self, cfg: Tacotron2Config, n_symbols: int, n_speakers: int = 0):
        super().__init__()
        if cfg.reduction_factor < 1:
            raise ValueError(f"reduction_factor must be >= 1, got {cfg.reduction_factor}")
        self.n_mels = cfg.n_mels
        self.r = cfg.reduction_factor
        self.inference_cfg = cfg.inference
        memory_dim = cfg.encoder.lstm_dim
        self.n_speakers = n_speakers
        self.encoder = Encoder(n_symbols, cfg.encoder)
        if n_speakers > 0:
            self.speaker_embedding = SpeakerEmbedding(n_speakers, cfg.speakers.embedding_dim,
                                                      memory_dim)
        attention = build_attention(cfg.attention, cfg.decoder.attention_rnn_dim, memory_dim)
        self.decoder = Decoder(cfg.n_mels, self.r, memory_dim, cfg.decoder, attention)
        self.postnet = ConvNormStack(
            cfg.n_mels,
            cfg.postnet.channels,
            cfg.n_mels,
            cfg.postnet.layers,
            cfg.postnet.kernel,
            cfg.postnet.dropout,
            activation="tanh",
            final_activation=False,
        )

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        mels: torch.Tensor,
        mel_lengths: torch.Tensor,
        decode: DecodeFn | None = None,
        speakers: torch.Tensor | None = None,
    ) -> Tacotron2Output:
        """Teacher-forced pass. text ``(B, T_text)`` long, mels ``(B, T_mel, n_mels)``,
        speakers ``(B,)`` long ids (multi-speaker models only).

        ``decode`` replaces ``self.decoder`` for the teacher-forced loop (same arguments and
        results), e.g. with a CUDA-graph replay of it (:mod:`neurotts.training.graphs`).
        """
        t_mel = mels.shape[1]
        t_dec = math.ceil(t_mel / self.r)
        memory = self.encode(text, text_lengths, speakers)  # (B, T_text, D_mem)
        text_mask = sequence_mask(text_lengths, text.shape[1])
        padded = F.pad(mels, (0, 0, 0, t_dec * self.r - t_mel))  # (B, T_dec * r, n_mels)
        run = self.decoder if decode is None else decode
        mel_before, stop, alignments = run(memory, text_mask, padded)
        mel_before, stop = mel_before[:, :t_mel], stop[:, :t_mel]
        mel_after = mel_before + self.postnet(mel_before, sequence_mask(mel_lengths, t_mel))
        return Tacotron2Output(mel_before, mel_after, stop, alignments)

    def encode(self, text: torch.Tensor, text_lengths: torch.Tensor,
               speakers: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder outputs ``(B, T_text, D_mem)``, with each item's speaker vector added
        (see the class docstring) when the model has speakers."""
        memory = self.encoder(text, text_lengths)  # (B, T_text, D_mem)
        return add_speaker(memory, getattr(self, "speaker_embedding", None), speakers, 1, "model")

    def max_decoder_steps(self, text_lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` per-item decoder step limit, scaled with the input length."""
        cfg = self.inference_cfg
        frames = cfg.max_frames_per_symbol * text_lengths.float() + cfg.max_frames_offset
        return torch.ceil(frames / self.r).long().clamp_min(1)

    @torch.no_grad()
    def infer(self, text: torch.Tensor, text_lengths: torch.Tensor,
              speakers: torch.Tensor | None = None) -> Tacotron2Inference:
        """Free-running synthesis; each item ends at its own stop token or its length guard.
        ``speakers`` ``(B,)`` long ids, for a multi-speaker model only.

        Items that hit the guard are named in a ``warnings.warn`` and flagged in ``hit_max``;
        their output is what was generated up to the guard. Call ``eval()`` first (BatchNorm
        running statistics); prenet dropout stays on regardless, as in the paper.
        """
        memory = self.encode(text, text_lengths, speakers)
        mask = sequence_mask(text_lengths, text.shape[1])
        frames, alignments, lengths, hit_max = self._decode_free(memory, mask, text_lengths)
        if bool(hit_max.any()):
            items = hit_max.nonzero().flatten().tolist()
            warnings.warn(
                f"Tacotron2.infer: batch items {items} reached the max decoder steps guard "
                f"({self.inference_cfg.max_frames_per_symbol} frames/symbol + "
                f"{self.inference_cfg.max_frames_offset}) without a stop token; their audio is "
                "cut at the guard and probably did not align",
                RuntimeWarning,
                stacklevel=2,
            )
        t_out = max(int(lengths.max().item()), 1)
        frames = frames[:, :t_out]
        valid = sequence_mask(lengths, t_out)  # (B, T_out)
        mels = frames + self.postnet(frames, valid)
        mels = mels * valid.unsqueeze(-1).to(mels.dtype)
        return Tacotron2Inference(mels, lengths, alignments, hit_max)

    def _decode_free(
        self, memory: torch.Tensor, mask: torch.Tensor, text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Autoregressive loop -> frames ``(B, T_dec * r, n_mels)``, alignments
        ``(B, T_dec, T_text)``, lengths ``(B,)`` long, hit_max ``(B,)`` bool."""
        b, r = memory.shape[0], self.r
        limits = self.max_decoder_steps(text_lengths).to(memory.device)  # (B,)
        lengths = torch.zeros(b, dtype=torch.long, device=memory.device)
        finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
        hit_max = torch.zeros_like(finished)
        state = self.decoder.init_state(memory, mask)
        step_weights = self.decoder.step_weights()
        previous = self.decoder.go_frame(memory)
        frames, weights = [], []
        for step in range(int(limits.max().item())):
            frame, stop, weight, new_state = self.decoder.step(
                self.decoder.prenet(previous), state, step_weights
            )
            active = ~finished  # (B,)
            keep = active.view(b, 1, 1).to(frame.dtype)
            frames.append(frame * keep)
            weights.append(weight * active.view(b, 1).to(weight.dtype))
            fired = torch.sigmoid(stop.float()) > self.inference_cfg.stop_threshold  # (B, r)
            stopped = active & fired.any(dim=1)
            # First frame whose stop fired is the last frame kept.
            first = fired.float().argmax(dim=1)
            lengths = torch.where(stopped, step * r + first + 1, lengths)
            guard = active & ~stopped & (step + 1 >= limits)
            lengths = torch.where(guard, (step + 1) * r, lengths)
            hit_max |= guard
            state = _freeze(active, new_state, state)
            finished = finished | stopped | guard
            previous = frame[:, -1]
            if bool(finished.all()):
                break
        return torch.cat(frames, dim=1), torch.stack(weights, dim=1), lengths, hit_max


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


def guided_attention_loss(
    alignments: torch.Tensor,
    text_lengths: torch.Tensor,
    dec_lengths: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """Tachibana et al. (2017) guide, normalised per decoder step.

    ``W[t, n] = 1 - exp(-(n/N - t/T)^2 / (2 sigma^2))`` penalises attention far from the
    diagonal. The penalty is summed over encoder positions and averaged over valid decoder
    steps: each step's alignment is a distribution, so this is "expected distance from the
    diagonal per step" and does not shrink as sentences get longer. Averaging over all
    (t, n) cells instead divides by T_text too and makes the guide too weak to align: on 8 short
    real clips a small Tacotron 2 was still unaligned after 400 steps with that mean at weight
    10 (0.35 of the attention mass inside the guide band), and had 0.86 inside by step 150
    with this normalisation at weight 1.

    alignments ``(B, T_dec, T_text)``; lengths ``(B,)`` -> scalar fp32.
    """
    b, t_dec, t_text = alignments.shape
    device = alignments.device
    t = torch.arange(t_dec, device=device, dtype=torch.float32).view(1, -1, 1)
    n = torch.arange(t_text, device=device, dtype=torch.float32).view(1, 1, -1)
    big_t = dec_lengths.float().clamp_min(1).view(b, 1, 1)
    big_n = text_lengths.float().clamp_min(1).view(b, 1, 1)
    guide = 1.0 - torch.exp(-((n / big_n - t / big_t) ** 2) / (2.0 * sigma**2))  # (B, Td, Tt)
    valid = sequence_mask(dec_lengths, t_dec).unsqueeze(2) & sequence_mask(
        text_lengths, t_text
    ).unsqueeze(1)
    penalty = (alignments.float() * guide * valid.float()).sum()
    return penalty / dec_lengths.sum().clamp_min(1).float()


def tacotron2_loss(
    output: Tacotron2Output,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor,
    text_lengths: torch.Tensor,
    cfg: Tacotron2Config,
    step: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its named terms, all in fp32 (autocast is turned off in here).

    mels ``(B, T_mel, n_mels)`` targets; ``step`` drives the guide's decay. Terms: the masked
    ``mel_loss`` (MSE, L1 or their sum, each a mean over channels) before and after the
    postnet, BCE on the stop token (positive = last real frame, weighted by
    ``stop_pos_weight``), and the guided attention loss (reported unweighted).
    """
    lc = cfg.loss
    with torch.autocast(device_type=mels.device.type, enabled=False):
        t_mel = mels.shape[1]
        frame_mask = sequence_mask(mel_lengths, t_mel).float()  # (B, T_mel)
        n_valid = frame_mask.sum().clamp_min(1.0)
        target = mels.float()

        def mel_distance(pred: torch.Tensor) -> torch.Tensor:
            diff = pred.float() - target  # (B, T_mel, n_mels)
            err = diff.new_zeros(diff.shape[:2])  # (B, T_mel), mean over channels
            if "mse" in lc.mel_loss:
                err = err + (diff ** 2).mean(dim=-1)
            if "l1" in lc.mel_loss:
                err = err + diff.abs().mean(dim=-1)
            return (err * frame_mask).sum() / n_valid

        stop_target = F.one_hot((mel_lengths - 1).clamp_min(0), t_mel).float()  # (B, T_mel)
        stop_bce = F.binary_cross_entropy_with_logits(
            output.stop_logits.float(),
            stop_target,
            pos_weight=torch.tensor(lc.stop_pos_weight, device=mels.device),
            reduction="none",
        )
        terms = {
            "mel_before": mel_distance(output.mel_before),
            "mel_after": mel_distance(output.mel_after),
            "stop": (stop_bce * frame_mask).sum() / n_valid,
        }
        dec_lengths = decoder_lengths(mel_lengths, cfg.reduction_factor)
        terms["guided_attn"] = guided_attention_loss(
            output.alignments, text_lengths, dec_lengths, lc.guided_attn_sigma
        )
        guide_weight = lc.guided_attn_weight * lc.guided_attn_decay**step
        total = terms["mel_before"] + terms["mel_after"] + terms["stop"]
        total = total + guide_weight * terms["guided_attn"]
    return total, terms
