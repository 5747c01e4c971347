"""The exported voice folder: ``voice.json`` and its ONNX graphs, read and checked.

``voice.json`` (format ``neurotts-voice``, :data:`VERSION`) holds everything synthesis needs
besides the graphs: the symbol table and text settings, the audio settings, the mel
normalisation, the acoustic model's inference settings (reduction factor, prenet sizes and
dropout, stop threshold, length guard), how text is split and joined, the vocoder, the
speakers (``null``: a single-speaker voice), and a ``voice_id``. Every graph carries the same
id in its metadata (``neurotts.voice_id``), so graphs from two exports cannot be mixed.

The writer is :mod:`neurotts.export.run`; this module is the one home of the format's name,
version and checks, and imports neither torch nor onnx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurotts.errors import UserError

FORMAT = "neurotts-voice"
VERSION = 1
VOICE_FILE = "voice.json"
VOICE_ID_KEY = "neurotts.voice_id"  # metadata_props key in every graph
ACOUSTIC_GRAPHS = ("encoder", "decoder_step", "postnet")


class VoiceError(UserError, ValueError):
    """An exported voice folder that cannot be used; the message names the file."""


@dataclass(frozen=True)
class AcousticSettings:
    """How the decoder loop runs (from the checkpoint's model config)."""

    attention: str  # location | dca | multihead
    n_mels: int
    reduction_factor: int
    prenet_dims: list[int]
    prenet_dropout: float
    stop_threshold: float
    max_frames_per_symbol: float
    max_frames_offset: int


@dataclass(frozen=True)
class Voice:
    """A checked voice folder."""

    folder: Path
    voice_id: str
    symbol_set: str
    language: str | None  # text=ipa's eSpeak NG language; None for the English symbol sets
    symbols: list[str]
    audio: dict[str, Any]  # sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax, log_floor
    mel_norm: dict[str, Any]  # enabled, mean (n_mels,), std (n_mels,)
    acoustic: AcousticSettings
    text: dict[str, Any]  # max_chars (null: whole), pause (s), batch_size
    vocoder: dict[str, Any]  # {"type": "griffinlim", "n_iter", "momentum"}
    speakers: list[str] | None

    def graph(self, name: str) -> Path:
        return self.folder / f"{name}.onnx"


def read_voice(folder: str | Path) -> Voice:
    """Read and check ``folder/voice.json`` and that every graph it needs is there (the graphs'
    voice ids are checked when they are opened: :func:`check_graph_id`)."""
    folder = Path(folder).expanduser()
    path = folder / VOICE_FILE
    if not path.is_file():
        raise VoiceError(f"{folder}: no {VOICE_FILE} (not an exported voice folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise VoiceError(f"{path}: not a neurotts voice file")
    if data.get("version") != VERSION:
        raise VoiceError(f"{path}: voice format version {data.get('version')}, but this runtime "
                         f"reads version {VERSION}: export the voice again with this neurotts")
    try:
        # "language" came with text=ipa; a voice exported before it is English.
        voice = Voice(folder, str(data["voice_id"]), data["text"]["symbol_set"],
                      data["text"].get("language"), list(data["text"]["symbols"]), dict(data["audio"]), dict(data["mel_norm"]),
                      AcousticSettings(**data["acoustic"]), dict(data["synthesis"]),
                      dict(data["vocoder"]), data["speakers"])
    except (KeyError, TypeError) as exc:
        raise VoiceError(f"{path}: incomplete voice file ({type(exc).__name__}: {exc})") from None
    missing = [f"{n}.onnx" for n in ACOUSTIC_GRAPHS if not voice.graph(n).is_file()]
    if missing:
        raise VoiceError(f"{folder}: missing graph {', '.join(missing)} (export the voice again)")
    return voice


def check_graph_id(voice: Voice, name: str, metadata: dict[str, str]) -> None:
    """Refuse a graph whose ``neurotts.voice_id`` is not the voice's (another export's graph)."""
    found = metadata.get(VOICE_ID_KEY)
    if found != voice.voice_id:
        raise VoiceError(f"{voice.graph(name)}: belongs to voice {found or 'unknown'}, not to "
                         f"this folder's voice {voice.voice_id} (graphs of different exports mixed)")
