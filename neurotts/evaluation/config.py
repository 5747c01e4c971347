"""Schema of ``neurotts eval`` (``configs/eval.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from neurotts.config import constrained
from neurotts.data.store import SPLITS
from neurotts.vocoders import VocoderConfig


@dataclass
class EvalDataConfig:
    features: str | None = None


@dataclass
class EvalConfig:
    # A run folder or checkpoint of an acoustic model, or a list of them: with several, each is
    # evaluated on the same texts and a comparison table is written (e.g. location vs dca vs
    # multihead). Typed Any because OmegaConf has no str-or-list type; see acoustic_paths().
    acoustic: Any = MISSING
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)  # path (--vocoder), folding
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    out: str = MISSING
    split: str = constrained(choices=SPLITS)
    limit: int | None = constrained(None, ge=1)  # null: the whole split
    texts: str | None = None  # null: the split; "long": built-in passages; else a text file
    seed: int | None = constrained(ge=0, lt=2**63)  # random draws; null: different every run
    asr: bool = MISSING
    device: str = MISSING
    batch_size: int = constrained(ge=1)
    skip_run: int = constrained(ge=1)  # this many consecutive never-attended symbols count as a skip
    repeat_jump: int = constrained(ge=1)  # the peak moving back this many symbols counts as a repeat
    stop_unaligned: bool = MISSING  # stop early when most of the first utterances fail
    plots: int = constrained(ge=0)  # how many utterances get alignment/mel plots
