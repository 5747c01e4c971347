"""Tacotron 2 as three ONNX graphs: ``encoder``, ``decoder_step`` and ``postnet``.

The wrappers here call the trained model's own submodules, so an exported graph computes what
:meth:`Tacotron2.infer` computes; what they add is only the cut into graphs:

``encoder``       ids ``(B, T_text)`` int64, lengths ``(B,)`` int64 (and, for a multi-speaker
                  model, ``speaker`` ``(B,)`` int64 ids in voice.json's ``speakers``: the
                  speaker vector is added to the encoder outputs there, as in the model)
                  -> the per-utterance
                  tensors the decoder reads every step (``utt.*``: attention keys/values, score
                  bias, validity) and the decoder's initial state (``state.*``).
``decoder_step``  the previous frame ``(B, n_mels)``, one prenet dropout mask per prenet layer
                  (``mask.i``, ``(B, P_i)``: 0 or ``1 / (1 - p)``, as ``F.dropout`` scales), the
                  ``utt.*`` tensors and the ``state.*`` -> frames ``(B, r, n_mels)``, stop
                  logits ``(B, r)``, alignment ``(B, T_text)`` and the next ``state.*``.
``postnet``       frames ``(B, T, n_mels)``, lengths ``(B,)`` -> mels, zero past each length.

The dropout masks are inputs so the runtime owns every random draw: the same masks give the
same mels as torch (:mod:`neurotts.export.reference` runs torch with given masks).

Two pieces are re-expressed for ONNX, with the same arithmetic: the encoder's packed BiLSTM
(ONNX has no packed sequences: the backward direction runs over each item reversed within its
length instead), and DCA's per-item dynamic filters (a grouped conv whose group count is the
batch size, which ONNX cannot take as a runtime value: windows of the previous alignment times
the filters instead).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from neurotts.models.attention import AttentionState, DynamicConvolutionAttention, fold_filters
from neurotts.models.layers import add_speaker, sequence_mask
from neurotts.models.tacotron2 import DecoderState, Encoder, Tacotron2, Tacotron2Config

OPSET = 17

# Names of the decoder state, in the order the step graph takes and returns them.
STATE_NAMES = ("h_att", "c_att", "h_dec", "c_dec", "context", "weights", "cumulative")
# Per-utterance attention inputs each mechanism reads (DCA is location-only: no keys).
UTTERANCE_NAMES = {
    "location": ("keys", "values", "score_bias", "valid"),
    "dca": ("values", "score_bias", "valid"),
    "multihead": ("keys", "values", "score_bias", "valid"),
}


class ReversibleBiLSTM(nn.Module):
    """The encoder's bidirectional ``nn.LSTM`` without packed sequences: ``(B, T, C)``,
    lengths ``(B,)`` -> ``(B, T, 2 H)``, zero at padded positions (as ``pad_packed_sequence``
    leaves them). The forward direction never sees the padding after an item; the backward
    direction runs over each item reversed within its own length, so it starts at the item's
    last real position exactly as the packed LSTM does."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        hidden = lstm.hidden_size
        self.forward_lstm = nn.LSTM(lstm.input_size, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(lstm.input_size, hidden, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.forward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0"))
            getattr(self.backward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0_reverse"))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
        last = lengths.unsqueeze(1) - 1  # (B, 1)
        # Position t of the reversed item is position len-1-t of the item; padding stays put.
        order = torch.where(t <= last, last - t, t)  # (B, T), its own inverse
        index = order.unsqueeze(-1).expand(-1, -1, x.shape[2])
        ahead, _ = self.forward_lstm(x)
        back, _ = self.backward_lstm(torch.gather(x, 1, index))
        back = torch.gather(back, 1, order.unsqueeze(-1).expand(-1, -1, back.shape[2]))
        keep = (t <= last).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return torch.cat([ahead, back], dim=-1) * keep


class EncoderGraph(nn.Module):
    """ids, lengths -> ``utt.*`` then ``state.*`` (names: :data:`UTTERANCE_NAMES`,
    :data:`STATE_NAMES`)."""

    def __init__(self, model: Tacotron2, attention_type: str):
        super().__init__()
        encoder: Encoder = model.encoder
        self.embedding, self.convs = encoder.embedding, encoder.convs
        self.lstm = ReversibleBiLSTM(encoder.lstm)
        self.decoder = model.decoder
        self.utterance = UTTERANCE_NAMES[attention_type]
        self.speaker_embedding = model.speaker_embedding if model.n_speakers else None

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        mask = sequence_mask(lengths, ids.shape[1])  # (B, T_text)
        x = self.convs(self.embedding(ids), mask)  # (B, T_text, C)
        memory = self.lstm(x, lengths)  # (B, T_text, D_mem)
        memory = add_speaker(memory, self.speaker_embedding, speaker, 1, "model")  # as Tacotron2.encode
        state = self.decoder.init_state(memory, mask)
        att = state.attention
        utterance = {"keys": att.keys, "values": att.values, "score_bias": att.score_bias,
                     "valid": att.valid}
        return (*(utterance[n] for n in self.utterance), *state.attention_rnn,
                *state.decoder_rnn, state.context, att.weights, att.cumulative)


class WindowedDCA(DynamicConvolutionAttention):
    """DCA whose per-item dynamic filters run as windows of the previous alignment times the
    filters, not as a conv with one group per batch item (same sums, exportable)."""

    def _dynamic(self, query: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        b, t = prev.shape
        k = self.dynamic_kernel_size
        filters = self.dynamic_filters(torch.tanh(self.dynamic_hidden(query)))  # (B, n_dyn*k)
        filters = filters.reshape(b, self.n_dynamic, k)
        padded = F.pad(prev.to(filters.dtype), (k // 2, k // 2))  # (B, T + k - 1)
        # windows[b, j, i] = padded[b, j + i]: the k alignment values tap i of output j sees.
        offsets = torch.arange(k, device=prev.device).unsqueeze(0) + torch.arange(
            t, device=prev.device).unsqueeze(1)  # (T, k)
        windows = padded[:, offsets]  # (B, T, k)
        return torch.matmul(filters, windows.transpose(1, 2))  # (B, n_dyn, T)


def exportable_attention(model: Tacotron2, cfg: Tacotron2Config) -> nn.Module:
    """The model's attention module, or for DCA a :class:`WindowedDCA` with its weights."""
    attention = model.decoder.attention
    if cfg.attention.type != "dca":
        return attention
    d = cfg.attention.dca
    windowed = WindowedDCA(cfg.decoder.attention_rnn_dim, cfg.attention.dim, d.n_static_filters,
                           d.static_kernel_size, d.n_dynamic_filters, d.dynamic_kernel_size,
                           d.prior_length, d.prior_alpha, d.prior_beta)
    windowed.load_state_dict(attention.state_dict())
    return windowed.eval()


class DecoderStepGraph(nn.Module):
    """One free-running decoder step: previous frame, prenet masks, ``utt.*``, ``state.*`` ->
    frames ``(B, r, n_mels)``, stop logits ``(B, r)``, alignment ``(B, T_text)``, ``state.*``."""

    def __init__(self, model: Tacotron2, cfg: Tacotron2Config):
        super().__init__()
        self.decoder = copy.deepcopy(model.decoder)
        self.decoder.attention = exportable_attention(model, cfg)
        self.utterance = UTTERANCE_NAMES[cfg.attention.type]
        self.n_masks = len(self.decoder.prenet.layers)
        # Constants of the graph: the loop's arranged LSTM weights and the folded filters.
        self.weights = type(self.decoder.step_weights())(
            *(w.detach().clone() for w in self.decoder.step_weights()))
        self.filters = self._filters(self.decoder.attention).detach()

    @staticmethod
    def _filters(attention: nn.Module) -> torch.Tensor:
        """The attention's folded location filters, as its ``init_state`` makes them."""
        if isinstance(attention, DynamicConvolutionAttention):
            return fold_filters(attention.static_conv, attention.static_layer)
        if attention.location_conv is None:  # multi-head without a location term
            return torch.zeros(0)
        return fold_filters(attention.location_conv, attention.location_layer)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frame, masks = inputs[0], inputs[1: 1 + self.n_masks]
        rest = inputs[1 + self.n_masks:]
        utterance = dict(zip(self.utterance, rest[: len(self.utterance)], strict=True))
        h_att, c_att, h_dec, c_dec, context, weights, cumulative = rest[len(self.utterance):]
        x = frame
        for layer, mask in zip(self.decoder.prenet.layers, masks, strict=True):
            x = torch.relu(layer(x)) * mask  # F.dropout's arithmetic with a given mask
        values = utterance["values"]
        keys = utterance.get("keys", values.new_zeros(values.shape[0], values.shape[1], 0))
        attention = AttentionState(keys, values, self.filters, utterance["score_bias"],
                                   utterance["valid"], weights, cumulative)
        state = DecoderState((h_att, c_att), (h_dec, c_dec), context, attention)
        frames, stop, alignment, state = self.decoder.step(x, state, self.weights)
        return (frames, stop, alignment, *state.attention_rnn, *state.decoder_rnn,
                state.context, state.attention.weights, state.attention.cumulative)


class PostnetGraph(nn.Module):
    """frames ``(B, T, n_mels)``, lengths ``(B,)`` -> ``frames + postnet(frames)``, zero past
    each item's length (what :meth:`Tacotron2.infer` returns, in model space)."""

    def __init__(self, model: Tacotron2):
        super().__init__()
        self.postnet = model.postnet

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = sequence_mask(lengths, frames.shape[1])  # (B, T)
        mels = frames + self.postnet(frames, valid)
        return mels * valid.unsqueeze(-1).to(mels.dtype)


def export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
                 inputs: list[str], outputs: list[str], dynamic: dict[str, dict[int, str]]) -> None:
    """Trace ``module`` on ``args`` into ``path`` with the TorchScript-based exporter
    (``dynamo=False``; see the package docstring for why)."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python int it reads from a shape; these are the batch
        # and text sizes, which the dynamic axes below keep symbolic.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)


def tacotron2_graphs(model: Tacotron2, cfg: Tacotron2Config, folder: Path) -> dict[str, Path]:
    """Write ``encoder.onnx``, ``decoder_step.onnx`` and ``postnet.onnx`` into ``folder``."""
    model = model.float().eval()
    b, t = 2, 7  # example sizes; both axes stay dynamic
    ids = torch.ones(b, t, dtype=torch.long)
    lengths = torch.tensor([t, t - 2])
    speakers = (torch.arange(b) % model.n_speakers,) if model.n_speakers else ()  # (B,) ids
    encoder = EncoderGraph(model, cfg.attention.type)
    utterance = list(UTTERANCE_NAMES[cfg.attention.type])
    enc_out = [f"utt.{n}" for n in utterance] + [f"state.{n}" for n in STATE_NAMES]
    batch_text = {0: "batch", 1: "text"}
    enc_axes = {"ids": batch_text, "lengths": {0: "batch"}, "utt.keys": {0: "batch"},
                "utt.values": {0: "batch"}, "utt.score_bias": {0: "batch", 2: "text"},
                "utt.valid": {0: "batch", 2: "text"},
                **{f"state.{n}": {0: "batch"} for n in STATE_NAMES}}
    # Keys are (B, A, T) for location attention, (B, H, d, T) for multi-head; values
    # (B, T, D) or (B, H, T, d): the text axis is always the third from the end on keys.
    enc_axes["utt.keys"] = {0: "batch", (3 if cfg.attention.type == "multihead" else 2): "text"}
    enc_axes["utt.values"] = {0: "batch", (2 if cfg.attention.type == "multihead" else 1): "text"}
    for name in ("weights", "cumulative"):
        enc_axes[f"state.{name}"] = batch_text
    paths = {name: folder / f"{name}.onnx" for name in ("encoder", "decoder_step", "postnet")}
    enc_in = ["ids", "lengths", *(["speaker"] if speakers else [])]
    if speakers:
        enc_axes["speaker"] = {0: "batch"}
    export_graph(encoder, (ids, lengths, *speakers), paths["encoder"], enc_in, enc_out, enc_axes)

    with torch.no_grad():
        example = encoder(ids, lengths, *speakers)
    step = DecoderStepGraph(model, cfg)
    masks = [torch.ones(b, layer.out_features) for layer in step.decoder.prenet.layers]
    mask_names = [f"mask.{i}" for i in range(len(masks))]
    frame = torch.zeros(b, cfg.n_mels)
    step_in = ["frame", *mask_names, *enc_out]
    step_out = ["frames", "stop", "alignment", *(f"next.{n}" for n in STATE_NAMES)]
    step_axes = {**{n: {0: "batch"} for n in ["frame", *mask_names, "frames", "stop"]},
                 **{n: a for n, a in enc_axes.items() if n.startswith(("utt.", "state."))},
                 "alignment": batch_text,
                 **{f"next.{n}": enc_axes[f"state.{n}"] for n in STATE_NAMES}}
    export_graph(step, (frame, *masks, *example), paths["decoder_step"], step_in, step_out,
                 step_axes)

    frames = torch.zeros(b, 9, cfg.n_mels)
    export_graph(PostnetGraph(model), (frames, torch.tensor([9, 4])), paths["postnet"],
                 ["frames", "lengths"], ["mels"],
                 {"frames": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                  "mels": {0: "batch", 1: "time"}})
    return paths
