"""The training loop. :func:`train` reads top to bottom like a script; model-specific work is
the task's (see :mod:`neurotts.training.tasks`), bookkeeping lives in named helpers and in
the modules beside this one: what a checkpoint holds and when one is written
(:mod:`~neurotts.training.state`), which one a run continues from
(:mod:`~neurotts.training.resume`), stopping on a signal (:mod:`~neurotts.training.stopping`),
errors across ranks (:mod:`~neurotts.training.distributed`).

Exact resume: the sampler's batches are a function of (seed, epoch) and the checkpoint holds
the position in the epoch; every RNG (python, numpy, torch, CUDA; one set per rank) is saved
after the step and restored; the DataLoader draws its worker seeds from a generator of its
own, and validation runs inside ``torch.random.fork_rng``, so neither perturbs the stream
that dropout and the prenet draw from. On CPU a resumed run repeats the uninterrupted run's
per-step losses to float rounding (tests/test_training.py checks 1e-6).

Stopping: a stop signal asks the run to stop after the current step; every rank agrees on the
step (one small all-reduce per step, which also carries the time-based checkpoint decision),
a checkpoint of that step is written, and
:class:`~neurotts.training.errors.TrainingInterrupted` is raised (the CLI exits 128 + signal).
Running the same command again resumes exactly there. A second Ctrl-C stops at once.

Start: rank 0 creates and locks the run folder (:mod:`neurotts.training.rundir`), chooses the
checkpoint to continue from, every rank loads it and checks which settings changed (a run with
no checkpoint of its own and ``init_from`` set takes a base model's weights instead, see
:mod:`~neurotts.training.init_from`); only once that is accepted does rank 0 write anything
(config.yaml, set-aside files, init_from.tsv), so a refused resume or base leaves the folder
as it was.

Non-finite steps: when the loss or the (all-reduced, hence identical on every rank) gradient
norm is not finite, the optimizer step is skipped on every rank, the step is counted and
logged, and weights never see it; ``trainer.max_nonfinite`` in a row stop the run.
"""

from __future__ import annotations

import contextlib
import math
import os
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
from neurotts.data.loader import BucketBatchSampler
from neurotts.data.store import FeatureStore
from neurotts.training import distributed
from neurotts.training.config import TrainConfig, TrainerConfig
from neurotts.training.distributed import DistEnv, on_main
from neurotts.training.errors import TrainingError, TrainingInterrupted
from neurotts.training.init_from import InitReport, few_loaded_warning, initialise
from neurotts.training.logging import TrainLogger, format_duration
from neurotts.training.optim import autocast, resolve_precision, set_tf32
from neurotts.training.resume import ResumePlan, resume_run, write_run_files
from neurotts.training.rundir import RunLock, make_run_dir
from neurotts.training.state import Checkpoints, Trainables, TrainState, payload
from neurotts.training.stopping import StopRequest, start_workers, worker_init
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


@dataclass
class Run:
    """What one training run works with, built once at start (passed whole to the helpers)."""

    cfg: TrainConfig
    env: DistEnv
    store: FeatureStore
    task: Task
    parts: Trainables
    precision: str
    state: TrainState
    checkpoints: Checkpoints


def train(cfg: TrainConfig, console: Console,
          make_task: Callable[[TrainConfig, FeatureStore], Task] = build_task) -> TrainSummary:
    """Train ``cfg.model`` on ``cfg.data.features`` into ``cfg.run.dir``; see the module doc."""
    env = distributed.setup(cfg.trainer.device)
    stop = StopRequest(announce=env.is_main)  # from the start: a signal during set-up counts
    try:
        with stop:
            lock = RunLock(Path(cfg.run.dir))
            notes = on_main(lambda: take_run_dir(lock), env)
            try:
                return _train(cfg, env, console, make_task, stop, notes or [])
            finally:
                lock.release()
    finally:
        distributed.teardown(env)


