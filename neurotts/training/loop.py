"""The training loop. :func:`train` reads top to bottom like a script; model-specific work is
the task's (see :mod:`neurotts.training.tasks`), bookkeeping lives in named helpers.

Exact resume: the sampler's batches are a function of (seed, epoch) and the checkpoint holds
the position in the epoch; every RNG (python, numpy, torch, CUDA; one set per rank) is saved
after the step and restored; the DataLoader draws its worker seeds from a generator of its
own, and validation runs inside ``torch.random.fork_rng``, so neither perturbs the stream
that dropout and the prenet draw from. On CPU a resumed run repeats the uninterrupted run's
per-step losses to float rounding (tests/test_training.py checks 1e-6).

Stopping: Ctrl-C or SIGTERM asks the run to stop after the current step; every rank agrees
on the step (one all-reduce of a flag per step), a checkpoint of that step is written, and
:class:`~neurotts.training.state.TrainingInterrupted` is raised (the CLI exits 128 + signal).
Running the same command again resumes exactly there. A second Ctrl-C stops at once.

Non-finite steps: when the loss or the (all-reduced, hence identical on every rank) gradient
norm is not finite, the optimizer step is skipped on every rank, the step is counted and
logged, and weights never see it; ``trainer.max_nonfinite`` in a row stop the run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from neurotts.checkpoint import CheckpointManager
from neurotts.config import to_dict, to_yaml
from neurotts.data.loader import BucketBatchSampler
from neurotts.data.store import FeatureStore
from neurotts.files import atomic_write_text
from neurotts.training import distributed
from neurotts.training.config import TrainConfig, TrainerConfig
from neurotts.training.distributed import DistEnv
from neurotts.training.logging import TrainLogger
from neurotts.training.optim import autocast, resolve_precision, set_tf32
from neurotts.training.state import (
    Trainables,
    TrainingError,
    TrainingInterrupted,
    TrainState,
    find_resume,
    improved,
    payload,
    restore,
)
from neurotts.training.tasks import Task, TrainDataset, build_task, to_device


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    grad_norm: float
    updated: bool


@dataclass
class TrainSummary:
    step: int
    resumed_from: int | None
    nonfinite_steps: int
    best_val_loss: float
    run_dir: Path


@dataclass
class Meter:
    """Averages of the steps since the last log line."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    frames: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: StepResult, frames: int) -> None:
        self.frames += frames
        if result.updated:
            self.steps += 1
            for name, value in {"loss": result.loss, "grad_norm": result.grad_norm,
                                **result.terms}.items():
                self.sums[name] = self.sums.get(name, 0.0) + value

    def flush(self, interval_steps: int) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        out.update(steps_per_s=interval_steps / seconds, frames_per_s=self.frames / seconds)
        self.sums, self.steps, self.frames, self.started = {}, 0, 0, time.perf_counter()
        return out


def train(cfg: TrainConfig, console: Console,
          make_task: Callable[[TrainConfig, FeatureStore], Task] = build_task) -> TrainSummary:
    """Train ``cfg.model`` on ``cfg.data.features`` into ``cfg.run.dir``; see the module doc."""
    env = distributed.setup(cfg.trainer.device)
    try:
        return _train(cfg, env, console, make_task)
    finally:
        distributed.teardown(env)


