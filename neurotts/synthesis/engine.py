"""Text -> waveform with trained checkpoints: the engine behind ``neurotts synth`` and ``eval``.

Everything needed comes from the checkpoints themselves: the acoustic model's checkpoint carries
its config, symbol table, text settings, audio settings and mel normalisation; the vocoder's
carries its config and the audio settings it was trained on, which must match.

Memory is bounded by ``batch_size`` pieces whatever the input: each input is split into pieces
(sentences, then clauses, of at most ``max_chars``), the pieces of all inputs go through the
models ``batch_size`` at a time in input order, and an input is joined and handed back as soon
as its last piece is done, so ``synth`` writes each file while the others are still running.
Reading inputs, output paths and writing files are the command's (:mod:`neurotts.synthesis.run`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurotts.audio import AudioConfig, MelNorm
from neurotts.checkpoint import load_trained
from neurotts.errors import UserError
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config, decoder_lengths
from neurotts.speakers import pick_speaker
from neurotts.synthesis.timestamps import Word, word_times
from neurotts.text.chunking import split_text
from neurotts.text.frontend import TextError, TextFrontend, TextReport
from neurotts.text.symbols import SPACE
from neurotts.vocoders import Vocoder


class SynthesisError(UserError, ValueError):
    """A problem the user can fix (wrong checkpoint kind, mismatched settings, no text)."""


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
    speakers: list[str] = field(default_factory=list)  # its speaker table; [] one speaker

    @classmethod
    def load(cls, path: str | Path, device: torch.device) -> AcousticModel:
        trained = load_trained(path, "tacotron2", device)
        return cls(trained.model, trained.config,
                   TextFrontend.from_symbols(trained.text, trained.symbols), trained.audio,
                   trained.mel_norm, trained.path, trained.step, trained.speakers)

    def speaker_ids(self, names: Sequence[str | None], device: torch.device
                    ) -> torch.Tensor | None:
        """``(B,)`` ids of the speakers ``names`` (None: the model's first speaker) for a
        multi-speaker model; None for a single-speaker one."""
        if not self.speakers:
            return None
        what = f"acoustic model {self.path}"
        ids = [pick_speaker(self.speakers, name, what) or 0 for name in names]
        return torch.tensor(ids, dtype=torch.long, device=device)

    def to_log_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """Model-space mels -> log-mels in the store's units."""
        return self.norm.inverse(mels)


@dataclass
class Encoded:
    """One input ready for the acoustic model: its pieces and their symbol ids."""

    text: str
    pieces: list[str]
    ids: list[list[int]]
    report: TextReport  # characters the symbol set cannot say, words CMUdict lacks


def encode(frontend: TextFrontend, text: str, max_chars: int | None,
           max_symbols: int | None = None) -> Encoded:
    """Split ``text`` into pieces of at most ``max_chars`` characters (``None``: one piece) and
    encode each; :class:`SynthesisError` when there is nothing to say in it. With
    ``max_symbols``, a piece longer than that many symbols is cut again at its last space
    within the limit, so the decoder's length guard (which grows with the piece) stays
    bounded whatever the input; a run of more than ``max_symbols`` symbols with no space in
    it cannot be cut anywhere sensible and is refused."""
    normalized = frontend.normalize(text)
    pieces = split_text(normalized, max_chars) if max_chars else [" ".join(normalized.split())]
    if not pieces or not "".join(pieces).strip():
        raise SynthesisError(f"nothing to say in {text!r}")
    report = TextReport()
    try:
        symbols = [frontend.to_symbols(piece, report) for piece in pieces]
    except TextError as exc:
        raise SynthesisError(str(exc)) from None
    if max_symbols is not None:
        pieces, symbols = _cap_pieces(pieces, symbols, max_symbols)
    return Encoded(text, pieces, [frontend.symbols.to_ids(s) for s in symbols], report)


def _cap_pieces(pieces: list[str], symbols: list[list[str]], cap: int
                ) -> tuple[list[str], list[list[str]]]:
    """Pieces of at most ``cap`` symbols (EOS included): a longer one is cut after its last
    space within the limit, each part ending with EOS; the text of a cut part is its symbols
    (phones show as such)."""
    out_pieces, out_symbols = [], []
    for piece, syms in zip(pieces, symbols, strict=True):
        if len(syms) <= cap:
            out_pieces.append(piece)
            out_symbols.append(syms)
            continue
        body, eos = syms[:-1], syms[-1]
        while body:
            if len(body) + 1 <= cap:
                cut = len(body)
            else:
                spaces = [k for k, s in enumerate(body[:cap]) if s == SPACE and k > 0]
                if not spaces:
                    run = next((k for k, s in enumerate(body) if s == SPACE), len(body))
                    raise SynthesisError(
                        f"a run of {run} symbols with no space (over max_symbols={cap}) cannot "
                        "be cut into pieces: not spoken (put spaces in it, or raise "
                        "max_symbols)")
                cut = spaces[-1]
            part = body[:cut]
            out_pieces.append("".join(part))
            out_symbols.append([*part, eos])
            body = body[cut + 1:]
    return out_pieces, out_symbols


@dataclass
class Synthesized:
    """One synthesised input: its waveform and how it went."""

    text: str
    wav: np.ndarray
    pieces: list[str]
    hit_max: list[bool]
    alignments: list[np.ndarray] = field(default_factory=list)  # (T_dec, T_text) per piece
    mels: list[np.ndarray] = field(default_factory=list)  # (T, n_mels) log-mel per piece
    starts: list[int] = field(default_factory=list)  # first sample of each piece in ``wav``


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


def choose_speaker(acoustic: AcousticModel, vocoder: Vocoder, name: str | None,
                   option: str = "--speaker") -> tuple[str | None, str | None]:
    """The speaker to speak as, and a note for the user (or None), before any synthesis.

    ``name`` must be one of the acoustic model's speakers (else a
    :class:`~neurotts.speakers.SpeakerError` listing them; any name on a single-speaker
    model is one too). No name on a multi-speaker model: its first speaker (the table is
    sorted), with a note naming it and the others. A multi-speaker vocoder must have the
    chosen speaker too (:meth:`Vocoder.check_speaker`)."""
    what = f"acoustic model {acoustic.path}"
    pick_speaker(acoustic.speakers, name, what, option)
    note = None
    if name is None and acoustic.speakers:
        name = acoustic.speakers[0]
        note = (f"no {option}: speaking as {name}, the first of the model's "
                f"{len(acoustic.speakers)} speakers ({', '.join(acoustic.speakers)})")
    vocoder.check_speaker(name, option)
    return name, note


def synthesize_pieces(ids: list[list[int]], acoustic: AcousticModel, vocoder: Vocoder,
                      device: torch.device, keep_details: bool = False,
                      speakers: Sequence[str | None] | None = None) -> tuple[list[Piece], Timing]:
    """One batch through both models: all of ``ids`` at once (the caller bounds its size),
    piece i spoken by ``speakers[i]`` (a multi-speaker model's; None, or no list: its first
    speaker, see :func:`choose_speaker`)."""
    speakers = list(speakers) if speakers is not None else [None] * len(ids)
    lengths = torch.tensor([len(x) for x in ids], device=device)
    batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long, device=device)
    for i, piece in enumerate(ids):
        batch[i, : len(piece)] = torch.tensor(piece, device=device)
    timing = Timing()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hit_max is reported per item below
        out = acoustic.model.infer(batch, lengths, acoustic.speaker_ids(speakers, device))
    log_mels = acoustic.to_log_mel(out.mels)  # (B, T, n_mels)
    _sync(device)
    timing.acoustic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    wavs = vocoder(log_mels, out.mel_lengths, speakers)
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