def take_run_dir(lock: RunLock) -> list[str]:
    """Create the run folder (or check it is writable) and lock it; what to print."""
    make_run_dir(lock.path.parent)
    lock.acquire()
    return lock.notes


def _train(cfg: TrainConfig, env: DistEnv, console: Console,
           make_task: Callable[[TrainConfig, FeatureStore], Task], stop: StopRequest,
           notes: list[str]) -> TrainSummary:
    """Build the run (every rank alike), resume it, then step; the summary line is printed
    however the run ends. ``notes``: what taking the run folder found (rank 0)."""
    tc = cfg.trainer
    started = time.monotonic()
    if tc.cpu_threads > 0:
        torch.set_num_threads(tc.cpu_threads)
    store = FeatureStore(cfg.data.features)
    seed_everything(tc.seed, env.rank)
    task = make_task(cfg, store)
    precision = resolve_precision(tc.precision, env.device, task.name)
    set_tf32(tc.tf32, env.device)
    parts = Trainables.build(task.model.to(env.device), tc, precision, env.device)
    train_set, val_set = task.dataset("train", tc.seed), task.dataset("val", tc.seed)
    manager = CheckpointManager(Path(cfg.run.dir) / "checkpoints", tc.keep_last)
    state = TrainState()
    with distributed.raised_alike(env):
        train_set.check_files()
        val_set.check_files()
        plan = resume_run(cfg, task, store, parts, state, env, manager)  # writes nothing
        base, base_notes = start_from_base(cfg, task, store, parts, state, plan)  # nor this
    written, replace_best = on_main(lambda: write_run_files(cfg, manager, plan, state, base), env,
                                    default=([], True))
    checkpoints = Checkpoints(
        manager, env, tc.checkpoint_every_minutes,
        lambda val_loss: payload(cfg, task, store, parts, state, env, val_loss), state,
        newest=plan.path, replace_best=distributed.from_main(replace_best, env))
    run = Run(cfg, env, store, task, parts, precision, state, checkpoints)
    workers, lowered = loader_workers(cfg.data.num_workers, env)
    notes = [*notes, *plan.messages, *base_notes, *written, *lowered, *frozen_note(parts, tc),
             *cpu_warning(parts, env),
             *batch_note(tc.batch_size * env.world_size, len(train_set))]
    sampler, loader = make_loader(train_set, task, tc, workers, env, train=True)
    _, val_loader = make_loader(val_set, task, tc, workers, env, train=False)
    log = on_main(lambda: open_logger(cfg, console, checkpoints), env,
                  default=TrainLogger(Path(cfg.run.dir), console, tc.max_steps, enabled=False))
    resumed_from = state.step if plan.path is not None else None
    try:
        log.info(describe_start(task, parts, precision, env, len(train_set), len(val_set)))
        if base is not None and env.is_main:
            log.table(base.table())
        for note in notes:
            log.info(note)
        if state.step >= tc.max_steps:
            log.info(f"already at step {state.step} >= trainer.max_steps={tc.max_steps}; nothing to do")
        stream = batches_from(loader, sampler, task, train_set, state)
        run_steps(run, model=wrap_ddp(parts.model, env), stream=stream, val_loader=val_loader,
                  log=log, stop=stop)
    except TrainingInterrupted:
        log.info(summary(run, started, resumed_from))
        raise
    finally:
        log.close()
    log.info(summary(run, started, resumed_from))
    return TrainSummary(state.step, resumed_from, state.nonfinite_steps, state.best_val_loss,
                        Path(cfg.run.dir))


