"""``neurotts export``: a trained Tacotron 2 as a voice folder the torch-free runtime speaks.

Writes ``encoder.onnx``, ``decoder_step.onnx``, ``postnet.onnx`` (:mod:`neurotts.export.graphs`)
and ``voice.json`` (:mod:`neurotts.runtime.voice`), stamps every graph with the voice's id, then
checks the export: the graphs, run by the runtime's own loop, must give torch's mels on the same
prenet dropout masks, to ``check.tolerance``, and stop on the same frames.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.console import Console

from neurotts.audio import AudioConfig
from neurotts.checkpoint import load_trained
from neurotts.errors import UserError
from neurotts.export.config import ExportConfig
from neurotts.export.graphs import tacotron2_graphs
from neurotts.export.reference import infer_with_masks
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config
from neurotts.runtime.voice import (
    FORMAT,
    VERSION,
    VOICE_FILE,
    VOICE_ID_KEY,
    AcousticSettings,
    read_voice,
)
from neurotts.text.frontend import TextConfig
from neurotts.vocoders import GRIFFIN_LIM

# The audio settings the runtime reads (trimming and clip limits only matter to `prepare`).
RUNTIME_AUDIO = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax",
                 "log_floor")


class ExportError(UserError, ValueError):
    """A model or an export that cannot be used; the message says why."""


@dataclass
class Trained:
    """What the export reads from a checkpoint."""

    model: Tacotron2
    cfg: Tacotron2Config
    symbols: list[str]
    text: TextConfig
    audio: AudioConfig
    mel_norm: dict[str, Any]  # enabled, mean, std as lists
    file: Path
    step: int
    speakers: list[str]  # the speaker table; [] for a single-speaker model


def load_acoustic(path: str) -> Trained:
    """The one place the export reads a checkpoint (a Tacotron 2 run folder or file)."""
    trained = load_trained(path, "tacotron2", "cpu")
    norm = trained.mel_norm.state()
    return Trained(trained.model, trained.config, trained.symbols, trained.text, trained.audio,
                   {"enabled": bool(norm["enabled"]), "mean": np.asarray(norm["mean"]).tolist(),
                    "std": np.asarray(norm["std"]).tolist()},
                   trained.path, trained.step, trained.speakers)


def voice_document(trained: Trained, cfg: ExportConfig) -> dict[str, Any]:
    """``voice.json``'s content; its ``voice_id`` hashes the weights' file and the rest."""
    m = trained.cfg
    acoustic = AcousticSettings(m.attention.type, m.n_mels, m.reduction_factor,
                                list(m.decoder.prenet_dims), m.decoder.prenet_dropout,
                                m.inference.stop_threshold, m.inference.max_frames_per_symbol,
                                m.inference.max_frames_offset)
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "source": {"acoustic": str(trained.file), "step": trained.step},
        "text": {"symbol_set": trained.text.symbol_set, "language": trained.text.language,
                 "symbols": trained.symbols},
        "audio": {k: getattr(trained.audio, k) for k in RUNTIME_AUDIO},
        "mel_norm": trained.mel_norm,
        "acoustic": asdict(acoustic),
        "synthesis": {"max_chars": cfg.max_chars, "pause": cfg.pause, "batch_size": cfg.batch_size},
        "vocoder": {"type": GRIFFIN_LIM, "n_iter": cfg.griffinlim.n_iter,
                    "momentum": cfg.griffinlim.momentum},
        # The speaker table (the encoder graph's `speaker` ids); None: a single-speaker voice.
        "speakers": trained.speakers or None,
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    with trained.file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"voice_id": digest.hexdigest()[:16], **doc}


def stamp(path: Path, voice_id: str) -> None:
    """Write ``voice_id`` into the graph's metadata_props (what the runtime checks)."""
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {VOICE_ID_KEY: voice_id, "neurotts.format": FORMAT,
                                        "neurotts.version": str(VERSION)})
    onnx.save(graph, str(path))


@dataclass
class Parity:
    """The graphs against torch on the same masks, for one batch."""

    mel_max_abs: float  # over every item's valid frames, model space
    lengths: list[int]  # frames per item (the runtime's; torch's are the same or it failed)
    same_stop: bool  # each item ended on the same frame, for the same reason
    hit_max: list[bool]


def check_parity(folder: Path, model: Tacotron2, ids: list[list[int]], seed: int) -> Parity:
    """Run the voice in ``folder`` with the runtime's loop and ``model`` in torch on the same
    prenet masks (drawn from ``seed``) over the batch ``ids``."""
    from neurotts.runtime.acoustic import Acoustic  # onnxruntime: only needed from here on

    acoustic = Acoustic(read_voice(folder), threads=None)
    masks = acoustic.masks(np.random.default_rng(seed), len(ids))
    # A multi-speaker voice: the sentences spoken by its speakers in turn.
    speakers = (np.arange(len(ids), dtype=np.int64) % model.n_speakers
                if model.n_speakers else None)
    ours = acoustic.decode(ids, masks, speakers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a guard stop is compared, not told
        theirs = infer_with_masks(model, ids, masks, speakers)
    ref_lengths = theirs.mel_lengths.numpy()
    same = bool((ref_lengths == ours.lengths).all() and
                (theirs.hit_max.numpy() == ours.hit_max).all())
    worst = 0.0
    if same:
        ref = theirs.mels.numpy()
        worst = max(float(np.abs(ref[i, :n] - ours.mels[i, :n]).max(initial=0.0))
                    for i, n in enumerate(ours.lengths))
    return Parity(worst, ours.lengths.tolist(), same, ours.hit_max.tolist())


def run(cfg: ExportConfig, console: Console) -> Path:
    """Export ``cfg.acoustic`` into ``cfg.out``; returns the folder."""
    if cfg.vocoder != GRIFFIN_LIM:
        raise ExportError(f"vocoder {cfg.vocoder!r}: only griffinlim is exported; a WaveNet "
                          "vocoder stays on its C kernel (see README, Export and deploy)")
    trained = load_acoustic(cfg.acoustic)
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / VOICE_FILE).unlink(missing_ok=True)  # written last: a half-done export has none
    doc = voice_document(trained, cfg)
    for path in tacotron2_graphs(trained.model, trained.cfg, out).values():
        stamp(path, doc["voice_id"])
    (out / VOICE_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    console.print(f"wrote {out} (voice {doc['voice_id']}, {trained.cfg.attention.type} attention)")
    if cfg.check.enabled:
        from neurotts.runtime.synth import frontend_of, sentences

        voice = read_voice(out)
        _, ids = sentences(voice, frontend_of(voice), cfg.check.text)
        parity = check_parity(out, trained.model, ids, cfg.check.seed)
        if not parity.same_stop or parity.mel_max_abs > cfg.check.tolerance:
            raise ExportError(f"{out}: the graphs do not reproduce torch (mel max abs difference "
                              f"{parity.mel_max_abs:.2e}, same stop frames: {parity.same_stop})")
        console.print(f"checked on {len(ids)} sentences: mel max abs difference "
                      f"{parity.mel_max_abs:.1e}, same stop frames")
    return out