def _join(enc: Encoded, pieces: list[Piece], pause: np.ndarray) -> Synthesized:
    """The pieces of one input with ``pause`` (silence) between them."""
    joined = [part for p in pieces for part in (p.wav, pause)][:-1]
    utt = Synthesized(enc.text, np.concatenate(joined), enc.pieces, [p.hit_max for p in pieces])
    utt.alignments = [p.alignment for p in pieces if p.alignment is not None]
    utt.mels = [p.mel for p in pieces if p.mel is not None]
    utt.starts = np.cumsum([0] + [p.wav.size + pause.size for p in pieces[:-1]]).tolist()
    return utt


def utterance_words(enc: Encoded, utt: Synthesized, acoustic: AcousticModel) -> list[Word]:
    """Words of ``utt`` (synthesised with ``keep_details``) in seconds from its start: each
    piece's words from its attention, shifted by where the piece starts in the joined audio
    (the pieces before it and the pauses between them)."""
    if len(utt.alignments) != len(enc.ids) or len(utt.mels) != len(enc.ids):
        raise ValueError("word times need the alignments and mels of every piece (keep_details)")
    a, sr = acoustic.audio, acoustic.audio.sample_rate
    words: list[Word] = []
    for piece, ids, align, mel, start in zip(enc.pieces, enc.ids, utt.alignments, utt.mels,
                                             utt.starts, strict=True):
        symbols = acoustic.frontend.decode(ids)
        found = word_times(align, piece, symbols, a.hop_length, acoustic.cfg.reduction_factor,
                           sr, n_frames=mel.shape[0])
        words += [w.shifted(start / sr) for w in found]
    return words


def synthesize(inputs: list[Encoded], acoustic: AcousticModel, vocoder: Vocoder,
               device: torch.device, batch_size: int, pause_s: float = 0.25,
               keep_details: bool = False, speakers: Sequence[str | None] | None = None
               ) -> Iterator[tuple[list[tuple[int, Synthesized]], Timing]]:
    """Synthesise ``inputs``, input i as ``speakers[i]`` (multi-speaker models; None, or no
    list: the first speaker, see :func:`choose_speaker`): all their pieces, in order,
    ``batch_size`` at a time, so the models never hold more than ``batch_size`` pieces
    however long an input is. After each
    batch, yields the inputs it completed, as (index into ``inputs``, utterance with its pieces
    joined by ``pause_s`` of silence), and the batch's timing (pauses count as audio)."""
    order = [(i, j) for i, enc in enumerate(inputs) for j in range(len(enc.ids))]
    sr = acoustic.audio.sample_rate
    pause = np.zeros(int(pause_s * sr), dtype=np.float32)
    pending: dict[int, list[Piece]] = {}  # done pieces of inputs not yet complete
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        pieces, timing = synthesize_pieces([inputs[i].ids[j] for i, j in chunk], acoustic,
                                           vocoder, device, keep_details,
                                           None if speakers is None else
                                           [speakers[i] for i, _ in chunk])
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
