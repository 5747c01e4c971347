"""Schema of ``neurotts synth`` (``configs/synth.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.config import constrained
from neurotts.vocoders import VocoderConfig


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
    max_symbols: int = constrained(ge=2)  # a piece's symbols (EOS included): bounds its decoder
    force: bool = False  # replace existing output files (--force)
    timestamps: bool = False  # NAME.vtt and NAME.json (word, start, end) beside each wav
    pause: float = constrained(ge=0, le=60)  # seconds
    batch_size: int = constrained(ge=1)
    speaker: str | None = None  # a multi-speaker model's speaker (--speaker); null: its first
