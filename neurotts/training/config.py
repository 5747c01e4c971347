"""Typed schema of ``configs/train.yaml`` and how a train config is loaded.

Loading happens in two passes because the audio settings are not part of the train config:
they belong to the feature store. The first pass composes the config with the audio node left
missing and checks everything that does not depend on the store (keys, types, value ranges and
choices, the model section's fields), then reads ``data.features``; the second injects the
store's audio settings as ``audio`` before interpolations resolve, so ``n_mels:
${audio.n_mels}`` in a model config is the store's value. The ``model`` section is then validated
against the dataclass of the model that ``model.name`` names (see
:mod:`neurotts.models.registry`), and its data-derived values (``n_mels``, ``hop_length``) are
checked against the store.

Value ranges and choices are field metadata (:func:`neurotts.config.constrained`), checked by
:func:`neurotts.config.to_schema` with the key's full name (``trainer.max_steps=0: must be at
least 1``). So is what a resumed run may change (:func:`resumable`): a setting without a
resume policy must keep the checkpoint's value (README "Train").
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from neurotts.audio import AudioConfig
from neurotts.config import (
    ConfigError,
    MissingValueError,
    compose_config,
    constrained,
    missing_keys,
    to_dict,
    to_schema,
    validate,
)
from neurotts.models.registry import DataSpec, check_data, model_config, model_schema
from neurotts.models.wavenet.options import GenerateOptions

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DECAYS = ("constant", "exponential", "cosine")
DEVICES = ("auto", "cpu", "cuda")

# Resume policies, the ``resume`` metadata of a schema field (on a section: all its keys).
MAY_CHANGE = "may_change"  # a resumed run may use another value; the change is printed
QUIET = "quiet"  # may change, not printed: where the run and its data are, how it resumes
NEXT_EPOCH = "next_epoch"  # changes which utterances make up each batch: the new batches
# start with the next epoch (the rest of the current one is skipped)


def resumable(spec: Any = MISSING, policy: str = MAY_CHANGE) -> Any:
    """A schema field (``spec``: a default value or a field made by ``constrained`` or
    ``field``) that a resumed run may change, as ``policy`` says."""
    if not isinstance(spec, dataclasses.Field):
        spec = field(default=spec)
    return field(default=spec.default, default_factory=spec.default_factory,
                 metadata={**spec.metadata, "resume": policy})


def section(schema: type, policy: str = MAY_CHANGE) -> Any:
    """A sub-config field whose every key a resumed run may change, as ``policy`` says."""
    return field(default_factory=schema, metadata={"resume": policy})


@dataclass
class OptimizerConfig:
    lr: float = constrained(gt=0)
    betas: list[float] = MISSING
    eps: float = constrained(gt=0)
    weight_decay: float = constrained(ge=0)


@dataclass
class ScheduleConfig:
    warmup_steps: int = constrained(ge=0)
    decay: str = constrained(choices=DECAYS)
    gamma: float = constrained(gt=0)
    decay_steps: int = constrained(ge=1)
    min_lr: float = constrained(ge=0)


@dataclass
class MediaConfig:
    griffin_lim_iters: int = constrained(ge=0)  # acoustic models: Griffin-Lim audio of a val synthesis
    vocoder_samples: int = constrained(ge=0)  # vocoders: samples generated from a val mel (0 = none)
    vocoder_fold: GenerateOptions = field(default_factory=GenerateOptions)  # how they are generated


@dataclass
class CudaGraphsConfig:
    enabled: bool = MISSING  # Tacotron 2 on one CUDA GPU: teacher-forced decoder as CUDA graphs
    text_step: int = constrained(ge=1)  # symbols are padded up to a multiple of this
    frame_step: int = constrained(ge=1)  # mel frames are padded up to a multiple of this (and of r)
    max_graphs: int = constrained(ge=1)  # shapes beyond this many run eagerly


@dataclass
class TrainerConfig:
    max_steps: int = resumable(constrained(ge=1))
    batch_size: int = resumable(constrained(ge=1), NEXT_EPOCH)
    grad_accum: int = resumable(constrained(ge=1))  # batches whose gradients make one update
    max_batch_frames: int = resumable(constrained(ge=0), NEXT_EPOCH)  # 0 = no cap
    bucket_size: int = resumable(constrained(ge=1), NEXT_EPOCH)  # in units of batch_size
    optimizer: OptimizerConfig = section(OptimizerConfig)
    schedule: ScheduleConfig = section(ScheduleConfig)
    grad_clip: float = resumable(constrained(gt=0))
    precision: str = resumable(constrained(choices=PRECISIONS))
    tf32: bool = resumable()  # fp32 on CUDA uses TF32 tensor cores
    cuda_graphs: CudaGraphsConfig = section(CudaGraphsConfig)  # speed only
    device: str = resumable(constrained(choices=DEVICES))
    cpu_threads: int = resumable(constrained(ge=0))  # torch intra-op threads per process; 0 = torch's default
    seed: int = MISSING
    ema_decay: float = resumable(constrained(ge=0, lt=1))  # 0 disables
    log_every: int = resumable(constrained(ge=1))
    val_every: int = resumable(constrained(ge=1))
    val_batches: int = resumable(constrained(ge=0))  # 0 = whole val split
    media: MediaConfig = section(MediaConfig)
    checkpoint_every: int = resumable(constrained(ge=1))
    checkpoint_every_minutes: float = resumable(constrained(ge=0))  # also save when this much time passed; 0 = off
    keep_last: int = resumable(constrained(ge=1))
    resume: str = resumable(MISSING, QUIET)  # auto | never | path to a checkpoint
    max_nonfinite: int = resumable(constrained(ge=1))
    # Module prefixes whose parameters do not train (README "Fine-tune a voice"). No resume
    # policy: the optimizer state of a checkpoint only fits the same trainable set.
    freeze: list[str] = field(default_factory=list)


@dataclass
class TrainDataConfig:
    features: str = resumable(MISSING, QUIET)
    normalize_mels: bool = MISSING
    num_workers: int = resumable(constrained(ge=0))
    window_frames: int = constrained(ge=1)  # vocoder training windows, in mel frames


@dataclass
class RunConfig:
    dir: str = resumable(MISSING, QUIET)


@dataclass
class TrainConfig:
    """The whole train config. ``model`` stays a plain dict here; :func:`model_config` gives
    the typed version for the model it names."""

    model: dict[str, Any] = MISSING
    # A run folder or checkpoint whose weights start this run (neurotts.training.init_from).
    # Read at step 0 only: a resumed run continues from its own checkpoints.
    init_from: str | None = resumable(None, QUIET)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)


def resume_policies(schema: type = TrainConfig, prefix: str = "") -> dict[str, str]:
    """Dotted key -> resume policy of every field of ``schema`` that declares one (a section
    that declares one covers all its keys); a key not covered must not change on resume."""
    out = {}
    types = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        name = f"{prefix}{f.name}"
        if "resume" in f.metadata:
            out[name] = f.metadata["resume"]
        elif dataclasses.is_dataclass(types[f.name]):
            out.update(resume_policies(types[f.name], f"{name}."))
    return out


@cache
def _train_policies() -> dict[str, str]:
    return resume_policies(TrainConfig)


def resume_policy(key: str) -> str | None:
    """The resume policy of a dotted train-config key (``trainer.optimizer.lr``), or None
    when a resumed run must keep the checkpoint's value."""
    policies = _train_policies()
    parts = key.split(".")
    for n in range(len(parts), 0, -1):  # the key itself, then the sections holding it
        policy = policies.get(".".join(parts[:n]))
        if policy is not None:
            return policy
    return None


