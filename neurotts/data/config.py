"""Schemas of ``neurotts prepare`` (``configs/prepare.yaml``): the corpus, its split, the store.

The audio settings are :class:`neurotts.audio.AudioConfig` (models and vocoders read them too,
and they must not depend on the data package); the text settings are
:class:`neurotts.text.frontend.TextConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.audio import AudioConfig
from neurotts.config import constrained
from neurotts.data.formats.rows import FORMATS
from neurotts.text.frontend import TextConfig

SPLIT_METHODS = ("hash", "standard", "lists")


@dataclass
class SplitAutoConfig:
    """How val/test sizes left unset (null) scale with the number of usable utterances."""

    val_max: int = constrained(ge=0)
    test_max: int = constrained(ge=0)
    val_fraction: float = constrained(ge=0, lt=1)
    test_fraction: float = constrained(ge=0, lt=1)


@dataclass
class SplitConfig:
    method: str = constrained(choices=SPLIT_METHODS)
    val_size: int | None = constrained(ge=0)  # method=hash; None: scaled by ``auto``
    test_size: int | None = constrained(ge=0)
    auto: SplitAutoConfig = field(default_factory=SplitAutoConfig)
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None


@dataclass
class DataConfig:
    name: str = MISSING
    root: str | None = None
    format: str = constrained(choices=FORMATS)  # auto: told by the content (data/formats)
    download: bool = False
    download_dir: str = MISSING
    url: str = MISSING
    sha256: str = MISSING
    metadata: str = MISSING
    exclude: str | None = None  # file of ids to leave out (one a line, # comments)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class PrepareConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = MISSING
    num_workers: int = constrained(ge=0)  # 0: one per CPU core
    strict: bool = MISSING
    save_audio: bool = MISSING