def start_from_base(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
                    state: TrainState, plan: ResumePlan) -> tuple[InitReport | None, list[str]]:
    """``init_from`` at step 0: the base's weights into the model (and the EMA), what was
    taken kept in the state (hence in every checkpoint); what to print. A resumed run
    continues from its own checkpoint and never reads the base again."""
    if cfg.init_from is None:
        return None, []
    if plan.path is not None:
        source = (state.init_from or {}).get("base", "no base")
        return None, [f"init_from={cfg.init_from} not read: this run resumes from its own "
                      f"checkpoint (it started from {source})"]
    report = initialise(cfg.init_from, parts.model, task.name, store, cfg.data.normalize_mels)
    if parts.ema is not None:
        parts.ema.load_state_dict(parts.model.state_dict())
    state.init_from = report.summary()
    data_lines = report.data.lines() if report.data is not None else []
    return report, [*report.lines(), *data_lines, *few_loaded_warning(report)]


def frozen_note(parts: Trainables, tc: TrainerConfig) -> list[str]:
    if not tc.freeze:
        return []
    frozen = sum(p.numel() for p in parts.model.parameters() if not p.requires_grad)
    return [f"trainer.freeze: {', '.join(tc.freeze)} not trained ({frozen:,} values)"]


def batch_note(batch: int, train_size: int) -> list[str]:
    """A note when a batch (all ranks together) asks for more utterances than the train split
    has: every batch is then the whole split, smaller than asked."""
    if batch <= train_size:
        return []
    return [f"note: trainer.batch_size asks for {batch} utterances per step, more than the "
            f"train split's {train_size}: each batch holds at most {train_size}"]


def run_steps(run: Run, model: nn.Module, stream: Iterator[Any], val_loader: DataLoader,
              log: TrainLogger, stop: StopRequest) -> None:
    """Step until ``max_steps``, a stop request, or an error. Each step boundary all ranks
    agree (one small all-reduce) on: a stop signal, a time-based checkpoint, a failed log
    write."""
    tc, state, env, parts = run.cfg.trainer, run.state, run.env, run.parts
    meter, last_logged = Meter(), state.step
    if state.step < tc.max_steps and (signum := distributed.max_over_ranks([stop.number], env)[0]):
        raise stop.interrupted(state.step, None, signum)  # signalled during set-up
    log.start(state.step)
    while state.step < tc.max_steps:
        batches = [to_device(next(stream), env.device) for _ in range(tc.grad_accum)]
        result = train_step(model, parts, run.task, batches, run.precision, tc.grad_clip,
                            state.step, env.device)
        state.step += 1
        if result.updated:  # the schedule counts updates, not skipped steps
            parts.scheduler.step()
        meter.add(result, sum(run.task.frames(batch) for batch in batches))
        check_step_finite(result, state, tc, log)  # the gradient norm is the same on every rank
        last = state.step >= tc.max_steps
        log.advance(state.step, result.loss)
        if state.step % tc.log_every == 0 or last:
            log_train(log, meter, parts, state, state.step - last_logged)
            last_logged = state.step
        val_loss = None
        if state.step % tc.val_every == 0 or last:
            values = validate_and_log(parts, run.task, val_loader, run.precision, tc, env, log,
                                      state.step)
            val_loss = values.get("loss", math.nan)
            log.val_line(state.step, values, run.checkpoints.save_best(val_loss, log))
        # A stop request (signal), a due time-based checkpoint or a failed log write on any
        # rank: every rank acts on it here, at a step boundary.
        signum, timed, log_failed = distributed.max_over_ranks(
            [stop.number, run.checkpoints.time_due(), log.error is not None], env)
        if log_failed:
            on_main(lambda: run.checkpoints.raise_write_failed(log.error), env)
        stopping = signum and not last
        saved = None
        if state.step % tc.checkpoint_every == 0 or last or stopping or timed:
            saved = run.checkpoints.save_periodic(val_loss)
        if stopping:
            raise stop.interrupted(state.step, saved, signum)


def open_logger(cfg: TrainConfig, console: Console, checkpoints: Checkpoints) -> TrainLogger:
    """The run's log (rank 0); a log folder that cannot be written stops with one line."""
    try:
        return TrainLogger(Path(cfg.run.dir), console, cfg.trainer.max_steps, enabled=True)
    except OSError as exc:
        raise TrainingError(checkpoints.write_failed(exc)) from None


