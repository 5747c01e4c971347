"""Settings of folded WaveNet generation (:mod:`neurotts.models.wavenet_fold`), kept free of
torch so the command line can build its config schemas without importing it."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from neurotts.config import ConfigError, constrained

FADES = ("linear", "power", "adaptive")


@dataclass
class FoldConfig:
    """``vocoder`` section of configs/synth.yaml and eval.yaml (WaveNet only)."""

    fold: str = MISSING  # auto | off | K (segments per utterance, at most); see check()
    overlap_ms: float = constrained(ge=0)  # cross-fade length at each join
    fade: str = constrained(choices=FADES)

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line, naming the option) for an unusable ``fold``
        (the schema checks the other two when the config is loaded)."""
        parse_fold(self.fold)

    def overlap_samples(self, sample_rate: int) -> int:
        return round(self.overlap_ms * sample_rate / 1000)


def parse_fold(value: str | int) -> int | str:
    """``"auto"`` | ``"off"`` | K -> ``"auto"``, ``1`` (off: one segment) or K."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return 1 if text == "off" else "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"vocoder.fold={value!r}: expected auto, off or a number of segments >= 1")


# What callers that pass no settings get: no folding, the unfolded output sample for sample.
UNFOLDED = FoldConfig(fold="off", overlap_ms=0.0, fade="linear")
