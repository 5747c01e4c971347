"""Where training reports go: the console, TensorBoard and ``train_log.jsonl``.

Only rank 0 logs; on other ranks :class:`TrainLogger` is built with ``enabled=False`` and every
method returns at once. ``train_log.jsonl`` has one JSON object per logged step (the same
scalars as TensorBoard) and is what tests and scripts read back.

On a terminal the console shows a progress bar; without one (``train ... > log 2>&1``, a
Slurm job) it gets a plain line every ``log_every`` steps instead (step, loss terms, LR,
steps/s, ETA). Validation results and the end-of-run summary are printed either way.
Messages are printed literally (no rich markup), so paths with brackets show as they are.

A write that fails (disk full) does not raise here: the first failure is kept in
:attr:`TrainLogger.error` and further writes are dropped; the loop stops the run on it at the
next step boundary, with every rank agreeing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Scalars that are not loss terms: shown after them, in this order, in plain lines.
_META = ("grad_norm", "lr", "loss_scale", "nonfinite_steps", "steps_per_s", "frames_per_s")


class TrainLogger:
    def __init__(self, run_dir: Path, console: Console, total_steps: int, enabled: bool):
        self.enabled = enabled
        self.console = console
        self.total = total_steps
        self.plain = not console.is_terminal
        self.writer = None
        self.progress: Progress | None = None
        self.error: OSError | None = None  # the first failed write
        self._mark = (time.perf_counter(), 0)
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl_path = run_dir / "train_log.jsonl"
        self.jsonl = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def start(self, step: int) -> None:
        """Training (re)starts at ``step``; no bar when there is nothing left to do."""
        self._mark = (time.perf_counter(), step)
        if not self.enabled or self.plain or step >= self.total:
            return
        self.progress = Progress(
            TextColumn("train", style="bold"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} step/s  loss {task.fields[loss]}"),
            TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.task = self.progress.add_task("train", total=self.total, completed=step, rate=0.0,
                                           loss="-")
        self.progress.start()

    def info(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def table(self, table: Table) -> None:
        """A rich table (e.g. what a fine-tune took from its base); its cells are Text, so
        paths and names print literally."""
        if self.enabled:
            self.console.print(table)

    def rate(self, step: int) -> float:
        """Mean steps/s since :meth:`start`."""
        t0, s0 = self._mark
        return (step - s0) / max(time.perf_counter() - t0, 1e-9)

    def advance(self, step: int, loss: float) -> None:
        """Move the progress bar (terminal only)."""
        if self.progress is not None:
            self.progress.update(self.task, completed=step, rate=self.rate(step), loss=f"{loss:.4f}")

    def train_line(self, step: int, values: dict[str, float]) -> None:
        """The plain line of a train log step (no terminal: the bar does this job there)."""
        if not self.enabled or not self.plain:
            return
        rate = self.rate(step)
        eta = format_duration((self.total - step) / rate) if rate > 0 else "-"
        self.info(f"step {step}/{self.total}  {format_values(values)}  ETA {eta}")

    def val_line(self, step: int, values: dict[str, float], best: bool) -> None:
        self.info(f"step {step}: validation {format_values(values)}"
                  + ("  (new best)" if best else ""))

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if self.writer is None or self.error is not None:
            return
        record = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        self._guard(self.jsonl_path, lambda: (self.jsonl.write(json.dumps(record) + "\n"),
                                              self.jsonl.flush()))
        for name, value in values.items():
            self._guard(self.writer.log_dir, lambda n=name, v=value:
                        self.writer.add_scalar(f"{prefix}/{n}", v, step))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image`` (H, W, 3) uint8."""
        if self.writer is not None:
            self._guard(self.writer.log_dir,
                        lambda: self.writer.add_image(tag, image, step, dataformats="HWC"))

    def audio(self, tag: str, wav: torch.Tensor, sample_rate: int, step: int) -> None:
        """``wav`` (T,) float in [-1, 1]."""
        if self.writer is not None:
            clip = wav.detach().float().cpu().clamp(-1.0, 1.0).reshape(1, -1)
            self._guard(self.writer.log_dir,
                        lambda: self.writer.add_audio(tag, clip, step, sample_rate=sample_rate))

    def _guard(self, where: str | Path, write: Callable[[], object]) -> None:
        """Run a write; on failure keep the first error and drop the writes after it."""
        if self.error is not None:
            return
        try:
            write()
        except OSError as exc:
            self.error = exc if exc.filename else OSError(exc.errno, exc.strerror, str(where))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is None:
            return
        # Closing flushes what is still buffered; after a failed write that fails again.
        for where, close in ((self.writer.log_dir, self.writer.close), (self.jsonl_path, self.jsonl.close)):
            try:
                close()
            except OSError as exc:
                if self.error is None:  # a failure of the last flush: the run is over, say so
                    self.info(f"warning: could not finish writing {where} ({exc.strerror})")
        self.writer = None


def format_values(values: dict[str, float]) -> str:
    """``loss 1.2345 (mel_before 0.5, ...)  grad_norm 0.8  lr 1.00e-03  2.31 steps/s``."""
    terms = {k: v for k, v in values.items() if k != "loss" and k not in _META}
    text = f"loss {values.get('loss', float('nan')):.4f}"
    if terms:
        text += " (" + ", ".join(f"{k} {v:.4f}" for k, v in terms.items()) + ")"
    for key in _META:
        if key not in values:
            continue
        value = values[key]
        if key == "lr":
            text += f"  lr {value:.2e}"
        elif key == "steps_per_s":
            text += f"  {value:.2f} steps/s"
        elif key == "frames_per_s":
            text += f"  {value:.0f} frames/s"
        elif key == "nonfinite_steps":
            text += f"  non-finite {int(value)}" if value else ""
        else:
            text += f"  {key} {value:.3g}"
    return text


def format_duration(seconds: float) -> str:
    """``1h02m``, ``6m20s``, ``42s``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


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
