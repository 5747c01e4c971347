"""Figures for evaluation reports and TensorBoard: attention alignments and mel comparisons.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never
through ``pyplot``: no global figure registry to leak memory in a long training run, no
dependence on the user's interactive backend, and safe to call from a data-loader or logger
thread. Pass a figure to ``SummaryWriter.add_figure``, to :func:`save_figure` for a PNG, or to
:func:`figure_to_image` for an ``(H, W, 3)`` array.

Layouts follow :func:`neurotts.audio.log_mel`: mels are ``(n_frames, n_mels)``; alignments are
``(T_dec, T_enc)`` (decoder steps x text positions, as Tacotron 2 returns them per utterance),
already cropped to the utterance's true lengths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_alignments(
    alignments: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: tuple[float, float] = (4.0, 3.0),
) -> Figure:
    """A grid of attention maps, one panel per ``(T_dec, T_enc)`` array.

    Decoder step runs along x and encoder position along y (origin lower left), so a good
    alignment is a rising diagonal. ``titles`` (one per alignment) label the panels;
    ``panel_size`` is (width, height) in inches per panel.
    """
    if len(alignments) == 0:
        raise ValueError("plot_alignments needs at least one alignment")
    if titles is not None and len(titles) != len(alignments):
        raise ValueError(f"got {len(titles)} titles for {len(alignments)} alignments")
    for k, align in enumerate(alignments):
        if np.ndim(align) != 2:
            raise ValueError(f"alignment {k} must be 2-D (T_dec, T_enc), got {np.shape(align)}")
    ncols = max(1, min(ncols, len(alignments)))
    nrows = math.ceil(len(alignments) / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)  # (nrows, ncols) array of Axes
    for k, ax in enumerate(axes.flat):
        if k >= len(alignments):
            ax.set_axis_off()
            continue
        image = ax.imshow(np.asarray(alignments[k], dtype=np.float32).T, origin="lower",
                          aspect="auto", interpolation="none", vmin=0.0)
        ax.set_xlabel("decoder step")
        ax.set_ylabel("encoder position")
        ax.set_title(titles[k] if titles is not None else f"alignment {k}")
        fig.colorbar(image, ax=ax)
    return fig


def plot_mel_comparison(
    predicted: np.ndarray,
    reference: np.ndarray,
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 6.0),
) -> Figure:
    """Predicted (top) and reference (bottom) log-mels, each ``(n_frames, n_mels)``.

    Both panels share one colour scale (the reference's range, so an over- or under-bright
    prediction shows as such) and one time axis, so length mismatches are visible.
    """
    for name, mel in (("predicted", predicted), ("reference", reference)):
        if np.ndim(mel) != 2:
            raise ValueError(f"{name} mel must be 2-D (n_frames, n_mels), got {np.shape(mel)}")
    vmin, vmax = float(np.min(reference)), float(np.max(reference))
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, name, mel in zip(axes, ("predicted", "reference"), (predicted, reference), strict=True):
        image = ax.imshow(np.asarray(mel, dtype=np.float32).T, origin="lower", aspect="auto",
                          interpolation="none", vmin=vmin, vmax=vmax)
        ax.set_title(f"{name} ({np.shape(mel)[0]} frames)")
        ax.set_ylabel("mel channel")
        fig.colorbar(image, ax=ax, label="log magnitude")
    axes[1].set_xlabel("frame")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders are created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def figure_to_image(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an RGB ``uint8`` array ``(H, W, 3)``, e.g. for
    ``SummaryWriter.add_image(tag, image, step, dataformats="HWC")``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4)
    return np.ascontiguousarray(rgba[..., :3])
