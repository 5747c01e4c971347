"""Text -> waveform with trained checkpoints: the work behind ``neurotts synth`` and ``eval``.

Everything needed comes from the checkpoints themselves: the acoustic model's checkpoint carries
its config, symbol table, text settings, audio settings and mel normalisation; the vocoder's
carries its config and the audio settings it was trained on, which must match.

Memory is bounded by ``batch_size`` pieces whatever the input: each input is split into pieces
(sentences, then clauses, of at most ``max_chars``), the pieces of all inputs go through the
models ``batch_size`` at a time in input order, and an input is joined and handed back as soon
as its last piece is done, so ``synth`` writes each file while the others are still running.
"""

from __future__ import annotations

import os
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
from neurotts.errors import IncompleteError, UserError
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config, decoder_lengths
from neurotts.text.chunking import split_text
from neurotts.text.frontend import TextConfig, TextError, TextFrontend, TextReport, dropped_message
from neurotts.vocoders import Vocoder, VocoderConfig, load_vocoder


@dataclass
class SynthConfig:
    """Schema of configs/synth.yaml (the CLI's arguments and options fill the first keys)."""

    sentence: str | None = None  # the text to speak, or (`text` would clash with the text group)
    input: str | None = None  # a UTF-8 file, one utterance a line
    acoustic: str = MISSING  # Tacotron 2 run folder or checkpoint
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)  # path (--vocoder), folding
    seed: int | None = constrained(ge=0, lt=2**63)  # random draws; null: different every run
    output: str = MISSING  # wav file (or folder with an input file)
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    max_chars: int | None = constrained(ge=1)  # null: each input whole
    pause: float = constrained(ge=0, le=60)  # seconds
    batch_size: int = constrained(ge=1)


class SynthesisError(UserError, ValueError):
    """A problem the user can fix (wrong checkpoint kind, mismatched settings, no text)."""


class SynthesisIncomplete(IncompleteError, RuntimeError):
    """Some inputs could not be synthesised or written; every other input's file was written.
    The message lists the failed lines."""


def seed_rng(seed: int | None) -> None:
    """Seed every random draw of synthesis on every device: Tacotron 2's prenet dropout (kept
    on at inference) and WaveNet's sampling noise. A fixed seed gives the same audio for the
    same inputs, options and device; ``None`` leaves the generators as they are."""
    if seed is not None:
        torch.manual_seed(seed)


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
class Encoded:
    """One input ready for the acoustic model: its pieces and their symbol ids."""

    text: str
    pieces: list[str]
    ids: list[list[int]]
    report: TextReport  # characters the symbol set cannot say, words spelled as letters


def encode(frontend: TextFrontend, text: str, max_chars: int | None) -> Encoded:
    """Split ``text`` into pieces of at most ``max_chars`` characters (``None``: one piece) and
    encode each; :class:`SynthesisError` when there is nothing to say in it."""
    normalized = frontend.normalize(text)
    pieces = split_text(normalized, max_chars) if max_chars else [" ".join(normalized.split())]
    if not pieces or not "".join(pieces).strip():
        raise SynthesisError(f"nothing to say in {text!r}")
    report = TextReport()
    try:
        ids = [frontend.symbols.to_ids(frontend.to_symbols(piece, report)) for piece in pieces]
    except TextError as exc:
        raise SynthesisError(str(exc)) from None
    return Encoded(text, pieces, ids, report)


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


