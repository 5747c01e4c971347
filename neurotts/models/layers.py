"""Small building blocks shared by the acoustic models: masks, conv stacks, prenet, zoneout LSTM.
(The recurrent loop's linear layer with its own backward is :mod:`neurotts.models.loop_linear`.)

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


class SpeakerEmbedding(nn.Module):
    """Speaker ids ``(B,)`` -> each speaker's learned vector projected to ``(B, out_dim)``.

    A table of ``n_speakers`` vectors of ``dim`` and a linear map to the width of the stream it is
    added to. The map starts at zero, so a model whose other weights come from a
    single-speaker checkpoint (``init_from``) starts out computing exactly what that checkpoint
    computes, and learns how far each speaker departs from it; the table still trains from the
    first step (its gradient flows once the map has moved off zero, which it does at once: the
    map's own gradient is the random table times the stream's gradient).
    Its parameters live under their own name (``speaker_embedding.*``), so no parameter of a
    single-speaker model changes name or shape.
    """

    def __init__(self, n_speakers: int, dim: int, out_dim: int):
        super().__init__()
        self.table = nn.Embedding(n_speakers, dim)
        nn.init.normal_(self.table.weight, std=dim ** -0.5)  # unit-norm vectors on average
        self.proj = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, speakers: torch.Tensor) -> torch.Tensor:
        if speakers.dim() != 1:
            raise ValueError(f"speaker ids must be (B,), got {tuple(speakers.shape)}")
        return self.proj(self.table(speakers))  # (B, out_dim)


def add_speaker(stream: torch.Tensor, embedding: SpeakerEmbedding | None,
                speakers: torch.Tensor | None, axis: int, owner: str) -> torch.Tensor:
    """``stream`` (batch first) with each item's speaker vector added, broadcast over
    ``axis`` (the time axis: 1 for ``(B, T, D)``, -1 for ``(B, D, T)``). ``embedding`` is
    None for a single-speaker ``owner`` ("model", "vocoder"), which then refuses ids; a
    multi-speaker one needs them."""
    if embedding is None:
        if speakers is not None:
            raise ValueError(f"this {owner} has no speakers, but speaker ids were given")
        return stream
    if speakers is None:
        raise ValueError(f"this {owner} has {embedding.table.num_embeddings} speakers: "
                         "pass speaker ids (B,)")
    return stream + embedding(speakers).unsqueeze(axis).to(stream.dtype)
