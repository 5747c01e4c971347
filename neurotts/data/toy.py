"""A small LJSpeech-layout corpus made from nothing, for demos and tests without data.

Each letter becomes a short sound with its own spectral shape (vowels: a harmonic source
through two formant resonances; consonants: band-passed noise, voiced or not), spaces and
punctuation become pauses, and the pitch falls across a sentence as in read speech. The
mapping from text to sound is fixed, so a model can learn it and align to it; nothing about it
is downloaded or taken from elsewhere.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from scipy.signal import lfilter

# Two formant frequencies (Hz) per vowel, roughly those of English vowels.
_VOWELS = {"a": (730, 1090), "e": (530, 1840), "i": (270, 2290), "o": (570, 840),
           "u": (300, 870), "y": (390, 1990)}
_WORDS = (
    "the a an of to and in that it was for on with as his at by from this had not but "
    "be are were which one all there their they he she we said time man day year work "
    "house water light hand world night place court prison letter street city river "
    "long small old new great little first last other same good right open early late "
    "came went took gave made found kept read wrote spoke heard saw knew told asked"
).split()


def _resonate(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonator: a formant of ``freq`` Hz and ``bandwidth`` Hz."""
    r = np.exp(-np.pi * bandwidth / sr)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return lfilter([1 - r], a, x)


def _letter(ch: str, f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.085 * sr)
    t = np.arange(n) / sr
    if ch in _VOWELS:
        source = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 25))
        f1, f2 = _VOWELS[ch]
        seg = _resonate(source, f1, 90, sr) + 0.6 * _resonate(source, f2, 120, sr)
    else:
        idx = string.ascii_lowercase.index(ch)
        centre = 1500 + 250 * idx  # each consonant its own noise band, 1.5-7.75 kHz
        seg = _resonate(rng.standard_normal(n), centre, 400, sr) * 0.8
        if idx % 2 == 0:  # every other consonant is voiced: add a low buzz
            seg += 0.4 * _resonate(np.sin(2 * np.pi * f0 * t), 250, 80, sr)
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades
    return (seg * env).astype(np.float32)


def render(text: str, sr: int, seed: int) -> np.ndarray:
    """Waveform for ``text`` (lowercase letters, spaces, punctuation)."""
    rng = np.random.default_rng(seed)
    letters = [c for c in text.lower() if c in string.ascii_lowercase]
    parts, k = [np.zeros(int(0.15 * sr), np.float32)], 0
    for ch in text.lower():
        if ch in string.ascii_lowercase:
            f0 = 140 - 40 * k / max(len(letters), 1)  # declining pitch
            parts.append(_letter(ch, f0, sr, rng))
            k += 1
        elif ch == " ":
            parts.append(np.zeros(int(0.05 * sr), np.float32))
        elif ch in ",.;:!?":
            parts.append(np.zeros(int(0.18 * sr), np.float32))
    parts.append(np.zeros(int(0.15 * sr), np.float32))
    wav = np.concatenate(parts)
    return (0.5 * wav / max(float(np.abs(wav).max()), 1e-6)).astype(np.float32)


def make_toy_corpus(root: str | Path, n_utterances: int = 200, sample_rate: int = 22050,
                    seed: int = 0) -> Path:
    """Write ``root/metadata.csv`` and ``root/wavs/*.wav``; returns ``root``."""
    root = Path(root)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_utterances):
        words = rng.choice(_WORDS, size=int(rng.integers(3, 8)))
        text = " ".join(words).capitalize() + rng.choice([".", ".", "?", "!"])
        if len(words) > 5:
            cut = int(rng.integers(2, len(words) - 2))
            text = " ".join(words[:cut]).capitalize() + ", " + " ".join(words[cut:]) + "."
        uid = f"TOY-{i:04d}"
        sf.write(root / "wavs" / f"{uid}.wav", render(text, sample_rate, seed + i), sample_rate,
                 subtype="PCM_16")
        rows.append(f"{uid}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@dataclass
class ToyConfig:
    """What ``neurotts toy-corpus`` takes (its options; no config file)."""

    out: Path  # folder to write, in the LJSpeech layout
    utterances: int = 200
    seed: int = 0


def run(cfg: ToyConfig, console: Console) -> Path:
    """``neurotts toy-corpus``: write the corpus; returns its folder."""
    root = make_toy_corpus(cfg.out, cfg.utterances, seed=cfg.seed)
    console.print(f"wrote {cfg.utterances} clips to {root}")
    return root
