"""Self-describing, atomically written checkpoints.

A checkpoint is a dict of tensors and plain containers (so ``torch.load(weights_only=True)``
reads it and no code runs on load)::

    format, version         "neurotts-checkpoint", 1
    model_name              "tacotron2" | "wavenet"
    model, ema              state dicts (ema is None when trainer.ema_decay == 0)
    config                  the resolved train config (model section included; its audio
                            section is not repeated there: the audio key below holds it)
    symbols, text, audio    the store's symbol table, text and audio settings
    speakers                the store's speaker table, sorted names (id i is speakers[i]);
                            [] for a single-speaker model; absent in checkpoints written
                            before it existed (read as [])
    mel_norm                {"enabled", "mean", "std"}: how model-space mels map to log-mels
    step, epoch, global_batches_in_epoch, world_size
    optimizer, scheduler, scaler
    rng                     one {"python", "numpy", "torch", "cuda"} dict per rank
    best_val_loss, val_loss, nonfinite_steps
    best_step, best_id      step of best_val_loss, and an id of the best.pt this state
                            descends from (None: none yet); both absent in checkpoints
                            written before they existed
    init_from               what a fine-tune started from (base checkpoint, its step, counts
                            of loaded/mapped/new/skipped tensors, the symbol mapping and the
                            data check); None for a run from scratch; absent in older files

Files are written to ``NAME.part`` and renamed, so a crash never leaves a torn checkpoint
under a real name. ``checkpoints/step_00001000.pt`` are periodic (the newest ``keep_last``
kept); ``checkpoints/best.pt`` has the lowest validation loss so far.

Loading checks the file before unpickling anything: a checkpoint is a zip archive whose
members carry CRC-32 checksums (torch writes them), so a truncated file or one with damaged
bytes anywhere, tensors included, is reported as damaged instead of loading wrong weights.
Then ``torch.load(weights_only=True)`` reads it; a file that holds anything but tensors and
plain containers is refused with one line. (torch's own message for that case suggests
``weights_only=False``, i.e. running whatever code the file holds; it is never passed on.)

This module is the one home of the format: training writes checkpoints through it, and
synthesis, evaluation and the audit read them through it, without importing the trainer.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurotts.audio import AudioConfig, MelNorm
from neurotts.config import to_schema
from neurotts.errors import UserError
from neurotts.files import atomic_write_bytes, fsync_dir
from neurotts.models.registry import DataSpec, build_model, model_config
from neurotts.text.frontend import TextConfig

FORMAT = "neurotts-checkpoint"
VERSION = 1


class Key:
    """The payload's keys (see the module docstring), spelled here once: training writes a
    payload under these names and every reader reads it through them."""

    FORMAT = "format"
    VERSION = "version"
    MODEL_NAME = "model_name"
    MODEL = "model"
    EMA = "ema"
    CONFIG = "config"
    SYMBOLS = "symbols"
    SPEAKERS = "speakers"
    TEXT = "text"
    AUDIO = "audio"
    MEL_NORM = "mel_norm"
    STEP = "step"
    EPOCH = "epoch"
    GLOBAL_BATCHES_IN_EPOCH = "global_batches_in_epoch"  # batches of all ranks in the epoch
    WORLD_SIZE = "world_size"
    OPTIMIZER = "optimizer"
    SCHEDULER = "scheduler"
    SCALER = "scaler"
    RNG = "rng"
    BEST_VAL_LOSS = "best_val_loss"
    VAL_LOSS = "val_loss"
    NONFINITE_STEPS = "nonfinite_steps"
    BEST_STEP = "best_step"
    BEST_ID = "best_id"
    INIT_FROM = "init_from"


_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write ``path.part`` + fsync + rename."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    fsync_dir(path.parent)


def verify_archive(path: Path) -> None:
    """Check every member of the checkpoint's zip archive against its CRC-32 (reads the
    whole file once; ~0.3 s for a 340 MB checkpoint). Raises :class:`CheckpointError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path}: damaged or not a checkpoint (not a complete zip "
                              "archive; truncated?)") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint ({bad} fails its checksum)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    peek: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; data only (``weights_only=True``). ``peek``: skip the
    checksums and map the tensors instead of reading them (cheap; for reading the step)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not peek:
        verify_archive(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=peek)
    except pickle.UnpicklingError:
        # Never pass torch's message on: it advises weights_only=False, which runs the file.
        raise CheckpointError(f"{path}: holds objects other than tensors and plain data, so it "
                              "is not loaded (a neurotts checkpoint never does; the file is "
                              "damaged or was not written by neurotts)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get(Key.FORMAT) != FORMAT:
        raise CheckpointError(f"{path}: not a neurotts checkpoint")
    if payload[Key.VERSION] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload[Key.VERSION]}, expected {VERSION}")
    return payload


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


class CheckpointManager:
    """Periodic checkpoints (newest ``keep_last`` kept) plus ``best.pt``, in one folder."""

    def __init__(self, folder: str | Path, keep_last: int):
        self.folder = Path(folder)
        self.keep_last = keep_last

    def periodic(self) -> list[Path]:
        """Periodic checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        files = self.periodic()
        return files[-1] if files else None

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def existing(self) -> list[Path]:
        """Every checkpoint file in the folder (periodic and best.pt), usable or not."""
        return [*self.periodic(), *([self.best] if self.best.is_file() else [])]

    def candidates(self) -> list[Path]:
        """Checkpoints to resume from, newest state first: periodic ones by the step in their
        name, ``best.pt`` by the step stored in it (a periodic one of the same step first).
        A ``best.pt`` whose step cannot be read goes first, so that it is named as damaged."""
        ranked = [(self.step_of(p), 1, p) for p in self.periodic()]
        if self.best.is_file():
            step = self.step_of(self.best)
            ranked.append((1 << 62 if step is None else step, 0, self.best))
        return [p for *_, p in sorted(ranked, key=lambda r: (r[0], r[1]), reverse=True)]

    def step_of(self, path: Path) -> int | None:
        """The step a checkpoint of this folder holds (from its name, or stored in best.pt);
        None when it cannot be read."""
        if match := _STEP_FILE.match(path.name):
            return int(match.group(1))
        return self.peek(path).get(Key.STEP)

    @staticmethod
    def peek(path: Path) -> dict[str, Any]:
        """A checkpoint's entries without reading its tensors; {} when it cannot be read."""
        try:
            return load_checkpoint(path, peek=True)
        except CheckpointError:
            return {}

    def set_aside(self, path: Path, why: str) -> Path:
        """Rename ``NAME`` to ``NAME.why`` (kept, but never resumed from again)."""
        target = path.with_name(f"{path.name}.{why}")
        path.replace(target)
        return target

    def save(self, payload: dict[str, Any]) -> Path:
        """Write ``step_N.pt``, then drop periodic checkpoints beyond ``keep_last``."""
        if not all_finite(payload[Key.MODEL]):
            # Non-finite steps are skipped, so this means a bug: never persist it.
            raise CheckpointError(f"step {payload[Key.STEP]}: model weights are not finite; not saved")
        path = self.folder / f"step_{payload[Key.STEP]:08d}.pt"
        save_checkpoint(path, payload)
        for old in self.periodic()[: -self.keep_last]:
            old.unlink()
        return path

    def save_best(self, payload: dict[str, Any]) -> Path:
        save_checkpoint(self.best, payload)
        return self.best


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``checkpoints/best.pt``, else its newest
    periodic checkpoint). Raises :class:`CheckpointError` naming the path."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        manager = CheckpointManager(path / "checkpoints", keep_last=1)
        if manager.best.is_file():
            return manager.best
        latest = manager.latest()
        if latest is not None:
            return latest
        raise CheckpointError(f"{path}: run folder has no checkpoints/ yet")
    raise CheckpointError(f"{path}: no such checkpoint or run folder")


@dataclass
class TrainedModel:
    """A checkpoint read once for inference: the built model and the settings it was trained
    with, typed, so that no caller re-parses the payload."""

    model: torch.nn.Module  # in eval mode, on the requested device, EMA weights when kept
    kind: str  # "tacotron2" | "wavenet"
    config: Any  # the model's typed config (Tacotron2Config, WaveNetConfig)
    symbols: list[str]  # the store's symbol table: id i is symbols[i]
    text: TextConfig  # the store's text settings
    audio: AudioConfig  # the store's audio settings
    mel_norm: MelNorm  # how model-space mels map to log-mels
    step: int
    path: Path  # the checkpoint file (a run folder resolved)
    speakers: list[str] = field(default_factory=list)  # id i is speakers[i]; []: one speaker


def load_trained(path: str | Path, kind: str, device: torch.device | str = "cpu") -> TrainedModel:
    """A trained ``kind`` model ("tacotron2", "wavenet") from a checkpoint or run folder, for
    inference: built through the model registry from the checkpoint's own config, symbol
    count and audio settings, with the EMA weights when training kept them, on ``device``,
    in eval mode, with the settings it was trained with."""
    file = resolve_checkpoint(path)
    payload = load_checkpoint(file, map_location="cpu")
    if payload[Key.MODEL_NAME] != kind:
        raise CheckpointError(
            f"{file}: is a {payload[Key.MODEL_NAME]} checkpoint, but a {kind} checkpoint is needed here")
    cfg = model_config(payload[Key.CONFIG]["model"])
    symbols = list(payload[Key.SYMBOLS])
    speakers = list(payload.get(Key.SPEAKERS) or [])
    audio = to_schema(payload[Key.AUDIO], AudioConfig)
    model = build_model(cfg, DataSpec(len(symbols), audio, len(speakers)))
    weights = payload[Key.EMA] if payload.get(Key.EMA) is not None else payload[Key.MODEL]
    model.load_state_dict(weights)
    return TrainedModel(model.to(device).eval(), kind, cfg, symbols,
                        to_schema(payload[Key.TEXT], TextConfig), audio,
                        MelNorm.from_state(payload[Key.MEL_NORM]), int(payload[Key.STEP]), file,
                        speakers)
