"""Where training reports go: a rich progress line, TensorBoard and ``train_log.jsonl``.

Only rank 0 logs; on other ranks :class:`TrainLogger` is built with ``enabled=False`` and every
method returns at once. ``train_log.jsonl`` has one JSON object per logged step (the same
scalars as TensorBoard) and is what tests and scripts read back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainLogger:
    def __init__(self, run_dir: Path, console: Console, total_steps: int, enabled: bool):
        self.enabled = enabled
        self.console = console
        self.writer = None
        self.progress: Progress | None = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.jsonl = open(run_dir / "train_log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.progress = Progress(
            TextColumn("train", style="bold"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} step/s  loss {task.fields[loss]}"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, rate=0.0, loss="-")

    def start(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)
            self.progress.start()
        self._mark = (time.perf_counter(), step)

    def info(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)

    def advance(self, step: int, loss: float) -> float:
        """Move the progress bar; returns the mean steps/s since :meth:`start`."""
        if self.progress is None:
            return 0.0
        t0, s0 = self._mark
        now = time.perf_counter()
        rate = (step - s0) / max(now - t0, 1e-9)
        self.progress.update(self.task, completed=step, rate=rate, loss=f"{loss:.4f}")
        return rate

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        record = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image`` (H, W, 3) uint8."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def audio(self, tag: str, wav: torch.Tensor, sample_rate: int, step: int) -> None:
        """``wav`` (T,) float in [-1, 1]."""
        if self.writer is not None:
            clip = wav.detach().float().cpu().clamp(-1.0, 1.0).reshape(1, -1)
            self.writer.add_audio(tag, clip, step, sample_rate=sample_rate)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()
            self.jsonl.close()


def read_train_log(path: str | Path) -> dict[int, dict[str, float]]:
    """``train_log.jsonl`` -> {step: merged scalars}; a step logged again (after a resume that
    repeated it) keeps its last values."""
    out: dict[int, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                out.setdefault(record.pop("step"), {}).update(record)
    return out
