"""What a caller chooses about WaveNet generation, in one dataclass carried whole from the
``vocoder`` section of configs/synth.yaml and eval.yaml (and ``trainer.media.vocoder_fold``)
down to :func:`neurotts.models.wavenet.generate.generate`. Kept free of torch so the command
line can build its config schemas without importing it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from neurotts.config import ConfigError, constrained

FADES = ("linear", "power", "adaptive")
# Arithmetic of WaveNet generation (bf16: the CPU kernel on CPUs with AVX512-BF16).
PRECISIONS = ("fp32", "bf16")
# Back ends of generate: auto picks graph on CUDA, else the C kernel when it builds, else views.
MODES = ("auto", "kernel", "views", "indexed", "graph")
# What ``fold`` may be, checked by the schema when a config loads and by parse_fold in code.
FOLD_PATTERN = r"(?i:auto|off)|[1-9][0-9]*"
FOLD_EXPECT = "auto, off or a number of segments >= 1"


@dataclass
class GenerateOptions:
    """Every choice about one generation call. The defaults are plain unfolded generation:
    ``GenerateOptions()`` gives the same audio as generating each utterance whole.
    ``mode`` and ``kernel_threads`` pick how the same audio is computed."""

    temperature: float = constrained(1.0, ge=0)  # 1: sample the learned distribution; 0: argmax
    # auto | off | K: at most K segments per utterance, generated as one batch.
    fold: str = constrained("off", pattern=FOLD_PATTERN, expect=FOLD_EXPECT)
    overlap_ms: float = constrained(0.0, ge=0)  # cross-fade length at each join
    fade: str = constrained("adaptive", choices=FADES)
    precision: str = constrained("fp32", choices=PRECISIONS)  # bf16: CPU kernel, AVX512-BF16
    mode: str = constrained("auto", choices=MODES)
    kernel_threads: int | None = constrained(None, ge=1)  # null: torch's intra-op thread count

    def overlap_samples(self, sample_rate: int) -> int:
        return round(self.overlap_ms * sample_rate / 1000)

    def check_finite(self, prefix: str) -> None:
        """Infinity and NaN pass the schema's lower bounds; refuse them with a one-line
        :class:`ConfigError` naming the key (``prefix`` + field)."""
        for name, value in (("temperature", self.temperature), ("overlap_ms", self.overlap_ms)):
            if not math.isfinite(value):
                raise ConfigError(f"{prefix}{name}={value}: must be a finite number")


def parse_fold(value: str | int) -> int | str:
    """``"auto"`` | ``"off"`` | K -> ``"auto"``, ``1`` (off: one segment) or K."""
    text = str(value).strip()
    if not re.fullmatch(FOLD_PATTERN, text):
        raise ConfigError(f"fold={value!r}: expected {FOLD_EXPECT}")
    return {"auto": "auto", "off": 1}.get(text.lower()) or int(text)