def check_trainer(cfg: TrainerConfig) -> None:
    """Value checks the field metadata cannot express; raises :class:`ConfigError`."""
    if cfg.cuda_graphs.enabled and cfg.device == "cpu":
        raise ConfigError("trainer.cuda_graphs.enabled=true needs a CUDA device, but "
                          "trainer.device=cpu")
    if len(cfg.optimizer.betas) != 2:
        raise ConfigError(f"trainer.optimizer.betas={cfg.optimizer.betas}: give two values")


def _first_pass(overrides: Sequence[str], config_dir: str | Path | None) -> DictConfig:
    """Compose with the audio node missing (the store decides it) and check what is set,
    the model section included; interpolations into ``audio`` stay unresolved."""
    placeholder = OmegaConf.structured(AudioConfig)  # all values '???'
    cfg = compose_config("train", overrides, config_dir, inject={"audio": placeholder},
                         partial=True)
    return _validate_train(cfg)


def _validate_train(cfg: DictConfig) -> DictConfig:
    """Keys, types, ranges and choices of what is set, the model section against its model's
    dataclass; values still missing stay missing."""
    checked = validate(cfg, TrainConfig)
    validate(cfg.model, model_schema(cfg.model.get("name")), prefix="model.")
    return checked


def compose_train_config(
    overrides: Sequence[str], config_dir: str | Path | None, audio: AudioConfig
) -> DictConfig:
    """Compose ``train`` with ``audio`` injected (the store's settings)."""
    return compose_config("train", overrides, config_dir, inject={"audio": to_dict(audio)})


def show_train_config(
    overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> tuple[DictConfig, str | None]:
    """What ``train --cfg`` prints, needing no real path, and a note for the user (or None).

    Without a usable ``data.features`` the ``audio`` node stays ``???`` (and ``n_mels:
    ${audio.n_mels}`` unresolved) rather than showing ``configs/audio/ljspeech.yaml``: the store
    decides these values, and a store prepared with other audio settings would make the shipped
    ones a wrong answer.
    """
    from neurotts.data.store import FeatureStore, StoreError

    first = _first_pass(overrides, config_dir)
    if OmegaConf.is_missing(first.data, "features"):
        return first, "audio is ??? until data.features names a feature store (the store decides it)"
    try:
        store = FeatureStore(first.data.features)
    except StoreError as exc:
        return first, f"{exc}; audio is shown as ??? (it comes from the feature store)"
    composed = compose_config("train", overrides, config_dir, inject={"audio": to_dict(store.audio)},
                              partial=True)
    return _validate_train(composed), None


def load_train_config(
    overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> TrainConfig:
    """Compose, inject the store's audio settings, validate. Raises :class:`ConfigError`."""
    from neurotts.data.store import FeatureStore, StoreError

    first = _first_pass(overrides, config_dir)
    missing = [k for k in missing_keys(first) if not k.startswith("audio.")]
    if missing:
        raise MissingValueError(missing)
    try:
        store = FeatureStore(Path(str(first.data.features)))
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    cfg = to_schema(compose_train_config(overrides, config_dir, store.audio), TrainConfig)
    check_trainer(cfg.trainer)
    # Validate now, so a bad model key or value fails before any work.
    check_data(model_config(cfg.model), DataSpec(len(store.symbols), store.audio))
    if cfg.trainer.cuda_graphs.enabled and cfg.model["name"] != "tacotron2":
        raise ConfigError(f"trainer.cuda_graphs.enabled=true is for model=tacotron2 only, not "
                          f"model={cfg.model['name']}")
    return cfg
