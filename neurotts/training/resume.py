"""Which checkpoint a run continues from, and what may change when it does.

A run never silently starts over: :func:`choose_resume` takes the newest usable checkpoint
of the run folder (or the one named), and :func:`check_resume_config` refuses any setting
that differs from the checkpoint's unless its schema field declares a resume policy (see
:func:`neurotts.training.config.resume_policy`). Nothing is written until the resume is
accepted; then rank 0 tidies the run folder (:func:`write_run_files`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurotts import checkpoint as ckpt
from neurotts.checkpoint import CheckpointManager, Key
from neurotts.config import to_dict, to_yaml
from neurotts.data.store import FeatureStore
from neurotts.files import atomic_write_text
from neurotts.training import distributed
from neurotts.training.config import NEXT_EPOCH, QUIET, TrainConfig, resume_policy
from neurotts.training.distributed import DistEnv, on_main
from neurotts.training.errors import TrainingError
from neurotts.training.init_from import InitReport, write_report
from neurotts.training.state import (
    Trainables,
    TrainState,
    apply_hyperparameters,
    restore,
    write_failed,
)
from neurotts.training.tasks import Task


@dataclass
class ResumePlan:
    """Where a run starts: the checkpoint it continues from (None: step 0) and, on the rank
    that chose it, its contents (not loaded twice), the damaged checkpoints skipped on the
    way, and what is printed about it."""

    path: Path | None
    saved: dict[str, Any] | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def choose_resume(choice: str, manager: CheckpointManager) -> ResumePlan:
    """``auto``: the newest usable checkpoint of the run folder (best.pt included), skipping
    damaged ones; none when the folder has no checkpoint; an error when it has some but none
    is usable (a run never silently starts over). ``never``: none, and refuse a folder that
    has checkpoints. Anything else: that file. The plan carries the chosen checkpoint's
    contents."""
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
        return ResumePlan(path, ckpt.load_checkpoint(path))
    plan = ResumePlan(None)
    for path in manager.candidates():
        try:
            plan.saved = ckpt.load_checkpoint(path)
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
    """Settings that changed since the checkpoint: the ones a resume may change (their
    schema field declares a resume policy) as printable lines, and whether the batches change
    (policy ``next_epoch``); anything else raises :class:`TrainingError` naming the keys. A
    setting the checkpoint predates may take any value. Writes nothing."""
    changes = diff_configs(saved[Key.CONFIG], to_dict(cfg))
    refused = [f"{k}: {old!r} -> {new!r}" for k, old, new in changes
               if old is not ABSENT and resume_policy(k) is None]
    if refused:
        raise TrainingError(f"{path}: these settings differ from the checkpoint's and cannot change "
                            f"on resume ({'; '.join(refused)}): set them back to resume, or use a new "
                            "run.dir")
    same_store = (saved[Key.SYMBOLS] == list(store.symbols) and saved[Key.AUDIO] == to_dict(store.audio)
                  and list(saved.get(Key.SPEAKERS) or []) == list(store.speakers)
                  and same_tensors(saved.get(Key.MEL_NORM, {}), task.describe().get(Key.MEL_NORM, {})))
    if not same_store:
        raise TrainingError(f"{path}: was trained on other features (symbols, speakers, audio "
                            f"settings or mel statistics differ from {cfg.data.features}); use "
                            "the same store to resume, or a new run.dir")
    step = saved[Key.STEP]
    # Not printed: quiet settings (where the run and its data are, how it resumes) and the
    # store's audio settings (checked against the store just above).
    shown = [f"{k} {_short(old)} -> {_short(new)} from step {step}" for k, old, new in changes
             if resume_policy(k) != QUIET and not k.startswith("audio.")]
    new_batches = any(resume_policy(k) == NEXT_EPOCH for k, _, _ in changes)
    if saved[Key.WORLD_SIZE] != world_size:
        shown.append(f"processes {saved[Key.WORLD_SIZE]} -> {world_size} from step {step}")
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


def start_next_epoch(state: TrainState) -> str | None:
    """After a change of the batches (batch size, process count): continue with a new
    epoch; the rest of the current one is skipped. Returns what to print, if anything."""
    if state.batch_in_epoch == 0:
        return None
    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return (f"the batches change: continuing with epoch {state.epoch} (the rest of the current "
            "one is skipped)")


def resume_run(cfg: TrainConfig, task: Task, store: FeatureStore, parts: Trainables,
               state: TrainState, env: DistEnv, manager: CheckpointManager) -> ResumePlan:
    """Choose (rank 0) and load the checkpoint to continue from, check what changed, and
    restore it on every rank. Writes nothing, so a refused resume leaves the run folder as it
    was. Every rank makes the checks alike; call it inside
    :func:`~neurotts.training.distributed.raised_alike`."""
    plan = on_main(lambda: choose_resume(cfg.trainer.resume, manager), env)
    path = distributed.from_main(None if plan is None or plan.path is None else str(plan.path), env)
    plan = plan or ResumePlan(None if path is None else Path(path))
    if plan.path is None:
        return plan
    saved = plan.saved or ckpt.load_checkpoint(plan.path)
    changes, new_batches = check_resume_config(plan.path, saved, cfg, store, task, env.world_size)
    restore(plan.path, saved, task, parts, state, env)
    apply_hyperparameters(parts, cfg.trainer)
    plan.saved = None  # restored: the weights need not stay in memory twice
    plan.messages += [f"skipped {why}" for _, why in plan.damaged]
    plan.messages.append(f"resumed from step {state.step} ({plan.path})")
    plan.messages += changes
    if new_batches and (moved := start_next_epoch(state)):
        plan.messages.append(moved)
    return plan


def write_run_files(cfg: TrainConfig, manager: CheckpointManager, plan: ResumePlan,
                    state: TrainState, base: InitReport | None = None) -> tuple[list[str], bool]:
    """Rank 0, once the resume is accepted: remove half-written files of a killed run, set
    aside damaged checkpoints (and, when an older checkpoint was chosen explicitly, the newer
    ones it abandons), and write config.yaml (and, for a run started from ``init_from``,
    init_from.tsv and data_check.txt). Returns what to print, and whether this run may
    replace best.pt (only one its resumed state descends from: a best.pt of another history
    is kept, decided after the set-aside since a damaged best.pt goes too)."""
    notes = []
    try:
        manager.folder.mkdir(parents=True, exist_ok=True)
        for stale in [*manager.folder.glob("*.part"), *Path(cfg.run.dir).glob("*.part")]:
            stale.unlink()  # left by a writer that was killed (we hold the lock: none is now)
        for path, _ in plan.damaged:
            notes.append(f"{path} set aside as {manager.set_aside(path, 'damaged').name}")
        if plan.path is not None:
            for path in manager.existing():
                step = manager.step_of(path)
                if path != plan.path and step is not None and step > state.step:
                    notes.append(f"{path} (step {step}) is newer than the chosen checkpoint: set "
                                 f"aside as {manager.set_aside(path, 'superseded').name}")
        atomic_write_text(Path(cfg.run.dir) / "config.yaml", to_yaml(cfg))
        if base is not None:
            write_report(Path(cfg.run.dir), base)
    except OSError as exc:
        raise TrainingError(write_failed(exc, plan.path, state.step)) from None
    if manager.best.is_file() and manager.peek(manager.best).get("best_id") != state.best_id:
        notes.append(f"{manager.best} is not from this run's history (its state was not an "
                     "ancestor of the one resumed): it is kept and this run will not replace it")
        return notes, False
    return notes, True