def _train(cfg: TrainConfig, env: DistEnv, console: Console,
           make_task: Callable[[TrainConfig, FeatureStore], Task]) -> TrainSummary:
    tc = cfg.trainer
    if tc.cpu_threads > 0:
        torch.set_num_threads(tc.cpu_threads)
    store = FeatureStore(cfg.data.features)
    seed_everything(tc.seed, env.rank)
    task = make_task(cfg, store)
    precision = resolve_precision(tc.precision, env.device, task.name)
    set_tf32(tc.tf32, env.device)
    parts = Trainables.build(task.model.to(env.device), tc, precision, env.device)
    run_dir = prepare_run_dir(cfg, env)
    manager = CheckpointManager(run_dir / "checkpoints", tc.keep_last)
    state = TrainState()
    resume_path = find_resume(tc.resume, manager)
    resumed_from = None
    if resume_path is not None:
        restore(resume_path, task, parts, state, env, to_dict(cfg.model))
        resumed_from = state.step
    model = wrap_ddp(parts.model, env)
    train_set, val_set = task.dataset("train", tc.seed), task.dataset("val", tc.seed)
    sampler, loader = make_loader(train_set, task, tc, cfg.data.num_workers, env, train=True)
    _, val_loader = make_loader(val_set, task, tc, cfg.data.num_workers, env, train=False)
    log = TrainLogger(run_dir, console, tc.max_steps, env.is_main)
    log.info(describe_start(task, parts, precision, env, len(train_set), len(val_set)))
    if resume_path is not None:
        log.info(f"resumed from step {state.step} ({resume_path})")
    if state.step >= tc.max_steps:
        log.info(f"already at step {state.step} >= trainer.max_steps={tc.max_steps}; nothing to do")
    meter, last_logged = Meter(), state.step
    stream = batches_from(loader, sampler, task, train_set, state)
    log.start(state.step)
    stop = StopRequest(announce=env.is_main)
    try:
        with stop:
            while state.step < tc.max_steps:
                batches = [to_device(next(stream), env.device) for _ in range(tc.grad_accum)]
                result = train_step(model, parts, task, batches, precision, tc.grad_clip,
                                    state.step, env.device)
                state.step += 1
                if result.updated:  # the schedule counts updates, not skipped steps
                    parts.scheduler.step()
                meter.add(result, sum(task.frames(batch) for batch in batches))
                check_finite(result, state, tc, log)
                last = state.step >= tc.max_steps
                log.advance(state.step, result.loss)
                if state.step % tc.log_every == 0 or last:
                    log_train(log, meter, parts, state, state.step - last_logged)
                    last_logged = state.step
                val_loss = None
                if state.step % tc.val_every == 0 or last:
                    val_loss = validate_and_log(model, parts, task, val_loader, precision, tc,
                                                env, log, state.step)
                    save_best(cfg, task, store, parts, state, env, manager, val_loss, log)
                # A stop request (Ctrl-C, SIGTERM) on any rank ends the run here, at a step
                # boundary, with a checkpoint that resumes exactly.
                stopping = not last and distributed.any_rank(stop.signal is not None, env)
                saved = None
                if state.step % tc.checkpoint_every == 0 or last or stopping:
                    saved = save_periodic(cfg, task, store, parts, state, env, manager, val_loss)
                if stopping:
                    raise stop.interrupted(state.step, saved)
    finally:
        log.close()
    return TrainSummary(state.step, resumed_from, state.nonfinite_steps, state.best_val_loss,
                        run_dir)


# ------------------------------------------------------------------------------ stopping


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption, torchrun shutting down) become a
    request to stop after the current step with a checkpoint; a second Ctrl-C aborts at once
    without one. Handlers are installed only in the main thread and restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_S = 1.0  # a second SIGINT sooner than this is the same request delivered twice

    def __init__(self, announce: bool):
        self.signal: signal.Signals | None = None
        self._when = 0.0
        self.announce = announce
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            # Asked again: stop now. Under torchrun a terminal's Ctrl-C reaches a worker twice
            # (from the terminal and forwarded by torchrun) within milliseconds: that is one.
            if signum == signal.SIGINT and time.monotonic() - self._when > self.REPEAT_S:
                raise KeyboardInterrupt
            return
        self.signal, self._when = signal.Signals(signum), time.monotonic()
        if self.announce:
            sys.stderr.write(f"\n{self.signal.name}: stopping after this step and saving a "
                             "checkpoint (Ctrl-C again stops at once, without one)\n")

    def interrupted(self, step: int, checkpoint: Path | None) -> TrainingInterrupted:
        sig = self.signal or signal.SIGTERM  # only another rank was signalled
        return TrainingInterrupted(sig.name, int(sig), step, checkpoint)


# ------------------------------------------------------------------------------ set-up helpers


def seed_everything(seed: int, rank: int) -> None:
    import random

    import numpy as np

    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)  # also seeds every CUDA device


