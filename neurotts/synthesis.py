"""Text -> waveform with trained checkpoints: the work behind ``neurotts synth`` and ``eval``.

Everything needed comes from the checkpoints themselves: the acoustic model's checkpoint carries
its config, symbol table, text settings, audio settings and mel normalisation; the vocoder's
carries its config and the audio settings it was trained on, which must match.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurotts.config import AudioConfig, to_schema
from neurotts.data.loader import MelNorm
from neurotts.models.fold_config import UNFOLDED, FoldConfig
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config
from neurotts.models.wavenet import WaveNet
from neurotts.models.wavenet_fold import generate_configured
from neurotts.text.chunking import split_text
from neurotts.text.frontend import TextConfig, TextError, TextFrontend
from neurotts.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from neurotts.training.tasks import model_config
from neurotts.vocoders import GriffinLimVocoder

GRIFFIN_LIM = "griffinlim"


class SynthesisError(ValueError):
    """A problem the user can fix (wrong checkpoint kind, mismatched settings, no text)."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``best.pt``, else its newest checkpoint)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        manager = CheckpointManager(path / "checkpoints", keep_last=1)
        if manager.best.is_file():
            return manager.best
        latest = manager.latest()
        if latest is not None:
            return latest
        raise SynthesisError(f"{path}: run folder has no checkpoints/ yet")
    raise SynthesisError(f"{path}: no such checkpoint or run folder")


def _load(path: str | Path, kind: str, device: torch.device) -> tuple[dict[str, Any], Path]:
    file = resolve_checkpoint(path)
    try:
        payload = load_checkpoint(file, map_location="cpu")
    except CheckpointError as exc:
        raise SynthesisError(str(exc)) from None
    if payload["model_name"] != kind:
        raise SynthesisError(
            f"{file}: is a {payload['model_name']} checkpoint, but a {kind} checkpoint is needed here"
        )
    return payload, file


def _weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    # Synthesis uses the exponential moving average of the weights when training kept one.
    return payload["ema"] if payload.get("ema") is not None else payload["model"]


@dataclass
class AcousticModel:
    model: Tacotron2
    cfg: Tacotron2Config
    frontend: TextFrontend
    audio: AudioConfig
    norm: MelNorm  # how model-space mels map to log-mels
    path: Path
    step: int

    @classmethod
    def load(cls, path: str | Path, device: torch.device) -> AcousticModel:
        payload, file = _load(path, "tacotron2", device)
        cfg = model_config(payload["config"]["model"])
        model = Tacotron2(cfg, n_symbols=len(payload["symbols"]))
        model.load_state_dict(_weights(payload))
        model.to(device).eval()
        text_cfg = to_schema(payload["text"], TextConfig)
        return cls(model, cfg, TextFrontend.from_symbols(text_cfg, payload["symbols"]),
                   to_schema(payload["audio"], AudioConfig), MelNorm.from_state(payload["mel_norm"]),
                   file, payload["step"])

    def to_log_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """Model-space mels -> log-mels in the store's units."""
        return self.norm.inverse(mels)


