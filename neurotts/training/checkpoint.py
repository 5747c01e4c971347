"""Self-describing, atomically written checkpoints.

A checkpoint is a dict of tensors and plain containers (so ``torch.load(weights_only=True)``
reads it and no code runs on load)::

    format, version         "neurotts-checkpoint", 1
    model_name              "tacotron2" | "wavenet"
    model, ema              state dicts (ema is None when trainer.ema_decay == 0)
    config                  the resolved train config (model section included)
    symbols, text, audio    the store's symbol table, text and audio settings
    mel_norm                {"enabled", "mean", "std"}: how model-space mels map to log-mels
    step, epoch, batch_in_epoch, world_size
    optimizer, scheduler, scaler
    rng                     one {"python", "numpy", "torch", "cuda"} dict per rank
    best_val_loss, val_loss, nonfinite_steps

Files are written to ``NAME.part`` and renamed, so a crash never leaves a torn checkpoint
under a real name. ``checkpoints/step_00001000.pt`` are periodic (the newest ``keep_last``
kept); ``checkpoints/best.pt`` has the lowest validation loss so far.
"""

from __future__ import annotations

import io
import math
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurotts.data.store import atomic_write_bytes

FORMAT = "neurotts-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write ``path.part`` + fsync + rename."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    fsync_dir(path.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; data only (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a neurotts checkpoint")
    if payload["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']}, expected {VERSION}")
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

    def save(self, payload: dict[str, Any]) -> Path:
        """Write ``step_N.pt``, then drop periodic checkpoints beyond ``keep_last``."""
        if not all_finite(payload["model"]):
            # Non-finite steps are skipped, so this means a bug: never persist it.
            raise CheckpointError(f"step {payload['step']}: model weights are not finite; not saved")
        path = self.folder / f"step_{payload['step']:08d}.pt"
        save_checkpoint(path, payload)
        for old in self.periodic()[: -self.keep_last]:
            old.unlink()
        return path

    def save_best(self, payload: dict[str, Any]) -> Path:
        save_checkpoint(self.best, payload)
        return self.best


def improved(val_loss: float, best: float) -> bool:
    return math.isfinite(val_loss) and val_loss < best


# ------------------------------------------------------------------------------ RNG state


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


def fsync_dir(folder: Path) -> None:
    """Make a rename durable on POSIX (the directory entry itself must reach the disk)."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