@dataclass
class Piece:
    """What one piece of an input became."""

    wav: np.ndarray  # (samples,) float32
    hit_max: bool
    alignment: np.ndarray | None  # (T_dec, T_text), with keep_details
    mel: np.ndarray | None  # (T, n_mels) log-mel, with keep_details


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthesize_pieces(ids: list[list[int]], acoustic: AcousticModel, vocoder: Vocoder,
                      device: torch.device, keep_details: bool = False
                      ) -> tuple[list[Piece], Timing]:
    """One batch through both models: all of ``ids`` at once (the caller bounds its size)."""
    lengths = torch.tensor([len(x) for x in ids], device=device)
    batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long, device=device)
    for i, piece in enumerate(ids):
        batch[i, : len(piece)] = torch.tensor(piece, device=device)
    timing = Timing()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hit_max is reported per item below
        out = acoustic.model.infer(batch, lengths)
    log_mels = acoustic.to_log_mel(out.mels)  # (B, T, n_mels)
    _sync(device)
    timing.acoustic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    wavs = vocoder(log_mels, out.mel_lengths)
    _sync(device)
    timing.vocoder_s = time.perf_counter() - t0
    dec_lengths = decoder_lengths(out.mel_lengths, acoustic.cfg.reduction_factor)
    pieces = []
    for i, wav in enumerate(wavs):
        align = mel = None
        if keep_details:
            align = out.alignments[i, : int(dec_lengths[i]), : int(lengths[i])].float().cpu().numpy()
            mel = log_mels[i, : int(out.mel_lengths[i])].float().cpu().numpy()
        pieces.append(Piece(wav, bool(out.hit_max[i]), align, mel))
    timing.audio_s = sum(p.wav.size for p in pieces) / acoustic.audio.sample_rate
    return pieces, timing


def _join(enc: Encoded, pieces: list[Piece], pause: np.ndarray) -> Utterance:
    """The pieces of one input with ``pause`` (silence) between them."""
    joined = [part for p in pieces for part in (p.wav, pause)][:-1]
    utt = Utterance(enc.text, np.concatenate(joined), enc.pieces, [p.hit_max for p in pieces])
    utt.alignments = [p.alignment for p in pieces if p.alignment is not None]
    utt.mels = [p.mel for p in pieces if p.mel is not None]
    return utt


def synthesize(inputs: list[Encoded], acoustic: AcousticModel, vocoder: Vocoder,
               device: torch.device, batch_size: int, pause_s: float = 0.25,
               keep_details: bool = False) -> Iterator[tuple[list[tuple[int, Utterance]], Timing]]:
    """Synthesise ``inputs``: all their pieces, in order, ``batch_size`` at a time, so the
    models never hold more than ``batch_size`` pieces however long an input is. After each
    batch, yields the inputs it completed, as (index into ``inputs``, utterance with its pieces
    joined by ``pause_s`` of silence), and the batch's timing (pauses count as audio)."""
    order = [(i, j) for i, enc in enumerate(inputs) for j in range(len(enc.ids))]
    sr = acoustic.audio.sample_rate
    pause = np.zeros(int(pause_s * sr), dtype=np.float32)
    pending: dict[int, list[Piece]] = {}  # done pieces of inputs not yet complete
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        pieces, timing = synthesize_pieces([inputs[i].ids[j] for i, j in chunk], acoustic,
                                           vocoder, device, keep_details)
        completed = []
        for (i, j), piece in zip(chunk, pieces, strict=True):
            pending.setdefault(i, []).append(piece)
            if j == len(inputs[i].ids) - 1:
                completed.append((i, _join(inputs[i], pending.pop(i), pause)))
                timing.audio_s += j * pause.size / sr
        yield completed, timing


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


def print_problem(console: Console, kind: str, message: str) -> None:
    """``error: MESSAGE`` or ``warning: MESSAGE``, the message shown literally (no markup)."""
    style = "bold red" if kind == "error" else "yellow"
    console.print(Text.assemble((f"{kind}:", style), " ", message), highlight=False,
                  soft_wrap=True)


# ------------------------------------------------------------------------------ neurotts synth


