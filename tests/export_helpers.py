"""Tiny Tacotron 2 checkpoints with random weights for the export and runtime tests, whose stop
token fires mid-utterance on the test batch: random weights give a near-constant stop
probability, so the stop layer is scaled up and the threshold picked where the items of the
batch stop on different frames, away from any probability's edge."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.alignment_speed import ALIGNMENT_PROBE_TACOTRON2
from neurotts.audio import MelNorm
from neurotts.checkpoint import FORMAT, VERSION, save_checkpoint
from neurotts.config import CONFIG_DIR, to_dict
from neurotts.export.reference import infer_with_masks
from neurotts.models.tacotron2 import Tacotron2
from neurotts.runtime.acoustic import PrenetMasks
from neurotts.text.frontend import TextConfig, TextFrontend
from tests.model_configs import shipped_model_config

# Three sentences of different lengths: a batch whose items stop on different frames.
TEXTS = ["Printing, in the only sense with which we are at present concerned.",
         "It differs from most arts.",
         "And the earliest book printed with movable types."]
SEED = 7
GUARD = ["inference.max_frames_per_symbol=2.0", "inference.max_frames_offset=6"]


def encode(texts: list[str]) -> list[list[int]]:
    frontend = TextFrontend(TextConfig("characters"))
    return [frontend.encode(t)[2] for t in texts]


def _stop_probabilities(model: Tacotron2, ids: list[list[int]]) -> list[np.ndarray]:
    """Each item's stop probabilities ``(T_i * r,)`` on the test masks, never stopping."""
    seen: list[torch.Tensor] = []
    hook = model.decoder.stop_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    model.inference_cfg.stop_threshold = 2.0  # never: a probability is at most 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every item runs to its guard here
            out = infer_with_masks(model, ids, masks_for(model, len(ids)))
    finally:
        hook.remove()
    probs = torch.sigmoid(torch.cat(seen, dim=1)).numpy()  # (B, steps * r)
    return [probs[i, : int(n)] for i, n in enumerate(out.mel_lengths)]


def masks_for(model: Tacotron2, batch: int, seed: int = SEED) -> PrenetMasks:
    dims = [layer.out_features for layer in model.decoder.prenet.layers]
    return PrenetMasks(np.random.default_rng(seed), batch, dims, model.decoder.prenet.dropout)


def first_stops(probs: list[np.ndarray], threshold: float) -> list[int | None]:
    """The frame each item would stop on at ``threshold`` (None: it runs to the guard)."""
    return [int(np.argmax(p > threshold)) if (p > threshold).any() else None for p in probs]


def pick_stop(model: Tacotron2, ids: list[list[int]]) -> float:
    """Scale the stop layer (x40, bias 0, in the sign that works best) and pick the threshold
    at which most items of ``ids`` stop on their token in mid-utterance, among thresholds at
    least 1e-4 away from every probability the items produce (no frame is near the edge)."""
    # All r stop units follow the first one's row (each a little steeper), so the frames of a
    # step fire in turn rather than one unit firing from the start.
    first = model.decoder.stop_layer.weight.detach()[:1]
    weight = first * torch.linspace(1.0, 1.1, model.r).unsqueeze(1)  # (r, H_dec + D_mem)
    best = (-1, 1.0, 0.5)
    for sign in (1.0, -1.0):
        with torch.no_grad():
            model.decoder.stop_layer.weight.copy_(weight * 40 * sign)
            model.decoder.stop_layer.bias.zero_()
        probs = _stop_probabilities(model, ids)
        values = np.unique(np.concatenate(probs))
        gaps = np.diff(values)
        for k in np.flatnonzero(gaps >= 2e-4):
            threshold = float(values[k] + gaps[k] / 2)
            stops = first_stops(probs, threshold)
            good = sum(f is not None and 3 <= f <= len(p) - 3 for f, p in zip(stops, probs, strict=True))
            if good > best[0]:
                best = (good, sign, threshold)
    _, sign, threshold = best
    with torch.no_grad():
        model.decoder.stop_layer.weight.copy_(weight * 40 * sign)
    return threshold


def make_checkpoint(folder: Path, attention: str) -> Path:
    """A checkpoint of a ~0.2M-parameter Tacotron 2 (random weights) with ``attention``."""
    torch.manual_seed(0)
    audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    cfg = shipped_model_config("tacotron2", audio, [*ALIGNMENT_PROBE_TACOTRON2,
                                                    "reduction_factor=2",
                                                    f"attention.type={attention}", *GUARD])
    frontend = TextFrontend(TextConfig("characters"))
    model = Tacotron2(cfg, len(frontend.symbols)).eval()
    cfg.inference.stop_threshold = pick_stop(model, encode(TEXTS))
    rng = np.random.default_rng(1)
    norm = MelNorm(rng.normal(-5, 1, cfg.n_mels), rng.uniform(1, 2, cfg.n_mels), enabled=True)
    path = folder / f"{attention}.pt"
    save_checkpoint(path, {
        "format": FORMAT, "version": VERSION, "model_name": "tacotron2",
        "model": model.state_dict(), "ema": None,
        "config": {"model": to_dict(cfg)}, "symbols": frontend.symbols.to_list(),
        "text": {"symbol_set": "characters"}, "audio": audio, "mel_norm": norm.state(),
        "step": 1,
    })
    return path