class Vocoder:
    """WaveNet from a checkpoint, or Griffin-Lim; maps log-mels to waveforms."""

    def __init__(self, spec: str | Path, audio: AudioConfig, device: torch.device,
                 temperature: float = 1.0, fold: FoldConfig | None = None):
        self.device = device
        self.temperature = temperature
        self.fold, self.sample_rate = fold or UNFOLDED, audio.sample_rate
        self.fold.check()
        self.name = GRIFFIN_LIM
        self.wavenet: WaveNet | None = None
        if str(spec) == GRIFFIN_LIM:
            self.griffin_lim = GriffinLimVocoder(audio).to(device)
            return
        payload, file = _load(spec, "wavenet", device)
        voc_audio = to_schema(payload["audio"], AudioConfig)
        if voc_audio != audio:
            diff = [k for k in vars(audio) if getattr(audio, k) != getattr(voc_audio, k)]
            raise SynthesisError(
                f"{file}: vocoder was trained on other audio settings than the acoustic model "
                f"({', '.join(f'{k}: {getattr(voc_audio, k)} vs {getattr(audio, k)}' for k in diff)})"
            )
        self.wavenet = WaveNet(model_config(payload["config"]["model"]))
        self.wavenet.load_state_dict(_weights(payload))
        self.wavenet.to(device).eval()
        self.norm = MelNorm.from_state(payload["mel_norm"])
        self.name = str(file)

    @torch.inference_mode()
    def __call__(self, log_mels: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """``log_mels`` (B, T, n_mels), ``lengths`` (B,) frames -> one waveform per item."""
        if self.wavenet is None:
            wav = self.griffin_lim(log_mels)
            hop = self.griffin_lim.hop_length
        else:
            mels = self.norm.forward(log_mels)
            wav = generate_configured(self.wavenet, mels, lengths, self.fold, self.sample_rate,
                                      temperature=self.temperature)
            hop = self.wavenet.cfg.hop_length
        return [wav[i, : int(n) * hop].float().cpu().numpy() for i, n in enumerate(lengths)]


@dataclass
class Utterance:
    """One synthesised input: its waveform and how it went."""

    text: str
    wav: np.ndarray
    pieces: list[str]
    hit_max: list[bool]
    alignments: list[np.ndarray] = field(default_factory=list)  # (T_dec, T_text) per piece
    mels: list[np.ndarray] = field(default_factory=list)  # (T, n_mels) log-mel per piece


@dataclass
class Timing:
    acoustic_s: float = 0.0
    vocoder_s: float = 0.0
    audio_s: float = 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (lower is faster)."""
        return (self.acoustic_s + self.vocoder_s) / max(self.audio_s, 1e-9)


def _encode_pieces(frontend: TextFrontend, text: str, max_chars: int | None) -> tuple[list[str], list[list[int]]]:
    normalized = frontend.normalize(text)
    pieces = split_text(normalized, max_chars) if max_chars else [" ".join(normalized.split())]
    if not pieces or not "".join(pieces).strip():
        raise SynthesisError(f"nothing to say in {text!r}")
    ids = []
    for piece in pieces:
        try:
            ids.append(frontend.symbols.to_ids(frontend.to_symbols(piece)))
        except TextError as exc:
            raise SynthesisError(f"{text!r}: {exc}") from None
    return pieces, ids


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthesize(texts: list[str], acoustic: AcousticModel, vocoder: Vocoder, device: torch.device,
               max_chars: int | None = 200, pause_s: float = 0.25,
               keep_details: bool = False) -> tuple[list[Utterance], Timing]:
    """Synthesise each text (split at sentence boundaries when ``max_chars`` is set), all pieces
    of all texts in one batch; pieces of one text are joined with ``pause_s`` of silence."""
    encoded = [_encode_pieces(acoustic.frontend, t, max_chars) for t in texts]
    flat = [ids for _, per_text in encoded for ids in per_text]
    lengths = torch.tensor([len(x) for x in flat], device=device)
    batch = torch.zeros(len(flat), int(lengths.max()), dtype=torch.long, device=device)
    for i, ids in enumerate(flat):
        batch[i, : len(ids)] = torch.tensor(ids, device=device)
    timing = Timing()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hit_max is reported per item below
        out = acoustic.model.infer(batch, lengths)
    log_mels = acoustic.to_log_mel(out.mels)
    _sync(device)
    timing.acoustic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    wavs = vocoder(log_mels, out.mel_lengths)
    _sync(device)
    timing.vocoder_s = time.perf_counter() - t0

    sr = acoustic.audio.sample_rate
    pause = np.zeros(int(pause_s * sr), dtype=np.float32)
    results, k = [], 0
    for text, (pieces, _) in zip(texts, encoded, strict=True):
        idx = range(k, k + len(pieces))
        k += len(pieces)
        joined = [part for i in idx for part in (wavs[i], pause)][:-1]
        utt = Utterance(text, np.concatenate(joined), pieces, [bool(out.hit_max[i]) for i in idx])
        if keep_details:
            for i in idx:
                n_dec = -(-int(out.mel_lengths[i]) // acoustic.cfg.reduction_factor)
                utt.alignments.append(out.alignments[i, :n_dec, : int(lengths[i])].float().cpu().numpy())
                utt.mels.append(log_mels[i, : int(out.mel_lengths[i])].float().cpu().numpy())
        results.append(utt)
    timing.audio_s = sum(u.wav.size for u in results) / sr
    return results, timing


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SynthesisError(f"--device {name!r}: not a device (use auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SynthesisError(f"--device {name}: no CUDA GPU is available")
    return device