def prepare_run_dir(cfg: TrainConfig, env: DistEnv) -> Path:
    run_dir = Path(cfg.run.dir)
    if env.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    distributed.barrier(env)
    return run_dir


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    if not env.distributed:
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def make_loader(dataset: TrainDataset, task: Task, tc: TrainerConfig, num_workers: int, env: DistEnv,
                train: bool) -> tuple[BucketBatchSampler, DataLoader]:
    """Bucketed loader. Training batches are shuffled and every rank gets the same number;
    validation is in length order, each rank taking a share (all batches kept)."""
    sampler = BucketBatchSampler(dataset.lengths(), tc.batch_size, tc.bucket_size,
                                 tc.max_batch_frames, shuffle=train, seed=tc.seed,
                                 num_replicas=env.world_size, rank=env.rank, drop_uneven=train)
    # A generator of its own: creating an iterator must not draw from the global torch RNG
    # (a resumed run creates one mid-epoch, the uninterrupted run does not).
    generator = torch.Generator().manual_seed(tc.seed + env.rank)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=task.collate,
                        num_workers=num_workers, pin_memory=env.device.type == "cuda",
                        generator=generator, worker_init_fn=ignore_sigint)
    return sampler, loader


def ignore_sigint(worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops at a step boundary; a
    worker that died of it would fail the batch the main process is waiting for."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches_from(loader: DataLoader, sampler: BucketBatchSampler, task: Task,
                 dataset: TrainDataset, state: TrainState) -> Iterator[Any]:
    """Batches across epochs, starting at the saved position. ``state.batch_in_epoch`` counts
    a batch as consumed when it is handed out, so a checkpoint taken after its step resumes
    with the next one; the epoch rolls over when the next batch is asked for."""
    while True:
        sampler.set_epoch(state.epoch, start=state.batch_in_epoch)
        task.set_epoch(dataset, state.epoch)
        if len(sampler.rank_batches(state.epoch)) == 0:
            raise TrainingError("the train split gives no batch per process; use fewer processes")
        for batch in loader:
            state.batch_in_epoch += 1
            yield batch
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0


def describe_start(task: Task, parts: Trainables, precision: str, env: DistEnv, n_train: int,
                   n_val: int) -> str:
    n_params = sum(p.numel() for p in parts.model.parameters())
    where = f"{env.world_size} x {env.device.type}" if env.distributed else str(env.device)
    return (f"training {task.name} ({n_params / 1e6:.2f}M parameters) on {where}, {precision}; "
            f"{n_train} train / {n_val} val utterances")


# ------------------------------------------------------------------------------ one step


def train_step(model: nn.Module, parts: Trainables, task: Task, batches: list[Any],
               precision: str, grad_clip: float, step: int, device: torch.device) -> StepResult:
    """Forward and backward over each of ``batches`` (gradient accumulation: each loss
    weighted 1/len), then clip and update. Under DDP only the last backward all-reduces. A
    non-finite loss yields a non-finite gradient norm (NaN propagates through backward and
    the all-reduce, so every rank sees the same norm), and a non-finite norm skips the
    update on every rank alike."""
    parts.optimizer.zero_grad(set_to_none=True)
    # Forward passes update buffers (BatchNorm running statistics) before the loss is known;
    # a skipped step puts them back, so it leaves the model exactly as it found it.
    buffers = {n: b.detach().clone() for n, b in parts.model.named_buffers()}
    losses, terms_sum = [], {}
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        no_sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last \
            else contextlib.nullcontext()
        with no_sync:
            with autocast(precision, device):
                loss, terms = task.loss(model, batch, step)
            parts.scaler.scale(loss / len(batches)).backward()
        losses.append(loss.detach().float())
        for name, value in terms.items():
            terms_sum[name] = terms_sum.get(name, 0.0) + value.detach().float()
    loss = torch.stack(losses).mean()
    parts.scaler.unscale_(parts.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip)
    updated = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss))
    if updated:
        parts.scaler.step(parts.optimizer)
        if parts.ema is not None:
            parts.ema.update(parts.model)
    else:
        restore_buffers(parts.model, buffers)
    parts.scaler.update()
    return StepResult(float(loss), {k: float(v) / len(batches) for k, v in terms_sum.items()},
                      float(grad_norm), updated)


