"""Typed schema of ``configs/train.yaml`` and how a train config is loaded.

Loading happens in two passes because the audio settings are not part of the train config:
they belong to the feature store. The first pass composes the config with the audio node left
missing, only to learn ``data.features``; the second injects the store's audio settings as
``audio`` before interpolations resolve, so ``n_mels: ${audio.n_mels}`` in a model config is
the store's value. The ``model`` section is then validated against the dataclass of the model
that ``model.name`` names (see :data:`neurotts.training.tasks.MODEL_SCHEMAS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from neurotts.config import AudioConfig, ConfigError, compose_config, to_dict, to_schema
from neurotts.models.fold_config import FoldConfig

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DECAYS = ("constant", "exponential", "cosine")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class OptimizerConfig:
    lr: float = MISSING
    betas: list[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING


@dataclass
class ScheduleConfig:
    warmup_steps: int = MISSING
    decay: str = MISSING  # constant | exponential | cosine
    gamma: float = MISSING
    decay_steps: int = MISSING
    min_lr: float = MISSING


@dataclass
class MediaConfig:
    griffin_lim_iters: int = MISSING  # acoustic models: Griffin-Lim audio of a val synthesis
    vocoder_samples: int = MISSING  # vocoders: samples generated from a val mel (0 = none)
    vocoder_fold: FoldConfig = field(default_factory=FoldConfig)  # how they are generated


@dataclass
class TrainerConfig:
    max_steps: int = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING  # batches whose gradients make one update
    max_batch_frames: int = MISSING  # 0 = no cap
    bucket_size: int = MISSING  # in units of batch_size
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: float = MISSING
    precision: str = MISSING  # fp32 | bf16 | fp16 | auto
    device: str = MISSING  # auto | cpu | cuda
    cpu_threads: int = MISSING  # torch intra-op threads per process; 0 = torch's default
    seed: int = MISSING
    ema_decay: float = MISSING  # 0 disables
    log_every: int = MISSING
    val_every: int = MISSING
    val_batches: int = MISSING  # 0 = whole val split
    media: MediaConfig = field(default_factory=MediaConfig)
    checkpoint_every: int = MISSING
    keep_last: int = MISSING
    resume: str = MISSING  # auto | never | path to a checkpoint
    max_nonfinite: int = MISSING


@dataclass
class TrainDataConfig:
    features: str = MISSING
    normalize_mels: bool = MISSING
    num_workers: int = MISSING
    window_frames: int = MISSING  # vocoder training windows, in mel frames


@dataclass
class RunConfig:
    dir: str = MISSING


@dataclass
class TrainConfig:
    """The whole train config. ``model`` stays a plain dict here; :func:`model_config` gives
    the typed version for the model it names."""

    model: dict[str, Any] = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)


def check_trainer(cfg: TrainerConfig) -> None:
    """Value checks the schema's types cannot express; raises :class:`ConfigError`."""
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if cfg.device not in DEVICES:
        raise ConfigError(f"trainer.device={cfg.device!r}: choose one of {', '.join(DEVICES)}")
    if cfg.schedule.decay not in DECAYS:
        raise ConfigError(f"trainer.schedule.decay={cfg.schedule.decay!r}: choose one of {', '.join(DECAYS)}")
    positive = {"max_steps": cfg.max_steps, "batch_size": cfg.batch_size,
                "grad_accum": cfg.grad_accum,
                "bucket_size": cfg.bucket_size, "log_every": cfg.log_every,
                "val_every": cfg.val_every, "checkpoint_every": cfg.checkpoint_every,
                "keep_last": cfg.keep_last, "max_nonfinite": cfg.max_nonfinite}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"trainer.{key}={value}: must be at least 1")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay={cfg.ema_decay}: must be in [0, 1)")
    if len(cfg.optimizer.betas) != 2:
        raise ConfigError(f"trainer.optimizer.betas={cfg.optimizer.betas}: give two values")


def _features_dir(overrides: Sequence[str], config_dir: str | Path | None) -> Path:
    """First pass: compose with the audio node missing, just to read ``data.features``."""
    placeholder = OmegaConf.structured(AudioConfig)  # all values '???'
    cfg = compose_config("train", overrides, config_dir, inject={"audio": placeholder})
    features = OmegaConf.select(cfg, "data.features", throw_on_missing=False)
    if features is None or OmegaConf.is_missing(cfg.data, "features"):
        raise ConfigError("missing mandatory value: data.features (set it as data.features=DIR)")
    return Path(str(features))


def compose_train_config(
    overrides: Sequence[str], config_dir: str | Path | None, audio: AudioConfig
) -> DictConfig:
    """Compose ``train`` with ``audio`` injected (the store's settings)."""
    return compose_config("train", overrides, config_dir, inject={"audio": to_dict(audio)})


def load_train_config(
    overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> TrainConfig:
    """Compose, inject the store's audio settings, validate. Raises :class:`ConfigError`."""
    from neurotts.data.store import FeatureStore, StoreError
    from neurotts.training.tasks import model_config

    features = _features_dir(overrides, config_dir)
    try:
        store = FeatureStore(features)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    cfg = to_schema(compose_train_config(overrides, config_dir, store.audio), TrainConfig)
    check_trainer(cfg.trainer)
    model_config(cfg.model)  # validate now, so a bad model key fails before any work
    return cfg
