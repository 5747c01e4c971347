"""What a checkpoint saves and restores (the trainable parts, the loop's counters and every
RNG), and when the loop writes one (:class:`Checkpoints`). The file format itself lives in
:mod:`neurotts.checkpoint`; which checkpoint a run continues from, in
:mod:`neurotts.training.resume`."""

from __future__ import annotations

import copy
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurotts import checkpoint as ckpt
from neurotts.checkpoint import CheckpointManager, Key
from neurotts.config import to_dict
from neurotts.data.store import FeatureStore
from neurotts.files import disk_full
from neurotts.training.config import TrainConfig, TrainerConfig
from neurotts.training.distributed import DistEnv, gather_objects, on_main
from neurotts.training.errors import TrainingError
from neurotts.training.logging import TrainLogger
from neurotts.training.optim import EMA, build_optimizer, build_scaler, build_scheduler, freeze
from neurotts.training.tasks import Task


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
        freeze(model, cfg.freeze)  # before the optimizer, which leaves frozen parameters out
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
    init_from: dict[str, Any] | None = None  # what a fine-tune started from (kept in checkpoints)


def payload(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
            state: TrainState, env: DistEnv, val_loss: float | None) -> dict[str, Any]:
    """The checkpoint dict (see :mod:`neurotts.checkpoint`). Collective under DDP:
    every rank must call it (RNG states are gathered from all ranks)."""
    rng = gather_objects(capture_rng(), env)
    return {
        Key.FORMAT: ckpt.FORMAT, Key.VERSION: ckpt.VERSION,
        Key.MODEL_NAME: task.name,
        Key.MODEL: parts.model.state_dict(),
        Key.EMA: None if parts.ema is None else parts.ema.state_dict(),
        Key.CONFIG: {k: v for k, v in to_dict(cfg).items() if k != "audio"},  # audio: below, once
        Key.SYMBOLS: list(store.symbols),
        Key.TEXT: to_dict(store.text),
        Key.AUDIO: to_dict(store.audio),
        **task.describe(),
        Key.STEP: state.step, Key.EPOCH: state.epoch,
        Key.GLOBAL_BATCHES_IN_EPOCH: state.batch_in_epoch * env.world_size,
        Key.WORLD_SIZE: env.world_size,
        Key.OPTIMIZER: parts.optimizer.state_dict(),
        Key.SCHEDULER: parts.scheduler.state_dict(),
        Key.SCALER: parts.scaler.state_dict(),
        Key.RNG: rng,
        Key.BEST_VAL_LOSS: state.best_val_loss,
        Key.BEST_STEP: state.best_step,
        Key.BEST_ID: state.best_id,
        Key.VAL_LOSS: val_loss,
        Key.NONFINITE_STEPS: state.nonfinite_steps,
        Key.INIT_FROM: state.init_from,
    }


def restore(path: Path, saved: dict[str, Any], task: Task, parts: Trainables, state: TrainState,
            env: DistEnv) -> None:
    """Load a checkpoint's state back, including this rank's RNG state. The optimizer and
    schedule then take this run's hyperparameters (:func:`apply_hyperparameters`)."""
    if saved[Key.MODEL_NAME] != task.name:
        raise TrainingError(f"{path}: a {saved[Key.MODEL_NAME]} checkpoint, but model={task.name}")
    try:
        parts.model.load_state_dict(saved[Key.MODEL])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise TrainingError(f"{path}: weights do not fit this model: {first}") from None
    parts.optimizer.load_state_dict(saved[Key.OPTIMIZER])
    parts.scheduler.load_state_dict(saved[Key.SCHEDULER])
    if saved[Key.SCALER] and parts.scaler.is_enabled():  # empty when saved without fp16
        parts.scaler.load_state_dict(saved[Key.SCALER])
    if parts.ema is not None:
        parts.ema.load_state_dict(saved[Key.EMA] if saved[Key.EMA] is not None else saved[Key.MODEL])
    state.step, state.epoch = saved[Key.STEP], saved[Key.EPOCH]
    state.batch_in_epoch = saved[Key.GLOBAL_BATCHES_IN_EPOCH] // env.world_size
    state.best_val_loss = saved[Key.BEST_VAL_LOSS]
    # Optional entries: absent from checkpoints written before they existed.
    state.best_step, state.best_id = saved.get(Key.BEST_STEP), saved.get(Key.BEST_ID)
    state.init_from = saved.get(Key.INIT_FROM)
    state.nonfinite_steps = saved[Key.NONFINITE_STEPS]
    rng = saved[Key.RNG]
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


# ------------------------------------------------------------------------------ saving


def write_failed(exc: OSError, newest: Path | None, newest_step: int) -> str:
    """One line for a failed write: what, and where training can continue from."""
    where = (f"the newest intact checkpoint is step {newest_step} ({newest})"
             if newest is not None else "no checkpoint was written yet")
    what = (f"disk full while writing {exc.filename}" if disk_full(exc)
            else f"cannot write {exc.filename} ({exc.strerror})")
    return f"{what}; {where}; run the same command again to resume once it is fixed"


class Checkpoints:
    """Saving during a run: ``step_N.pt`` every ``checkpoint_every`` steps or ``minutes``,
    ``best.pt`` (only over a best.pt this run descends from: ``replace_best``, decided once
    at start by :func:`neurotts.training.resume.write_run_files`), and the newest checkpoint
    written or resumed from (for messages). ``snapshot(val_loss)`` builds the checkpoint of
    the run as it is now (:func:`payload`, collective under DDP). Writes happen on rank 0; a
    failed write stops every rank with one line."""

    def __init__(self, manager: CheckpointManager, env: DistEnv, minutes: float,
                 snapshot: Callable[[float | None], dict[str, Any]], state: TrainState,
                 newest: Path | None, replace_best: bool):
        self.manager, self.env, self.minutes = manager, env, minutes
        self.snapshot, self.state, self.replace_best = snapshot, state, replace_best
        self.newest, self.newest_step = newest, state.step
        self.last_save = time.monotonic()

    def time_due(self) -> bool:
        return self.minutes > 0 and time.monotonic() - self.last_save >= 60 * self.minutes

    def write_failed(self, exc: OSError) -> str:
        return write_failed(exc, self.newest, self.newest_step)

    def raise_write_failed(self, exc: OSError) -> None:
        raise TrainingError(self.write_failed(exc))

    def _write(self, write: Callable[[], Path]) -> Path | None:
        def guarded() -> Path:
            try:
                return write()
            except OSError as exc:
                raise TrainingError(self.write_failed(exc)) from None

        return on_main(guarded, self.env)

    def save_periodic(self, val_loss: float | None) -> Path | None:
        """``step_N.pt`` (collective under DDP); its path on the main rank, else None."""
        data = self.snapshot(val_loss)
        path = self._write(lambda: self.manager.save(data))
        self.newest, self.newest_step, self.last_save = path, self.state.step, time.monotonic()
        return path

    def save_best(self, val_loss: float, log: TrainLogger) -> bool:
        """Write best.pt if ``val_loss`` is the lowest so far; whether it is."""
        state = self.state
        if not improved(val_loss, state.best_val_loss):
            return False
        state.best_val_loss, state.best_step = val_loss, state.step
        if not self.replace_best:
            log.info(f"step {state.step}: {self.manager.best} is kept (not from this run's history)")
            return True
        state.best_id = uuid.uuid4().hex  # os.urandom: leaves the training RNG streams alone
        data = self.snapshot(val_loss)
        self._write(lambda: self.manager.save_best(data))
        self.newest, self.newest_step = self.manager.best, state.step
        return True