def summary(run: Run, started: float, resumed_from: int | None) -> str:
    """The last lines of a run: steps, best validation loss, checkpoints, wall time."""
    state, newest = run.state, run.checkpoints.newest
    steps = f"step {state.step}" + (f" of {run.cfg.trainer.max_steps}"
                                     if state.step <= run.cfg.trainer.max_steps else "")
    if resumed_from is not None:
        steps += f" (resumed at step {resumed_from})"
    best = ("no validation yet" if state.best_step is None else
            f"best validation loss {state.best_val_loss:.4f} at step {state.best_step}")
    files = [str(p) for p in (newest, run.checkpoints.manager.best) if p is not None and p.is_file()]
    return (f"summary: {steps}; {best}; checkpoints: {', '.join(files) or 'none'}; wall time "
            f"{format_duration(time.monotonic() - started)}")


# ------------------------------------------------------------------------------ set-up helpers


def seed_everything(seed: int, rank: int) -> None:
    import random

    import numpy as np

    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)  # also seeds every CUDA device


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
                        generator=generator, worker_init_fn=worker_init)
    return sampler, loader


def loader_workers(asked: int, env: DistEnv) -> tuple[int, list[str]]:
    """``data.num_workers`` capped at this process's share of the CPU cores it may use
    (more only compete with training for them; torch warns about it), and what to print
    when it was lowered."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = max(cores // distributed.local_world_size(), 0)
    if asked <= per_process:
        return asked, []
    share = f"this process's share of the {cores} CPU cores" if env.distributed else \
        f"the {cores} CPU cores available"
    return per_process, [f"data.num_workers={asked} lowered to {per_process}: {share}"]


PAPER_SIZE_PARAMS = 1_000_000  # experiment=tiny models have ~0.02-0.2M


def cpu_warning(parts: Trainables, env: DistEnv) -> list[str]:
    """A large model on a CPU runs at seconds per step: say so, once, at start."""
    n_params = sum(p.numel() for p in parts.model.parameters())
    if env.device.type != "cpu" or n_params < PAPER_SIZE_PARAMS:
        return []
    return [f"warning: training a {n_params / 1e6:.1f}M-parameter model on the CPU takes seconds "
            "per step (no CUDA GPU in use); for a quick try use experiment=tiny"]


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
        for batch in start_workers(loader):
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


def check_step_finite(result: StepResult, state: TrainState, tc: TrainerConfig,
                      log: TrainLogger) -> None:
    """Count a skipped (non-finite) step and log it; too many in a row stop the run, since
    training that only skips makes no progress."""
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
    log.train_line(state.step, values)


# ------------------------------------------------------------------------------ validation


@torch.no_grad()
def validation_loss(model: nn.Module, task: Task, loader: DataLoader, precision: str, max_batches: int,
             env: DistEnv, step: int) -> tuple[dict[str, float], Any]:
    """Mean loss terms per batch over (at most ``max_batches`` per rank of) the val split,
    all ranks together; returns them and this rank's first batch (for media, or None)."""
    sums: dict[str, float] = {}
    count, first = 0, None
    for batch in start_workers(loader):
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


def validate_and_log(parts: Trainables, task: Task, loader: DataLoader, precision: str,
                     tc: TrainerConfig, env: DistEnv, log: TrainLogger,
                     step: int) -> dict[str, float]:
    """Validation loss terms (logged) and media, without disturbing the training RNG stream.
    Runs the plain model, not the DDP wrapper: no gradient is synchronised in validation."""
    plain = parts.model
    devices = [env.device] if env.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        plain.eval()
        try:
            values, first = validation_loss(plain, task, loader, precision, tc.val_batches, env, step)
            if env.is_main and first is not None:
                task.log_media(parts.synthesis_model(), first, log, step)
        finally:
            plain.train()
    if values:
        log.scalars(step, values, "val")
    return values
