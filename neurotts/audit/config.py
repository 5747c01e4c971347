"""Typed schema of ``configs/audit.yaml``: what ``neurotts audit`` measures and where it draws
the lines. Every number has its documented value in the YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.audio import AudioConfig
from neurotts.audit.measures import LevelConfig
from neurotts.config import constrained
from neurotts.data.config import DataConfig
from neurotts.text.frontend import TextConfig


@dataclass
class Limits:
    """Two levels of one measure: ``warn`` scores 0.5 and ``exclude`` scores 1.0.

    When ``exclude`` is below ``warn`` lower values are worse (an SNR), else higher ones are.
    """

    warn: float = MISSING
    exclude: float = MISSING


@dataclass
class TranscriptConfig:
    """The transcript check: align the given words with pocketsphinx, and on the clips that
    warn, ask the recogniser what it hears."""

    enabled: bool = MISSING
    skip_prob: float = constrained(gt=0, lt=1)  # grammar probability of leaving a transcript word out
    beam: float = constrained(gt=0, le=1)  # pocketsphinx's beam, pbeam and wbeam for the alignment
    pbeam: float = constrained(gt=0, le=1)
    wbeam: float = constrained(gt=0, le=1)
    poor_deficit: float = constrained(ge=0)  # a word matched worse than this (per frame) is poorly matched
    recognise: bool = MISSING  # run the full recogniser on the clips that warn


@dataclass
class Thresholds:
    duration_short: Limits = field(default_factory=Limits)
    duration_long: Limits = field(default_factory=Limits)
    leading_silence: Limits = field(default_factory=Limits)
    trailing_silence: Limits = field(default_factory=Limits)
    longest_pause: Limits = field(default_factory=Limits)
    end_loudness: Limits = field(default_factory=Limits)
    snr_db: Limits = field(default_factory=Limits)
    clipped_share: Limits = field(default_factory=Limits)
    dc_offset: Limits = field(default_factory=Limits)
    speaking_rate_z: Limits = field(default_factory=Limits)
    align_skipped: Limits = field(default_factory=Limits)
    align_deficit: Limits = field(default_factory=Limits)
    transcript_cer: Limits = field(default_factory=Limits)
    acoustic_loss_z: Limits = field(default_factory=Limits)
    attention_coverage: Limits = field(default_factory=Limits)
    attention_band_mass: Limits = field(default_factory=Limits)


@dataclass
class FixedScores:
    """Scores of yes/no findings."""

    unusable: float = constrained(ge=0)  # unreadable audio, or a transcript the frontend rejects
    low_sample_rate: float = constrained(ge=0)
    other_format: float = constrained(ge=0)
    duplicate_audio: float = constrained(ge=0)
    duplicate_text: float = constrained(ge=0)


@dataclass
class AuditConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = MISSING
    num_workers: int = constrained(ge=0)  # 0: one per core
    acoustic: str | None = None
    device: str = MISSING
    batch_size: int = constrained(ge=1)  # clips per --acoustic forward pass
    exclude_score: float = constrained(gt=0)
    others_weight: float = constrained(ge=0)
    report_rows: int = constrained(ge=0)
    levels: LevelConfig = field(default_factory=LevelConfig)
    transcript: TranscriptConfig = field(default_factory=TranscriptConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    scores: FixedScores = field(default_factory=FixedScores)