def read_inputs(cfg: SynthConfig) -> list[tuple[int, str]]:
    """(line number, text) per input: the TEXT argument as line 1, or each non-blank line of
    the input file (blank lines are skipped but counted, so numbers are line numbers)."""
    if (cfg.sentence is None) == (cfg.input is None):
        raise ConfigError("give either a TEXT argument or --input FILE (one utterance a line)")
    if cfg.input is None:
        assert cfg.sentence is not None
        return [(1, cfg.sentence)]
    path = Path(cfg.input)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--input {path}: cannot read ({exc})") from None
    texts = [(n, ln.strip()) for n, ln in enumerate(lines, start=1) if ln.strip()]
    if not texts:
        raise ConfigError(f"--input {path}: no text in it")
    return texts


def output_paths(output: str, lines: list[int] | None) -> list[Path]:
    """Where each input goes, checked before any model work (:class:`SynthesisError` says why
    not). ``output`` ending in ``.wav`` is a file: that file for a TEXT, ``NAME_LLL.wav`` for
    each line LLL of an input file. Without a suffix, with a trailing slash, or naming an
    existing folder, it is a folder holding ``LLL.wav`` (``001.wav`` for a TEXT). Any other
    suffix is refused. ``lines``: the input file's line numbers, ``None`` for a TEXT."""
    if not output.strip():
        raise SynthesisError("-o is empty: name a .wav file or a folder")
    path = Path(output).expanduser()
    is_wav = path.suffix.lower() == ".wav"
    as_folder = output.endswith(("/", os.sep)) or (not is_wav and (path.is_dir() or not path.suffix))
    if not as_folder and not is_wav:
        raise SynthesisError(f"-o {output}: only .wav files are written; name a .wav file, or a "
                             "folder (no suffix, or end it with /)")
    numbers = lines or [1]
    width = max(3, len(str(max(numbers))))
    if as_folder:
        paths = [path / f"{n:0{width}d}.wav" for n in numbers]
    elif lines is None:
        paths = [path]
    else:
        paths = [path.with_name(f"{path.stem}_{n:0{width}d}.wav") for n in numbers]
    _check_writable(output, paths)
    return paths


