"""Model configs as the shipped YAML composes them, for tests that build a model without a
feature store (training composes through Hydra instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from neurotts.config import CONFIG_DIR
from neurotts.models.registry import model_config


def shipped_model_config(name: str, audio: dict[str, Any] | None = None,
                         overrides: Sequence[str] = ()) -> Any:
    """``configs/model/<name>.yaml`` typed as its model's dataclass, with ``${audio.*}``
    resolved against ``audio`` (default: ``configs/audio/ljspeech.yaml``) and dotted
    ``overrides`` (``"encoder.lstm_dim=64"``) applied."""
    if audio is None:
        audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    model = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    root = OmegaConf.create({"audio": audio, "model": model})
    root = OmegaConf.merge(root, OmegaConf.from_dotlist([f"model.{o}" for o in overrides]))
    OmegaConf.resolve(root)
    return model_config(OmegaConf.to_container(root.model))
