"""Task adaptors: everything model-specific the training engine needs, behind one interface.

The loop in :mod:`neurotts.training.loop` knows nothing about Tacotron 2 or WaveNet. A task
builds the model, the datasets and collate function, computes the loss of a batch, and draws
validation media. Adding a model means a line in :data:`neurotts.models.registry.MODELS` and a
task module ``neurotts/training/NAME_task.py`` whose ``TASK`` is its task class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from neurotts.data.store import FeatureStore
from neurotts.models.registry import model_config
from neurotts.training.config import TrainConfig
from neurotts.training.logging import TrainLogger


class TrainDataset(Protocol):
    """A map-style dataset that also tells the bucketing sampler each item's cost."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...
    def lengths(self) -> list[int]: ...

    def check_files(self) -> None:
        """Raise a one-line error if a file the dataset will read is missing or truncated."""
        ...


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


def task_class(name: str) -> Callable[..., Task]:
    """The task of model ``name``: the class ``TASK`` of module ``neurotts.training.NAME_task``.
    Found by that naming rule, not a second table keyed by model name, so the model registry
    (:data:`neurotts.models.registry.MODELS`) stays the one list of models; imported lazily, so
    a task module loads only when its model is trained."""
    module = importlib.import_module(f"neurotts.training.{name}_task")
    return module.TASK


def build_task(cfg: TrainConfig, store: FeatureStore) -> Task:
    model_cfg = model_config(cfg.model)
    return task_class(model_cfg.name)(model_cfg, store, cfg)


def to_device(batch: NamedTuple, device: torch.device) -> NamedTuple:
    """Move every tensor field of a batch tuple."""
    return type(batch)(*(t.to(device, non_blocking=True) for t in batch))
