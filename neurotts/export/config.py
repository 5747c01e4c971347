"""Typed schema of ``configs/export.yaml``: what ``neurotts export`` writes and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.config import constrained


@dataclass
class GriffinLimSettings:
    n_iter: int = constrained(ge=0)
    momentum: float = constrained(ge=0, lt=1)


@dataclass
class CheckConfig:
    """The parity check run after writing: graphs against torch on the same masks."""

    enabled: bool = MISSING
    text: str = MISSING
    seed: int = constrained(ge=0, lt=2**63)
    tolerance: float = constrained(gt=0)  # max abs mel difference (model space) accepted


@dataclass
class ExportConfig:
    acoustic: str = MISSING  # Tacotron 2 run folder or checkpoint (the RUN argument)
    vocoder: str = MISSING  # griffinlim (--vocoder)
    out: str = MISSING  # the voice folder to write (--out)
    max_chars: int | None = constrained(ge=1)  # null: each input whole
    pause: float = constrained(ge=0, le=60)  # seconds between sentences
    batch_size: int = constrained(ge=1)
    griffinlim: GriffinLimSettings = field(default_factory=GriffinLimSettings)
    check: CheckConfig = field(default_factory=CheckConfig)
