"""Settings of folded WaveNet generation (:mod:`neurotts.models.wavenet.fold`), kept free of
torch so the command line can build its config schemas without importing it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from neurotts.config import ConfigError, constrained

FADES = ("linear", "power", "adaptive")
# Arithmetic of WaveNet generation (bf16: the CPU kernel on CPUs with AVX512-BF16).
PRECISIONS = ("fp32", "bf16")
# What ``fold`` may be, checked by the schema when a config loads and by parse_fold in code.
FOLD_PATTERN = r"(?i:auto|off)|[1-9][0-9]*"
FOLD_EXPECT = "auto, off or a number of segments >= 1"


@dataclass
class FoldConfig:
    """How WaveNet audio is folded: the ``vocoder`` section of configs/synth.yaml and eval.yaml,
    and ``trainer.media.vocoder_fold`` for TensorBoard audio."""

    fold: str = constrained(pattern=FOLD_PATTERN, expect=FOLD_EXPECT)  # auto | off | K, at most
    overlap_ms: float = constrained(ge=0)  # cross-fade length at each join
    fade: str = constrained(choices=FADES)

    def overlap_samples(self, sample_rate: int) -> int:
        return round(self.overlap_ms * sample_rate / 1000)


def parse_fold(value: str | int) -> int | str:
    """``"auto"`` | ``"off"`` | K -> ``"auto"``, ``1`` (off: one segment) or K."""
    text = str(value).strip()
    if not re.fullmatch(FOLD_PATTERN, text):
        raise ConfigError(f"fold={value!r}: expected {FOLD_EXPECT}")
    return {"auto": "auto", "off": 1}.get(text.lower()) or int(text)


# What callers that pass no settings get: no folding, the unfolded output sample for sample.
UNFOLDED = FoldConfig(fold="off", overlap_ms=0.0, fade="linear")