@torch.no_grad()
def restore_buffers(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, buffer in model.named_buffers():
        if name in saved:
            buffer.copy_(saved[name])


def check_finite(result: StepResult, state: TrainState, tc: TrainerConfig, log: TrainLogger) -> None:
    if result.updated:
        state.nonfinite_streak = 0
        return
    state.nonfinite_steps += 1
    state.nonfinite_streak += 1
    log.info(f"step {state.step}: non-finite loss or gradient (loss {result.loss}, grad norm "
             f"{result.grad_norm}); update skipped ({state.nonfinite_steps} so far)")
    if state.nonfinite_streak >= tc.max_nonfinite:
        raise TrainingError(f"{state.nonfinite_streak} non-finite steps in a row at step "
                            f"{state.step}; lower the learning rate or use trainer.precision=bf16/fp32")


# ------------------------------------------------------------------------------ logging


def log_train(log: TrainLogger, meter: Meter, parts: Trainables, state: TrainState,
              interval_steps: int) -> None:
    values = meter.flush(interval_steps)
    values["lr"] = parts.optimizer.param_groups[0]["lr"]
    values["nonfinite_steps"] = float(state.nonfinite_steps)
    if parts.scaler.is_enabled():
        values["loss_scale"] = float(parts.scaler.get_scale())
    log.scalars(state.step, values, "train")


# ------------------------------------------------------------------------------ validation


@torch.no_grad()
def validate(model: nn.Module, task: Task, loader: DataLoader, precision: str, max_batches: int,
             env: DistEnv, step: int) -> tuple[dict[str, float], Any]:
    """Mean loss terms per batch over (at most ``max_batches`` per rank of) the val split,
    all ranks together; returns them and this rank's first batch (for media, or None)."""
    sums: dict[str, float] = {}
    count, first = 0, None
    for batch in loader:
        if max_batches and count >= max_batches:
            break
        batch = to_device(batch, env.device)
        first = batch if first is None else first
        with autocast(precision, env.device):
            loss, terms = task.loss(model, batch, step)
        for name, value in {"loss": loss, **terms}.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        count += 1
    # A rank may have no val batch (small val split); only all ranks together must have one.
    shares = distributed.gather_objects((count, sums), env)
    total = sum(n for n, _ in shares)
    if total == 0:
        raise TrainingError("the val split gives no batch to validate on (prepare with a val split)")
    merged: dict[str, float] = {}
    for _, part in shares:
        for name, value in part.items():
            merged[name] = merged.get(name, 0.0) + value
    return {name: value / total for name, value in merged.items()}, first


def validate_and_log(model: nn.Module, parts: Trainables, task: Task, loader: DataLoader,
                     precision: str, tc: TrainerConfig, env: DistEnv, log: TrainLogger,
                     step: int) -> float:
    """Validation loss and media, without disturbing the training RNG stream."""
    plain = parts.model
    devices = [env.device] if env.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        plain.eval()
        try:
            values, first = validate(plain, task, loader, precision, tc.val_batches, env, step)
            if env.is_main and first is not None:
                task.log_media(parts.synthesis_model(), first, log, step)
        finally:
            plain.train()
    if values:
        log.scalars(step, values, "val")
    return values.get("loss", math.nan)


# ------------------------------------------------------------------------------ checkpoints


def save_best(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
              state: TrainState, env: DistEnv, manager: CheckpointManager, val_loss: float,
              log: TrainLogger) -> None:
    if not improved(val_loss, state.best_val_loss):
        return
    state.best_val_loss = val_loss
    data = payload(cfg, task, store, parts, state, env, val_loss)
    if env.is_main:
        manager.save_best(data)
        log.info(f"step {state.step}: new best validation loss {val_loss:.4f}")


def save_periodic(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
                  state: TrainState, env: DistEnv, manager: CheckpointManager,
                  val_loss: float | None) -> Path | None:
    """``step_N.pt`` (collective under DDP); its path on the main rank, else None."""
    data = payload(cfg, task, store, parts, state, env, val_loss)
    return manager.save(data) if env.is_main else None
