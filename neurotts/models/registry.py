"""The model registry: ``model.name`` -> the model's config dataclass and module.

Everything that builds a model — the training tasks from a feature store, synthesis and the
audit from a checkpoint — goes through :func:`model_config` and :func:`build_model`, so
building a model needs nothing from ``neurotts.training``.

Values the data decides reach every model the same way, as a :class:`DataSpec`: the symbol
count (from the store's or checkpoint's symbol table), the audio settings and the speaker
count (from the store's or checkpoint's speaker table; 0 for one speaker). A model config
repeats some audio values (``n_mels: ${audio.n_mels}``, WaveNet's ``hop_length``) because its
layer sizes depend on them; :func:`check_data` refuses a config whose copy disagrees with the
data (``model.n_mels=64`` over an 80-mel store) with one line, at start-up, instead of a
shape error at the first forward pass.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from neurotts.audio import AudioConfig
from neurotts.config import ConfigError, to_schema


@dataclass(frozen=True)
class ModelEntry:
    module: str  # import path of the model's module
    config: str  # its config dataclass
    model: str  # its nn.Module class
    data_keys: tuple[str, ...]  # config fields that must equal the audio setting of that name
    takes_symbols: bool  # constructor takes n_symbols (the symbol table's size)
    # State-dict key of the (n_symbols, dim) symbol embedding, whose rows follow the symbol
    # table (fine-tuning maps them symbol by symbol); None for a model without one.
    symbol_embedding: str | None = None

    def load(self) -> Any:
        return importlib.import_module(self.module)


# Imported lazily: a model's module is only loaded when that model is used.
MODELS: dict[str, ModelEntry] = {
    "tacotron2": ModelEntry("neurotts.models.tacotron2", "Tacotron2Config", "Tacotron2",
                            ("n_mels",), takes_symbols=True,
                            symbol_embedding="encoder.embedding.weight"),
    "wavenet": ModelEntry("neurotts.models.wavenet.model", "WaveNetConfig", "WaveNet",
                          ("n_mels", "hop_length"), takes_symbols=False),
}


@dataclass(frozen=True)
class DataSpec:
    """What the data decides about a model: the symbol count, the audio settings and the
    speaker count."""

    n_symbols: int
    audio: AudioConfig
    n_speakers: int = 0  # the store's (or checkpoint's) speaker table size; 0: one speaker


def entry(name: object) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name]  # type: ignore[index]


def model_schema(name: object) -> type:
    """The config dataclass of the model called ``name``."""
    e = entry(name)
    return getattr(e.load(), e.config)


def model_config(model: dict[str, Any]) -> Any:
    """The ``model`` section validated as the dataclass of the model it names, with the
    model's own value checks (``check_config`` in its module) turned into :class:`ConfigError`."""
    module = entry(model.get("name")).load()
    cfg = to_schema(model, model_schema(model.get("name")), prefix="model.")
    check = getattr(module, "check_config", None)
    if check is not None:
        try:
            check(cfg)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return cfg


def check_data(cfg: Any, data: DataSpec) -> None:
    """Refuse a model config whose data-derived values disagree with ``data``."""
    for key in entry(cfg.name).data_keys:
        mine, theirs = getattr(cfg, key), getattr(data.audio, key)
        if mine != theirs:
            raise ConfigError(
                f"model.{key}={mine}, but the data has audio.{key}={theirs}: model.{key} follows "
                "the feature store (or checkpoint); drop the override or prepare a store with it")


def build_model(cfg: Any, data: DataSpec) -> nn.Module:
    """A new (untrained, CPU) model for the typed config ``cfg`` and ``data``."""
    check_data(cfg, data)
    e = entry(cfg.name)
    cls = getattr(e.load(), e.model)
    if e.takes_symbols:
        return cls(cfg, n_symbols=data.n_symbols, n_speakers=data.n_speakers)
    return cls(cfg, n_speakers=data.n_speakers)