def _check_writable(output: str, paths: list[Path]) -> None:
    """Each path can become a file: none is a folder, and their folder (they share one) is, or
    can be made inside, a writable folder."""
    for p in paths:
        if p.is_dir():
            hint = " (end -o with / to write into it)" if len(paths) == 1 else ""
            raise SynthesisError(f"-o {output}: {p} is an existing folder, not a file{hint}")
    existing = paths[0].parent
    while not existing.exists():  # the folders still to make hang from the first that exists
        existing = existing.parent
    if not existing.is_dir():
        raise SynthesisError(f"-o {output}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SynthesisError(f"-o {output}: cannot write in {existing} (permission denied or "
                             "read-only)")


@dataclass
class Line:
    """One input of a run and what became of it."""

    number: int  # line number in --input (1 for a TEXT)
    text: str
    path: Path
    encoded: Encoded | None = None
    error: str | None = None
    written: bool = False


def _encode_lines(cfg: SynthConfig, lines: list[Line], frontend: TextFrontend,
                  console: Console) -> None:
    """Encode every input before any synthesis. A TEXT that cannot be said is an error; a line
    of an input file that cannot be said is reported with its line number and left out."""
    for line in lines:
        where = "" if cfg.input is None else f"--input {cfg.input}:{line.number}: "
        try:
            line.encoded = encode(frontend, line.text, cfg.max_chars)
        except Exception as exc:  # a frontend rule that breaks on one line costs that line only
            message = str(exc) if isinstance(exc, SynthesisError) else (
                f"text could not be normalised ({type(exc).__name__}: {exc})")
            if cfg.input is None:
                raise SynthesisError(message) from None
            line.error = where + message
            print_problem(console, "error", line.error)
            continue
        report = line.encoded.report
        if report.dropped:
            print_problem(console, "warning",
                          where + dropped_message(report.dropped, frontend.cfg.symbol_set))
        if report.oov:
            print_problem(console, "warning", f"{where}not in CMUdict, spelled as letters: "
                                              f"{' '.join(sorted(report.oov))}")


def _write_all(cfg: SynthConfig, lines: list[Line], acoustic: AcousticModel, vocoder: Vocoder,
               device: torch.device, console: Console) -> Timing:
    """Synthesise the encoded lines and write each file as soon as it is done."""
    todo = [line for line in lines if line.encoded is not None]
    inputs = [line.encoded for line in todo if line.encoded is not None]
    sr = acoustic.audio.sample_rate
    timing = Timing()
    shown: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for completed, t in synthesize(inputs, acoustic, vocoder, device, cfg.batch_size,
                                       cfg.pause):
            timing.add(t)
            for i, utt in completed:
                _write_one(todo[i], utt, sr, console)
            for w in caught:
                if str(w.message) not in shown:
                    shown.add(str(w.message))
                    print_problem(console, "warning", str(w.message))
            caught.clear()
    return timing


def _write_one(line: Line, utt: Utterance, sr: int, console: Console) -> None:
    try:
        line.path.parent.mkdir(parents=True, exist_ok=True)
        save_wav(line.path, utt.wav, sr)  # to NAME.part, then renamed: never half a file
    except OSError as exc:
        line.error = f"{line.path}: cannot write ({exc.strerror or exc})"
        print_problem(console, "error", line.error)
        return
    line.written = True
    flag = " (hit max decoder steps)" if any(utt.hit_max) else ""
    console.print(Text.assemble(f"wrote {line.path} ({utt.wav.size / sr:.2f} s)", (flag, "red")),
                  highlight=False, soft_wrap=True)


def _incomplete(cfg: SynthConfig, lines: list[Line]) -> SynthesisIncomplete | None:
    failed = [line for line in lines if line.error is not None]
    if not failed:
        return None
    if cfg.input is None:
        return SynthesisIncomplete(str(failed[0].error))
    numbers = ", ".join(str(line.number) for line in failed[:20])
    more = f" and {len(failed) - 20} more" if len(failed) > 20 else ""
    return SynthesisIncomplete(
        f"--input {cfg.input}: {len(failed)} of {len(lines)} line(s) failed (line "
        f"{numbers}{more}); {sum(line.written for line in lines)} file(s) written")


def run(cfg: SynthConfig, console: Console) -> list[Path]:
    """``neurotts synth``: speak each input and write its wav file as soon as it is done; returns
    the paths written. Options, inputs and output paths are checked before any model work; a
    line of an input file that fails is reported with its number and the others still run, then
    :class:`SynthesisIncomplete` lists the failures."""
    cfg.vocoder.check_finite("vocoder.")
    numbered = read_inputs(cfg)
    paths = output_paths(cfg.output, [n for n, _ in numbered] if cfg.input is not None else None)
    lines = [Line(n, text, path) for (n, text), path in zip(numbered, paths, strict=True)]
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(cfg.acoustic, device)
    _encode_lines(cfg, lines, acoustic.frontend, console)
    timing = Timing()
    if any(line.encoded is not None for line in lines):
        vocoder = load_vocoder(cfg.vocoder.path, acoustic.audio, device, cfg.vocoder)
        seed_rng(cfg.seed)
        try:
            timing = _write_all(cfg, lines, acoustic, vocoder, device, console)
        except KeyboardInterrupt:
            done = sum(line.written for line in lines)
            console.print(f"interrupted: {done} of {len(lines)} file(s) written, each complete",
                          markup=False, highlight=False, soft_wrap=True)
            raise
    written = [line.path for line in lines if line.written]
    console.print(
        f"{len(written)} file(s), {timing.audio_s:.2f} s of audio on {device}: real-time factor "
        f"{timing.rtf:.3f} (acoustic {timing.acoustic_s:.2f} s, vocoder {timing.vocoder_s:.2f} s)",
        markup=False, highlight=False, soft_wrap=True,
    )
    failure = _incomplete(cfg, lines)
    if failure is not None:
        raise failure
    return written
