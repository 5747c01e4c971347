"""What a checkpoint saves and restores: the trainable parts, the loop's counters and every
RNG. The file format itself lives in :mod:`neurotts.checkpoint`."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurotts import checkpoint as ckpt
from neurotts.config import to_dict
from neurotts.data.store import FeatureStore
from neurotts.training.config import TrainConfig, TrainerConfig
from neurotts.training.distributed import DistEnv, gather_objects
from neurotts.training.optim import EMA, build_optimizer, build_scaler, build_scheduler
from neurotts.training.tasks import Task


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. only non-finite steps); the message says why."""


class TrainingInterrupted(Exception):
    """A stop was requested by a signal (Ctrl-C, SIGTERM); a checkpoint of the last complete
    step was written, and running the same command again resumes from it."""

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoint: Path | None):
        self.signal_name, self.signal_number = signal_name, signal_number
        self.step, self.checkpoint = step, checkpoint
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"stopped by {signal_name} after step {step}{where}; run the same "
                         "command again to resume")


@dataclass
class Trainables:
    """Model and everything that is updated with it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: EMA | None

    @classmethod
    def build(cls, model: nn.Module, cfg: TrainerConfig, precision: str,
              device: torch.device) -> Trainables:
        optimizer = build_optimizer(model, cfg.optimizer)
        scheduler = build_scheduler(optimizer, cfg.schedule, cfg.optimizer.lr, cfg.max_steps)
        ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        return cls(model, optimizer, scheduler, build_scaler(precision, device), ema)

    def synthesis_model(self) -> nn.Module:
        """The weights to draw validation media with: the EMA's when kept."""
        if self.ema is None:
            return self.model
        averaged = copy.deepcopy(self.model)
        averaged.load_state_dict(self.ema.state_dict())
        return averaged


@dataclass
class TrainState:
    step: int = 0  # batches processed (skipped ones included)
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch this rank has consumed
    best_val_loss: float = math.inf
    nonfinite_steps: int = 0  # total skipped
    nonfinite_streak: int = 0  # consecutive skipped


def payload(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
            state: TrainState, env: DistEnv, val_loss: float | None) -> dict[str, Any]:
    """The checkpoint dict (see :mod:`neurotts.checkpoint`). Collective under DDP:
    every rank must call it (RNG states are gathered from all ranks)."""
    rng = gather_objects(capture_rng(), env)
    return {
        "format": ckpt.FORMAT, "version": ckpt.VERSION,
        "model_name": task.name,
        "model": parts.model.state_dict(),
        "ema": None if parts.ema is None else parts.ema.state_dict(),
        "config": to_dict(cfg),
        "symbols": list(store.symbols),
        "text": to_dict(store.text),
        "audio": to_dict(store.audio),
        **task.describe(),
        "step": state.step, "epoch": state.epoch,
        "global_batches_in_epoch": state.batch_in_epoch * env.world_size,
        "world_size": env.world_size,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": rng,
        "best_val_loss": state.best_val_loss,
        "val_loss": val_loss,
        "nonfinite_steps": state.nonfinite_steps,
    }


def find_resume(choice: str, manager: ckpt.CheckpointManager) -> Path | None:
    """``auto``: newest checkpoint in the run folder, if any; ``never``: none (and refuse a
    folder that has some); anything else: that checkpoint file."""
    latest = manager.latest()
    if choice == "auto":
        return latest
    if choice == "never":
        if latest is not None:
            raise TrainingError(f"{manager.folder} already has checkpoints and trainer.resume=never; "
                                "use a new run.dir or trainer.resume=auto")
        return None
    return Path(choice)


def config_changes(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """``key: saved -> current`` for every leaf that differs between two nested dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            out += config_changes(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if saved == current else [f"{prefix}: {saved!r} -> {current!r}"]


def restore(path: Path, task: Task, parts: Trainables, state: TrainState, env: DistEnv,
            model_cfg: dict[str, Any] | None = None) -> None:
    """Load everything back, including this rank's RNG state. ``model_cfg`` (this run's
    model config) names what changed when the saved weights do not fit."""
    saved = ckpt.load_checkpoint(path, map_location=env.device)
    if saved["model_name"] != task.name:
        raise TrainingError(f"{path}: a {saved['model_name']} checkpoint, but model={task.name}")
    try:
        parts.model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        changes = config_changes(saved["config"].get("model", {}), model_cfg or {}, "model")
        if model_cfg is not None and changes:
            raise TrainingError(
                f"{path}: its model differs from this run's ({'; '.join(changes)}): set those "
                "back to resume, or use a new run.dir") from None
        first = str(exc).splitlines()[0]
        raise TrainingError(f"{path}: weights do not fit this model (model config changed?): {first}") from None
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["scaler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(saved["ema"] if saved["ema"] is not None else saved["model"])
    state.step, state.epoch = saved["step"], saved["epoch"]
    state.batch_in_epoch = saved["global_batches_in_epoch"] // env.world_size
    state.best_val_loss = saved["best_val_loss"]
    state.nonfinite_steps = saved["nonfinite_steps"]
    rng = saved["rng"]
    restore_rng(rng[env.rank] if env.rank < len(rng) else rng[0])


def improved(val_loss: float, best: float) -> bool:
    return math.isfinite(val_loss) and val_loss < best


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain containers."""
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "python": [version, list(mt_state), gauss],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def restore_rng(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": np_state["key"].cpu().numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"],
    })
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])
