"""Text -> waveform with an exported voice: numpy, onnxruntime and the text frontend only.

An input is normalised, split into sentences (and over-long sentences into clauses, at the
voice's ``max_chars``), and its sentences go through the acoustic graphs together, up to
``batch_size`` at a time; each sentence's mel is turned into audio by Griffin-Lim on its own
length, and the sentences are joined with ``pause`` seconds of silence.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotts.errors import UserError
from neurotts.runtime.acoustic import Acoustic, Decoded
from neurotts.runtime.griffinlim import GriffinLim
from neurotts.runtime.voice import Voice, read_voice
from neurotts.speakers import pick_speaker
from neurotts.text.chunking import split_text
from neurotts.text.frontend import TextConfig, TextFrontend, TextReport


class NothingToSay(UserError, ValueError):
    """Input with nothing speakable in it."""


@dataclass
class Spoken:
    wav: np.ndarray  # (samples,) float32
    sentences: list[str]
    hit_max: list[bool]  # per sentence: cut by the length guard (no stop token)


def frontend_of(voice: Voice) -> TextFrontend:
    return TextFrontend.from_symbols(TextConfig(voice.symbol_set, voice.language), voice.symbols)


def sentences(voice: Voice, frontend: TextFrontend, text: str) -> tuple[list[str], list[list[int]]]:
    """``text`` -> its pieces and their symbol ids (:class:`NothingToSay` if none), split as
    ``neurotts synth`` splits it at the voice's ``max_chars``."""
    normalized = frontend.normalize(text)
    max_chars = voice.text["max_chars"]
    pieces = split_text(normalized, max_chars) if max_chars else [" ".join(normalized.split())]
    if not "".join(pieces).strip():
        raise NothingToSay(f"nothing to say in {text!r}")
    report = TextReport()  # unknown characters are dropped, as in `neurotts synth`
    return pieces, [frontend.symbols.to_ids(frontend.to_symbols(p, report)) for p in pieces]


class Synthesizer:
    """One voice folder, ready to speak."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.voice: Voice = read_voice(folder)
        self.frontend = frontend_of(self.voice)
        self.acoustic = Acoustic(self.voice, threads)
        vocoder = self.voice.vocoder
        self.griffinlim = GriffinLim(self.voice.audio, vocoder["n_iter"], vocoder["momentum"])
        norm = self.voice.mel_norm
        self.mean = np.asarray(norm["mean"], np.float32)  # (n_mels,)
        self.std = np.asarray(norm["std"], np.float32)
        self.normalised = bool(norm["enabled"])

    @property
    def sample_rate(self) -> int:
        return int(self.voice.audio["sample_rate"])

    def log_mels(self, decoded: Decoded) -> list[np.ndarray]:
        """Model-space mels -> one log-mel ``(T_i, n_mels)`` per item, in the store's units."""
        mels = decoded.mels * self.std + self.mean if self.normalised else decoded.mels
        return [mels[i, : int(n)] for i, n in enumerate(decoded.lengths)]

    @property
    def speakers(self) -> list[str]:
        """The voice's speaker table ([] for a single-speaker voice)."""
        return list(self.voice.speakers or [])

    def speak(self, text: str, seed: int | None = None, speaker: str | None = None) -> Spoken:
        """``text`` as one waveform; ``seed`` fixes the prenet dropout (None: fresh draws);
        ``speaker``: one of a multi-speaker voice's speakers (None: its first), refused with
        one line on a single-speaker voice or for a name it lacks."""
        sid = pick_speaker(self.speakers, speaker, f"voice {self.voice.folder}") or 0
        pieces, ids = sentences(self.voice, self.frontend, text)
        rng = np.random.default_rng(seed)
        size = self.voice.text["batch_size"]
        wavs, hit_max = [], []
        for start in range(0, len(ids), size):
            chunk = ids[start: start + size]
            decoded = self.acoustic.decode(chunk, self.acoustic.masks(rng, len(chunk)),
                                           np.full(len(chunk), sid, np.int64))
            wavs += [self.griffinlim(mel) for mel in self.log_mels(decoded)]
            hit_max += decoded.hit_max.tolist()
        pause = np.zeros(int(self.voice.text["pause"] * self.sample_rate), np.float32)
        joined = [part for w in wavs for part in (w, pause)][:-1]
        return Spoken(np.concatenate(joined), pieces, hit_max)


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Mono float waveform -> 16-bit PCM wav (written under a temporary name, then renamed)."""
    path = Path(path)
    pcm = np.clip(np.round(wav * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    tmp.replace(path)
