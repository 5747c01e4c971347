"""What a checkpoint saves and restores: the trainable parts, the loop's counters and every
RNG. The file format itself lives in :mod:`neurotts.checkpoint`."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurotts import checkpoint as ckpt
from neurotts.config import to_dict
from neurotts.data.store import FeatureStore
from neurotts.errors import IncompleteError, UserError
from neurotts.training.config import (
    RESUME_MAY_CHANGE,
    RESUME_NEXT_EPOCH,
    TrainConfig,
    TrainerConfig,
)
from neurotts.training.distributed import DistEnv, gather_objects
from neurotts.training.optim import EMA, build_optimizer, build_scaler, build_scheduler
from neurotts.training.tasks import Task


class TrainingError(IncompleteError, RuntimeError):
    """Training cannot go on (e.g. only non-finite steps); the message says why."""


class TrainingInterrupted(UserError):
    """A stop was requested by a signal (Ctrl-C, SIGTERM); a checkpoint of the last complete
    step was written, and running the same command again resumes from it. Every rank stops
    alike (the stop is agreed between ranks); rank 0 says so, as a plain line."""

    every_rank = True
    label = None

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoint: Path | None):
        self.signal_name, self.signal_number = signal_name, signal_number
        self.exit_code = 128 + signal_number
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
    best_step: int | None = None  # step of best_val_loss
    best_id: str | None = None  # the best.pt this state descends from (see save_best)
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
        "best_step": state.best_step,
        "best_id": state.best_id,
        "val_loss": val_loss,
        "nonfinite_steps": state.nonfinite_steps,
    }


# ------------------------------------------------------------------------------ resume


@dataclass
class ResumePlan:
    """Where a run starts: the checkpoint it continues from (None: step 0), the damaged
    checkpoints skipped on the way, and what is printed about it."""

    path: Path | None
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def choose_resume(choice: str, manager: ckpt.CheckpointManager,
                  loaded: dict[str, Any]) -> ResumePlan:
    """``auto``: the newest usable checkpoint of the run folder (best.pt included), skipping
    damaged ones; none when the folder has no checkpoint; an error when it has some but none
    is usable (a run never silently starts over). ``never``: none, and refuse a folder that
    has checkpoints. Anything else: that file. The chosen payload is put in ``loaded``."""
    existing = manager.existing()
    if choice == "never":
        if existing:
            raise TrainingError(f"{manager.folder} already has checkpoints and trainer.resume=never; "
                                "use a new run.dir or trainer.resume=auto")
        return ResumePlan(None)
    if choice != "auto":
        path = Path(choice).expanduser()
        if existing and path.resolve().parent != manager.folder.resolve():
            raise TrainingError(f"{manager.folder} already has checkpoints of its own; continuing "
                                f"{path} there would mix two runs: use a new run.dir")
        loaded["payload"] = ckpt.load_checkpoint(path)
        return ResumePlan(path)
    plan = ResumePlan(None)
    for path in manager.candidates():
        try:
            loaded["payload"] = ckpt.load_checkpoint(path)
        except ckpt.CheckpointError as exc:
            plan.damaged.append((path, str(exc)))
            continue
        plan.path = path
        return plan
    if plan.damaged:
        listed = "; ".join(why for _, why in plan.damaged)
        raise TrainingError(f"no usable checkpoint in {manager.folder} ({listed}); move them away "
                            "to start this run.dir from step 0, or use a new run.dir")
    return plan


def diff_configs(saved: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, saved, current)`` for every leaf that differs; a key the saved config lacks
    (a setting added after it was written) has ``saved`` = :data:`ABSENT`."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            if key not in current:
                continue  # a setting this version no longer has
            name = f"{prefix}.{key}" if prefix else str(key)
            out += diff_configs(saved.get(key, ABSENT), current[key], name)
        return out
    return [] if saved == current else [(prefix, saved, current)]


ABSENT = "(not in the checkpoint)"


def check_resume_config(path: Path, saved: dict[str, Any], cfg: TrainConfig, store: FeatureStore,
                        task: Task, world_size: int) -> tuple[list[str], bool]:
    """Settings that changed since the checkpoint: the ones a resume may change as printable
    lines, and whether the batches change (see :data:`RESUME_NEXT_EPOCH`); anything else
    raises :class:`TrainingError` naming the keys. Writes nothing."""
    changes = diff_configs(saved["config"], to_dict(cfg))
    refused = [f"{k}: {old!r} -> {new!r}" for k, old, new in changes
               if old is not ABSENT and not k.startswith(RESUME_MAY_CHANGE)]
    if refused:
        raise TrainingError(f"{path}: these settings differ from the checkpoint's and cannot change "
                            f"on resume ({'; '.join(refused)}): set them back to resume, or use a new "
                            "run.dir")
    same_store = (saved["symbols"] == list(store.symbols) and saved["audio"] == to_dict(store.audio)
                  and same_tensors(saved.get("mel_norm", {}), task.describe().get("mel_norm", {})))
    if not same_store:
        raise TrainingError(f"{path}: was trained on other features (symbols, audio settings or "
                            f"mel statistics differ from {cfg.data.features}); use the same store "
                            "to resume, or a new run.dir")
    step = saved["step"]
    shown = [f"{k} {_short(old)} -> {_short(new)} from step {step}" for k, old, new in changes
             if not k.startswith(("trainer.resume", "run.dir", "data.features", "audio."))]
    new_batches = any(k.startswith(RESUME_NEXT_EPOCH) for k, _, _ in changes)
    if saved["world_size"] != world_size:
        shown.append(f"processes {saved['world_size']} -> {world_size} from step {step}")
        new_batches = True
    return shown, new_batches


def _short(value: Any) -> str:
    if value is ABSENT:
        return "(not set)"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor) or isinstance(other, torch.Tensor):
            if not torch.equal(torch.as_tensor(value).cpu(), torch.as_tensor(other).cpu()):
                return False
        elif value != other:
            return False
    return True


def restore(path: Path, saved: dict[str, Any], task: Task, parts: Trainables, state: TrainState,
            env: DistEnv) -> None:
    """Load a checkpoint's state back, including this rank's RNG state. The optimizer and
    schedule then take this run's hyperparameters (:func:`apply_hyperparameters`)."""
    if saved["model_name"] != task.name:
        raise TrainingError(f"{path}: a {saved['model_name']} checkpoint, but model={task.name}")
    try:
        parts.model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise TrainingError(f"{path}: weights do not fit this model: {first}") from None
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"] and parts.scaler.is_enabled():  # empty when saved without fp16
        parts.scaler.load_state_dict(saved["scaler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(saved["ema"] if saved["ema"] is not None else saved["model"])
    state.step, state.epoch = saved["step"], saved["epoch"]
    state.batch_in_epoch = saved["global_batches_in_epoch"] // env.world_size
    state.best_val_loss = saved["best_val_loss"]
    # Optional entries: absent from checkpoints written before they existed.
    state.best_step, state.best_id = saved.get("best_step"), saved.get("best_id")
    state.nonfinite_steps = saved["nonfinite_steps"]
    rng = saved["rng"]
    restore_rng(rng[env.rank] if env.rank < len(rng) else rng[0])


def apply_hyperparameters(parts: Trainables, cfg: TrainerConfig) -> None:
    """Put this run's optimizer settings and learning rate into restored optimizer and
    schedule state (``load_state_dict`` brings back the saved ones). With unchanged settings
    this reproduces the saved values exactly; changed ones act from the next update."""
    opt = cfg.optimizer
    groups = parts.optimizer.param_groups
    for i, group in enumerate(groups):
        group["initial_lr"] = opt.lr
        group["betas"], group["eps"] = (opt.betas[0], opt.betas[1]), opt.eps
        if i == 0:  # build_optimizer: the first group decays, the second (vectors) does not
            group["weight_decay"] = opt.weight_decay
    scheduler = parts.scheduler
    scheduler.base_lrs = [opt.lr for _ in groups]
    # LambdaLR: lr = base * factor(last_epoch), the schedule closure being this run's.
    lrs = [base * fn(scheduler.last_epoch)
           for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, lr in zip(groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports


def start_next_epoch(state: TrainState) -> str | None:
    """After a change of the batches (batch size, process count): continue with a new
    epoch; the rest of the current one is skipped. Returns what to print, if anything."""
    if state.batch_in_epoch == 0:
        return None
    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return (f"the batches change: continuing with epoch {state.epoch} (the rest of the current "
            "one is skipped)")


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
