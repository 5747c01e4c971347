"""Pictures and sounds for TensorBoard: alignment and mel images, Griffin-Lim audio.

Images are the evaluation report's figures (:mod:`neurotts.plots`, drawn on the
Agg canvas without pyplot, so a long run keeps no figure registry and never touches the
user's matplotlib backend) rendered to ``(H, W, 3)`` uint8 arrays. Griffin-Lim turns a log-mel
(natural log of a Slaney-scale magnitude mel, see :class:`neurotts.audio.LogMel`) back into a
waveform with the store's audio settings: enough to hear whether a validation prediction is
speech.
"""

from __future__ import annotations

import numpy as np
import torch

from neurotts.audio import AudioConfig
from neurotts.plots import figure_to_image, plot_alignments, plot_mel_comparison
from neurotts.vocoders import GriffinLimModule


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def plot_alignment(alignment: torch.Tensor) -> np.ndarray:
    """``(T_dec, T_text)`` attention weights -> image (decoder steps left to right)."""
    fig = plot_alignments([_numpy(alignment)], titles=["alignment"], ncols=1,
                          panel_size=(6.0, 4.0))
    return figure_to_image(fig)


def plot_mels(predicted: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Two ``(T, n_mels)`` log-mels, prediction above target, on the target's colour scale
    -> image."""
    return figure_to_image(plot_mel_comparison(_numpy(predicted), _numpy(target),
                                               figsize=(8.0, 5.0)))


def griffin_lim(log_mel: torch.Tensor, audio: AudioConfig, n_iter: int) -> torch.Tensor:
    """``(T, n_mels)`` log-mel -> ``(T * hop,)`` float waveform (CPU, fp32)."""
    vocoder = GriffinLimModule(audio, n_iter=n_iter)
    return vocoder(log_mel.detach().float().cpu()[None])[0]
