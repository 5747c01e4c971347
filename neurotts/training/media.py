"""Pictures and sounds for TensorBoard: alignment and mel plots, Griffin-Lim audio.

Plots are drawn with matplotlib's Agg backend into ``(H, W, 3)`` uint8 arrays. Griffin-Lim
turns a log-mel (our convention: natural log of a Slaney-scale magnitude mel, see
:class:`neurotts.audio.LogMel`) back into a waveform with the store's audio settings, which
is enough to hear whether a validation prediction is speech.
"""

from __future__ import annotations

import numpy as np
import torch

from neurotts.config import AudioConfig
from neurotts.vocoders import GriffinLimVocoder


def _figure_to_array(fig) -> np.ndarray:  # noqa: ANN001 (matplotlib Figure)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def plot_alignment(alignment: torch.Tensor) -> np.ndarray:
    """``(T_dec, T_text)`` attention weights -> image (decoder steps left to right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    im = ax.imshow(alignment.detach().float().cpu().numpy().T, aspect="auto", origin="lower",
                   interpolation="none")
    ax.set_xlabel("decoder step")
    ax.set_ylabel("text position")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    image = _figure_to_array(fig)
    plt.close(fig)
    return image


def plot_mels(predicted: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Two ``(T, n_mels)`` log-mels stacked (prediction above target) -> image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 5), dpi=80, sharex=True)
    for ax, mel, title in zip(axes, (predicted, target), ("predicted", "target"), strict=True):
        ax.imshow(mel.detach().float().cpu().numpy().T, aspect="auto", origin="lower",
                  interpolation="none")
        ax.set_title(title)
        ax.set_ylabel("mel channel")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    image = _figure_to_array(fig)
    plt.close(fig)
    return image


def griffin_lim(log_mel: torch.Tensor, audio: AudioConfig, n_iter: int) -> torch.Tensor:
    """``(T, n_mels)`` log-mel -> ``(T * hop,)`` float waveform (CPU, fp32)."""
    vocoder = GriffinLimVocoder(audio, n_iter=n_iter)
    return vocoder(log_mel.detach().float().cpu()[None])[0]
