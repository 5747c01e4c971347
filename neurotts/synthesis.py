"""Text -> waveform with trained checkpoints: the work behind ``neurotts synth`` and ``eval``.

Everything needed comes from the checkpoints themselves: the acoustic model's checkpoint carries
its config, symbol table, text settings, audio settings and mel normalisation; the vocoder's
carries its config and the audio settings it was trained on, which must match.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING
from rich.console import Console
from rich.text import Text

from neurotts.audio import MelNorm, save_wav
from neurotts.checkpoint import load_trained
from neurotts.config import AudioConfig, ConfigError, constrained, to_schema
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config, decoder_lengths
from neurotts.text.chunking import split_text
from neurotts.text.frontend import TextConfig, TextError, TextFrontend
from neurotts.vocoders import Vocoder, load_vocoder


@dataclass
class SynthConfig:
    """Schema of configs/synth.yaml (the CLI's arguments and options fill the first keys)."""

    sentence: str | None = None  # the text to speak, or (`text` would clash with the text group)
    input: str | None = None  # a UTF-8 file, one utterance a line
    acoustic: str = MISSING  # Tacotron 2 run folder or checkpoint
    vocoder: str = MISSING  # WaveNet run folder or checkpoint, or "griffinlim"
    output: str = MISSING  # wav file (or folder with an input file)
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    max_chars: int | None = constrained(ge=1)  # null: each input whole
    pause: float = constrained(ge=0)
    temperature: float = constrained(ge=0)
    batch_size: int = constrained(ge=1)


class SynthesisError(ValueError):
    """A problem the user can fix (wrong checkpoint kind, mismatched settings, no text)."""


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
        model, cfg, payload, file = load_trained(path, "tacotron2", device)
        text_cfg = to_schema(payload["text"], TextConfig)
        return cls(model, cfg, TextFrontend.from_symbols(text_cfg, payload["symbols"]),
                   to_schema(payload["audio"], AudioConfig), MelNorm.from_state(payload["mel_norm"]),
                   file, payload["step"])

    def to_log_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """Model-space mels -> log-mels in the store's units."""
        return self.norm.inverse(mels)


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

    def add(self, other: Timing) -> None:
        self.acoustic_s += other.acoustic_s
        self.vocoder_s += other.vocoder_s
        self.audio_s += other.audio_s


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
    dec_lengths = decoder_lengths(out.mel_lengths, acoustic.cfg.reduction_factor)
    results, k = [], 0
    for text, (pieces, _) in zip(texts, encoded, strict=True):
        idx = range(k, k + len(pieces))
        k += len(pieces)
        joined = [part for i in idx for part in (wavs[i], pause)][:-1]
        utt = Utterance(text, np.concatenate(joined), pieces, [bool(out.hit_max[i]) for i in idx])
        if keep_details:
            for i in idx:
                n_dec = int(dec_lengths[i])
                utt.alignments.append(out.alignments[i, :n_dec, : int(lengths[i])].float().cpu().numpy())
                utt.mels.append(log_mels[i, : int(out.mel_lengths[i])].float().cpu().numpy())
        results.append(utt)
    timing.audio_s = sum(u.wav.size for u in results) / sr
    return results, timing


def synthesize_batches(texts: list[str], acoustic: AcousticModel, vocoder: Vocoder,
                       device: torch.device, batch_size: int, max_chars: int | None = 200,
                       pause_s: float = 0.25, keep_details: bool = False
                       ) -> Iterator[tuple[int, list[Utterance], Timing]]:
    """:func:`synthesize` over ``texts`` ``batch_size`` at a time: yields the index of each
    batch's first text, its utterances and their timing."""
    for start in range(0, len(texts), batch_size):
        results, timing = synthesize(texts[start: start + batch_size], acoustic, vocoder, device,
                                     max_chars=max_chars, pause_s=pause_s,
                                     keep_details=keep_details)
        yield start, results, timing


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


# ------------------------------------------------------------------------------ neurotts synth


def read_inputs(cfg: SynthConfig) -> list[str]:
    """The text, or the non-blank lines of the input file."""
    if (cfg.sentence is None) == (cfg.input is None):
        raise ConfigError("give either a TEXT argument or --input FILE (one utterance a line)")
    if cfg.input is None:
        assert cfg.sentence is not None
        return [cfg.sentence]
    path = Path(cfg.input)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--input {path}: cannot read ({exc})") from None
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise ConfigError(f"--input {path}: no text in it")
    return texts


def output_paths(output: Path, n: int) -> list[Path]:
    """One path for a single input; ``stem_001.wav`` ... for an input file (or a folder)."""
    if output.suffix.lower() != ".wav":
        return [output / f"{i:03d}.wav" for i in range(1, n + 1)]
    if n == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i:03d}.wav") for i in range(1, n + 1)]


def run(cfg: SynthConfig, console: Console) -> list[Path]:
    """``neurotts synth``: speak each input, write the wav files, print a summary; returns the
    paths written."""
    texts = read_inputs(cfg)
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(cfg.acoustic, device)
    vocoder = load_vocoder(cfg.vocoder, acoustic.audio, device, temperature=cfg.temperature)
    paths = output_paths(Path(cfg.output), len(texts))
    results: list[Utterance] = []
    timing = Timing()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _, batch, t in synthesize_batches(texts, acoustic, vocoder, device, cfg.batch_size,
                                              cfg.max_chars, cfg.pause):
            results += batch
            timing.add(t)
    for w in {str(w.message) for w in caught}:
        console.print(Text.assemble(("warning:", "yellow"), f" {w}"), highlight=False)
    sr = acoustic.audio.sample_rate
    for path, res in zip(paths, results, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_wav(path, res.wav, sr)
        flag = (" (hit max decoder steps)", "red") if any(res.hit_max) else ""
        console.print(Text.assemble(f"wrote {path} ({res.wav.size / sr:.2f} s)", flag), highlight=False)
    console.print(
        f"{len(results)} file(s), {timing.audio_s:.2f} s of audio on {device}: real-time factor "
        f"{timing.rtf:.3f} (acoustic {timing.acoustic_s:.2f} s, vocoder {timing.vocoder_s:.2f} s)",
        highlight=False,
    )
    return paths
