"""Torch's own free-running synthesis with given prenet dropout masks: the reference an export
is checked against.

:meth:`Tacotron2.infer` draws its prenet dropout from torch's generator; the exported graphs
take the masks as inputs. :class:`GivenMasks` stands in for the decoder's prenet and applies
the masks of step 0, 1, ... in the order ``infer`` calls it (once per decoder step), so
``infer`` runs unchanged with the runtime's draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from neurotts.models.layers import Prenet
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Inference

# step -> one (B, P_i) float32 mask per prenet layer (0 or 1 / (1 - p))
MaskSource = Callable[[int], list[np.ndarray]]


class GivenMasks(nn.Module):
    """A prenet whose dropout masks come from ``masks(step)``, step counting calls."""

    def __init__(self, prenet: Prenet, masks: MaskSource):
        super().__init__()
        self.layers = prenet.layers
        self.masks = masks
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, n_mels)`` -> ``(B, P)``."""
        drawn = self.masks(self.calls)
        self.calls += 1
        for layer, mask in zip(self.layers, drawn, strict=True):
            x = torch.relu(layer(x)) * torch.from_numpy(mask).to(x.dtype)
        return x


@torch.no_grad()
def infer_with_masks(model: Tacotron2, ids: list[list[int]], masks: MaskSource,
                     speakers: np.ndarray | None = None) -> Tacotron2Inference:
    """``model.infer`` on the zero-padded batch ``ids`` with prenet masks from ``masks``
    (the model's own prenet is back in place on return); ``speakers`` ``(B,)`` ids for a
    multi-speaker model."""
    lengths = torch.tensor([len(x) for x in ids])
    batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for i, item in enumerate(ids):
        batch[i, : len(item)] = torch.tensor(item)
    prenet = model.decoder.prenet
    model.decoder.prenet = GivenMasks(prenet, masks)
    try:
        return model.infer(batch, lengths,
                           None if speakers is None else torch.from_numpy(speakers).long())
    finally:
        model.decoder.prenet = prenet
