"""Per-clip measures of a recording and its transcript, as found on disk.

Everything here is plain numpy on one clip and runs in a worker process. Nothing is judged
here: :mod:`neurotts.audit.scoring` turns the numbers into scores against the thresholds in
``configs/audit.yaml``.

The level analysis cuts the mono signal into non-overlapping frames of ``frame_ms`` and takes
each frame's mean power in dB relative to full scale (dBFS; a full-scale sine is -3 dBFS).
The clip's *speech level* is a high percentile of those frame levels; frames more than
``silence_db`` below it are silence. Leading/trailing silence, the longest pause, the seconds
of speech (frames of sound from the first to the last, pauses left out) and a noise floor (a
low percentile of the frames that are not digital silence) all come from that one pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from neurotts.config import constrained
from neurotts.errors import UserError

DIGITAL_SILENCE_DB = -120.0  # the level given to an all-zero frame (log of 0 is not a number)


class ClipError(UserError, ValueError):
    """A file that cannot be read as audio; the message names it."""


@dataclass
class LevelConfig:
    """How frame levels are computed and read. Values come from ``configs/audit.yaml``."""

    frame_ms: float = constrained(gt=0)
    speech_percentile: float = constrained(ge=0, le=100)  # frame level that stands for the clip's speech level
    noise_percentile: float = constrained(ge=0, le=100)  # frame level that stands for the noise floor
    silence_db: float = constrained(gt=0)  # frames this far below the speech level are silence
    clip_level: float = constrained(gt=0, le=1)  # share of the peak from which equal neighbours are clipped


@dataclass
class Clip:
    """A decoded file: ``samples`` is ``(n, channels)`` float32 in [-1, 1] as stored."""

    samples: np.ndarray
    sample_rate: int
    subtype: str  # soundfile's name for the encoding, e.g. PCM_16, FLOAT

    @property
    def mono(self) -> np.ndarray:
        """``(n,)`` float32: channels averaged."""
        s = self.samples
        return s[:, 0] if s.shape[1] == 1 else s.mean(axis=1, dtype=np.float32)


def read_clip(path: Path) -> Clip:
    """Read ``path`` without resampling or mixing (the checks want the file as it is)."""
    try:
        with sf.SoundFile(str(path)) as f:
            samples = f.read(dtype="float32", always_2d=True)  # (n, channels)
            rate, subtype = f.samplerate, f.subtype
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        if not path.exists():
            raise ClipError(f"{path}: file not found") from None
        raise ClipError(f"{path}: cannot read audio ({exc})") from None
    if samples.shape[0] == 0:
        raise ClipError(f"{path}: no samples")
    if not np.isfinite(samples).all():
        raise ClipError(f"{path}: contains NaN or infinite samples")
    return Clip(samples, rate, subtype)


def audio_hash(clip: Clip) -> str:
    """Digest of the decoded samples and rate: equal for the same audio in any container."""
    h = hashlib.blake2b(digest_size=12)
    h.update(str(clip.sample_rate).encode())
    h.update(np.ascontiguousarray(clip.samples).tobytes())
    return h.hexdigest()


def frame_levels(mono: np.ndarray, frame: int) -> np.ndarray:
    """``(n_frames,)`` mean power of each whole ``frame``-sample block, in dBFS.

    The reference is a full-scale square wave (power 1), so a full-scale sine reads -3 dB.
    """
    n = mono.size // frame
    if n == 0:
        return np.full(1, _db(float(np.mean(mono.astype(np.float64) ** 2))))
    blocks = mono[: n * frame].reshape(n, frame)
    power = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / frame  # (n,)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(power)
    return np.maximum(db, DIGITAL_SILENCE_DB)


def _db(power: float) -> float:
    return max(10.0 * np.log10(power), DIGITAL_SILENCE_DB) if power > 0 else DIGITAL_SILENCE_DB


def level_measures(mono: np.ndarray, rate: int, cfg: LevelConfig) -> dict[str, float]:
    """Speech level, noise floor, SNR, silences and seconds of speech of one clip (s, dB)."""
    frame = max(1, round(rate * cfg.frame_ms / 1000.0))
    levels = frame_levels(mono, frame)  # (n_frames,) dBFS
    step = frame / rate
    speech_db = float(np.percentile(levels, cfg.speech_percentile))
    loud = np.flatnonzero(levels > speech_db - cfg.silence_db)
    first, last = int(loud[0]), int(loud[-1])  # the percentile frame itself is always loud
    quiet = levels[first : last + 1] <= speech_db - cfg.silence_db
    # The noise floor is read from the frames that are not digital silence: zero padding
    # says nothing about the recording's noise (it is caught as silence instead).
    live = levels[levels > DIGITAL_SILENCE_DB]
    noise_db = float(np.percentile(live, cfg.noise_percentile)) if live.size else DIGITAL_SILENCE_DB
    tail = mono.size / rate - (last + 1) * step
    return {
        "speech_db": speech_db,
        "noise_db": noise_db,
        "snr_db": speech_db - noise_db,
        "leading_silence": first * step,
        "trailing_silence": tail,
        "longest_pause": _longest_run(quiet) * step,
        # Frames of sound between the first and the last: pauses are not speech, so lists
        # and slow, deliberate reading ("five. The master felons' side. six. ...") keep a
        # normal rate.
        "speech_seconds": int((~quiet).sum()) * step,
        # How loud the clip's last frame is against its speech level, and where that lies
        # between the noise floor (0) and the speech level (1): a recording cut off mid-word
        # ends high in its range, a noisy one ends at its (high) floor, a clean one near 0.
        "end_level_db": float(levels[-1]) - speech_db,
        "end_loudness": _position(float(levels[-1]), noise_db, speech_db),
    }


def _position(level: float, low: float, high: float) -> float:
    """Where ``level`` lies from ``low`` (0) to ``high`` (1); 0 when the range is empty."""
    return (level - low) / (high - low) if high > low else 0.0


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # starts at even, ends at odd positions
    return int((edges[1::2] - edges[::2]).max())


def clipping_measures(mono: np.ndarray, clip_level: float) -> dict[str, float]:
    """Peak (dBFS), DC offset, and the share of samples that sit in flat runs at the peak.

    A clipped waveform is cut flat at its largest values: neighbouring samples there are
    equal. Clean speech touches its peaks with single samples. Looking at the clip's own
    positive and negative peaks, not at digital full scale, also catches audio that was
    clipped and then scaled down, or clipped on one side only.
    """
    top, bottom = float(mono.max()), float(mono.min())
    peak = max(top, -bottom)
    if peak == 0.0:
        return {"peak_db": DIGITAL_SILENCE_DB, "dc_offset": 0.0, "clipped_share": 0.0,
                "longest_clipped_run": 0}
    high = np.zeros(mono.shape, dtype=bool)  # (n,)
    if top > 0:
        high |= mono >= clip_level * top
    if bottom < 0:
        high |= mono <= clip_level * bottom
    same_next = np.zeros_like(high)
    same_next[:-1] = mono[1:] == mono[:-1]
    flat = high & (same_next | np.concatenate([[False], same_next[:-1]]))
    return {
        "peak_db": 20.0 * float(np.log10(peak)),
        "dc_offset": float(mono.mean(dtype=np.float64)),
        "clipped_share": float(flat.mean()),
        "longest_clipped_run": _longest_run(flat),
    }


def audio_measures(clip: Clip, cfg: LevelConfig) -> dict[str, Any]:
    """All audio measures of one clip, ready to journal (plain floats, ints and strings)."""
    mono = clip.mono
    out: dict[str, Any] = {
        "duration": mono.size / clip.sample_rate,
        "sample_rate": clip.sample_rate,
        "channels": int(clip.samples.shape[1]),
        "encoding": clip.subtype,
        "audio_hash": audio_hash(clip),
    }
    out.update(level_measures(mono, clip.sample_rate, cfg))
    out.update(clipping_measures(mono, cfg.clip_level))
    return out
