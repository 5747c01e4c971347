"""Task adaptors: everything model-specific the training engine needs, behind one interface.

The loop in :mod:`neurotts.training.loop` knows nothing about Tacotron 2 or WaveNet. A task
builds the model, the datasets and collate function, computes the loss of a batch, and draws
validation media. ``MODEL_SCHEMAS`` maps ``model.name`` to the model's config dataclass and
task class; adding a model means adding a task module and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from omegaconf import OmegaConf
from torch import nn

from neurotts.config import CONFIG_DIR, ConfigError, to_schema
from neurotts.data.store import FeatureStore
from neurotts.training.config import TrainConfig
from neurotts.training.logging import TrainLogger


class TrainDataset(Protocol):
    """A map-style dataset that also tells the bucketing sampler each item's cost."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...
    def lengths(self) -> list[int]: ...


class Task(Protocol):
    """What the engine calls. ``model`` is built on the CPU; the engine moves it."""

    name: str
    model: nn.Module

    def dataset(self, split: str, seed: int) -> TrainDataset: ...

    def collate(self, items: list[Any]) -> NamedTuple: ...

    def set_epoch(self, dataset: TrainDataset, epoch: int) -> None: ...

    def loss(self, model: nn.Module, batch: Any, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward + loss; ``model`` may be DDP-wrapped. Total and named terms, fp32."""
        ...

    def frames(self, batch: Any) -> int:
        """Mel frames the batch covers (for frames/s)."""
        ...

    def log_media(self, model: nn.Module, batch: Any, log: TrainLogger, step: int) -> None:
        """Images/audio of a validation batch; ``model`` is plain (EMA weights when kept)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Extra checkpoint entries (e.g. mel normalisation)."""
        ...


def _tacotron2() -> tuple[type, Callable[..., Task]]:
    from neurotts.models.tacotron2 import Tacotron2Config
    from neurotts.training.tacotron2_task import Tacotron2Task

    return Tacotron2Config, Tacotron2Task


def _wavenet() -> tuple[type, Callable[..., Task]]:
    from neurotts.models.wavenet import WaveNetConfig
    from neurotts.training.wavenet_task import WaveNetTask

    return WaveNetConfig, WaveNetTask


# Imported lazily: a model module is only loaded when it is trained.
MODEL_SCHEMAS: dict[str, Callable[[], tuple[type, Callable[..., Task]]]] = {
    "tacotron2": _tacotron2,
    "wavenet": _wavenet,
}


def _lookup(model: dict[str, Any]) -> tuple[type, Callable[..., Task]]:
    name = model.get("name")
    if name not in MODEL_SCHEMAS:
        raise ConfigError(f"model.name={name!r}: choose one of {', '.join(MODEL_SCHEMAS)}")
    return MODEL_SCHEMAS[name]()


def model_config(model: dict[str, Any]) -> Any:
    """The ``model`` section validated as the dataclass of the model it names."""
    schema, _ = _lookup(model)
    try:
        return to_schema(model, schema)
    except ConfigError as exc:
        raise ConfigError(f"model ({model['name']}): {exc}") from None


def shipped_model_config(name: str, audio: dict[str, Any] | None = None,
                         overrides: Sequence[str] = ()) -> Any:
    """``configs/model/<name>.yaml`` typed as its model's dataclass, with ``${audio.*}``
    resolved against ``audio`` (default: ``configs/audio/ljspeech.yaml``) and dotted
    ``overrides`` (``"encoder.lstm_dim=64"``) applied. For benchmarks and tests that build a
    model without a feature store; training composes through Hydra instead."""
    if audio is None:
        audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    root = OmegaConf.create({"audio": audio, "model": OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")})
    root = OmegaConf.merge(root, OmegaConf.from_dotlist([f"model.{o}" for o in overrides]))
    OmegaConf.resolve(root)
    return model_config(OmegaConf.to_container(root.model))


# A ~0.16M-parameter Tacotron 2 (overrides of configs/model/tacotron2.yaml) that learns an
# alignment on a handful of real clips within a few hundred CPU steps: the model of
# bench/alignment_speed.py and of the alignment tests, so both measure the same thing.
ALIGNMENT_PROBE_TACOTRON2 = (
    "encoder.embedding_dim=32",
    "encoder.conv_channels=32",
    "encoder.lstm_dim=32",
    "encoder.dropout=0.0",
    "decoder.prenet_dims=[32,32]",
    "decoder.attention_rnn_dim=64",
    "decoder.decoder_rnn_dim=64",
    "decoder.zoneout=0.0",
    "attention.dim=32",
    "attention.location.n_filters=8",
    "attention.location.kernel_size=15",
    "attention.dca.n_static_filters=4",
    "attention.dca.static_kernel_size=11",
    "attention.dca.n_dynamic_filters=4",
    "attention.dca.dynamic_kernel_size=11",
    "attention.multihead.n_heads=2",
    "attention.multihead.n_filters=8",
    "attention.multihead.kernel_size=15",
    "postnet.channels=32",
    "postnet.layers=3",
    "reduction_factor=3",
)


def build_task(cfg: TrainConfig, store: FeatureStore) -> Task:
    _, task_cls = _lookup(cfg.model)
    return task_cls(model_config(cfg.model), store, cfg)


def to_device(batch: NamedTuple, device: torch.device) -> NamedTuple:
    """Move every tensor field of a batch tuple."""
    return type(batch)(*(t.to(device, non_blocking=True) for t in batch))
