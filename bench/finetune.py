"""Fine-tuning vs training from scratch, on the CPU, with a changed symbol set.

The shared LJSpeech sample (385 clips) is cut in two by id: the first ``--base-clips`` make a
characters store on which a small Tacotron 2 (experiment=tiny) is trained for
``--base-steps``; the other clips make an ARPAbet store (phones the base has never seen: every
phone starts from the symbol-mapping rules, mostly ``spelling``). On that store two runs with
the same settings and seed train: one from scratch, one with ``init_from`` the base. Reported:

* ``band_mass_step0``: diagonal band mass (:func:`neurotts.models.alignment.diagonal_band_mass`,
  band 0.2) of the teacher-forced alignment on the new store's val split at step 0, for the
  fine-tune (weights from the base) and the scratch run (random weights).
* ``target_val_loss``: the scratch run's best validation loss within ``--scratch-steps``;
  ``steps_to_target``: the first validation step at which each run is at or below it;
  ``ratio``: fine-tune steps / scratch steps (goal: <= 0.25).
* the same for a fourth run, the fine-tune under ``preset=finetune``'s learning rate and
  schedule (its step counts overridden to the bench's), unless ``--no-preset``;
* ``step0``: alignment metrics and the loss of the val split (one batch) at step 0;
* the validation curves, and wall and CPU seconds of each run (CPU: one core, one thread).

Everything goes through the real commands' functions (prepare, train); runs resume, so a
second call with the same ``--work`` reuses what is there. Progress on stderr, one JSON line
last on stdout. About 16 minutes of one core at the defaults (14 with ``--no-preset``).
Usage: python bench/finetune.py [--work DIR] [--base-steps 600] [--scratch-steps 400]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from neurotts.config import load_config
from neurotts.data.config import PrepareConfig
from neurotts.data.prepare import run as prepare
from neurotts.data.store import FeatureStore
from neurotts.models.alignment import alignment_metrics
from neurotts.models.tacotron2 import decoder_lengths
from neurotts.training.config import load_train_config
from neurotts.training.init_from import initialise
from neurotts.training.logging import read_train_log
from neurotts.training.loop import train
from neurotts.training.tasks import build_task

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ljspeech-sample/LJSpeech-1.1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/neurotts-bench-finetune"))
    p.add_argument("--base-clips", type=int, default=200)
    p.add_argument("--base-steps", type=int, default=600)
    p.add_argument("--scratch-steps", type=int, default=400)
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="steps of the fine-tune (default: half of --scratch-steps)")
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--max-duration", type=float, default=6.0,
                   help="clips longer than this many seconds are left out (CPU time)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-preset", action="store_true",
                   help="skip the fourth run (the fine-tune again under preset=finetune)")
    return p.parse_args(argv)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def split_corpus(work: Path, n_base: int) -> tuple[Path, Path]:
    """Two LJSpeech-layout corpora of the sample (wavs linked, not copied): the first
    ``n_base`` rows by id, and the rest."""
    rows = sorted(line for line in (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()
                  if line)
    out = []
    for name, part in (("base", rows[:n_base]), ("new", rows[n_base:])):
        root = work / f"corpus_{name}"
        (root / "wavs").mkdir(parents=True, exist_ok=True)
        for line in part:
            uid = line.split("|", 1)[0]
            link = root / "wavs" / f"{uid}.wav"
            if not link.exists():
                os.symlink(SAMPLE / "wavs" / f"{uid}.wav", link)
        (root / "metadata.csv").write_text("\n".join(part) + "\n", encoding="utf-8")
        out.append(root)
    return out[0], out[1]


def prepared(corpus: Path, out: Path, symbol_set: str, max_duration: float) -> Path:
    if not (out / "manifest.jsonl").is_file():
        cfg = load_config("prepare", PrepareConfig, [
            f"data.root={corpus}", f"out={out}", f"text={symbol_set}", "data.split.val_size=10",
            "data.split.test_size=2", f"audio.max_duration={max_duration}", "num_workers=1"])
        with contextlib.redirect_stdout(sys.stderr):  # its progress bar: stdout keeps the JSON
            prepare(cfg, Console(file=io.StringIO()))
    return out


def train_config(store: Path, run_dir: Path, steps: int, args: argparse.Namespace, *extra: str):
    return load_train_config([
        "experiment=tiny", f"data.features={store}", f"run.dir={run_dir}",
        f"trainer.max_steps={steps}", f"trainer.batch_size={args.batch_size}",
        f"trainer.val_every={args.val_every}", "trainer.val_batches=0", "trainer.log_every=50",
        f"trainer.checkpoint_every={steps}", "trainer.media.griffin_lim_iters=0",
        "trainer.cpu_threads=1", f"trainer.seed={args.seed}", *extra])


def run_training(cfg: Any, label: str) -> dict[str, float]:
    """Wall and CPU seconds of one run (one thread, loader in-process: CPU = one core's time)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    note(f"[{label}] training to step {cfg.trainer.max_steps} in {cfg.run.dir}")
    log = io.StringIO()
    train(cfg, Console(file=log, width=200))
    seconds = {"wall": round(time.perf_counter() - t0, 1), "cpu": round(time.process_time() - cpu0, 1)}
    note(f"[{label}] done: {seconds}")
    return seconds


def val_curve(run_dir: Path) -> dict[int, float]:
    log = read_train_log(run_dir / "train_log.jsonl")
    return {step: values["val/loss"] for step, values in sorted(log.items()) if "val/loss" in values}


@torch.no_grad()
def band_mass_at_start(cfg: Any, init_from: Path | None) -> dict[str, float]:
    """Alignment metrics and loss of the model as a run starts (seeded as training seeds
    it), teacher forced over the store's whole val split as one batch, in eval mode."""
    store = FeatureStore(cfg.data.features)
    torch.manual_seed(cfg.trainer.seed)
    task = build_task(cfg, store)
    if init_from is not None:
        initialise(str(init_from), task.model, task.name, store, cfg.data.normalize_mels)
    model = task.model.eval()
    items = [task.dataset("val", cfg.trainer.seed)[i] for i in range(len(store.split("val")))]
    batch = task.collate(items)
    out = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
    dec = decoder_lengths(batch.mel_lengths, task.cfg.reduction_factor)
    metrics = alignment_metrics(out.alignments.float(), dec, batch.text_lengths).as_dict()
    return {**metrics, "val_loss": float(task.loss(model, batch, 0)[0])}


def first_at_or_below(curve: dict[int, float], target: float) -> int | None:
    return next((step for step, loss in curve.items() if loss <= target), None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if not (SAMPLE / "metadata.csv").is_file():
        raise SystemExit(f"the LJSpeech sample is not at {SAMPLE}")
    torch.set_num_threads(1)
    ft_steps = args.finetune_steps or args.scratch_steps // 2
    work = args.work
    started = time.perf_counter()
    base_corpus, new_corpus = split_corpus(work, args.base_clips)
    base_store = prepared(base_corpus, work / "store_base_chars", "characters", args.max_duration)
    new_store = prepared(new_corpus, work / "store_new_arpabet", "arpabet", args.max_duration)
    base_cfg = train_config(base_store, work / "run_base", args.base_steps, args)
    seconds = {"base": run_training(base_cfg, "base")}
    scratch_cfg = train_config(new_store, work / "run_scratch", args.scratch_steps, args)
    ft_cfg = train_config(new_store, work / "run_finetune", ft_steps, args,
                          f"init_from={work / 'run_base'}")
    start = {"finetune": band_mass_at_start(ft_cfg, work / "run_base"),
             "scratch": band_mass_at_start(scratch_cfg, None)}
    seconds["scratch"] = run_training(scratch_cfg, "scratch")
    seconds["finetune"] = run_training(ft_cfg, "finetune")
    runs = ["scratch", "finetune"]
    if not args.no_preset:  # the same fine-tune under preset=finetune's lr and schedule
        preset_cfg = train_config(new_store, work / "run_finetune_preset", ft_steps, args,
                                  f"init_from={work / 'run_base'}", "preset=finetune")
        seconds["finetune_preset"] = run_training(preset_cfg, "finetune_preset")
        runs.append("finetune_preset")
    curves = {name: val_curve(work / f"run_{name}") for name in runs}
    target = min(curves["scratch"].values())
    steps = {name: first_at_or_below(curve, target) for name, curve in curves.items()}
    ratio = (steps["finetune"] / steps["scratch"]
             if steps["finetune"] is not None and steps["scratch"] else None)
    stores = {name: FeatureStore(path) for name, path in (("base", base_store), ("new", new_store))}
    init = ckpt_init_from(work / "run_finetune")
    return {
        "bench": "finetune",
        "setup": {"model": "experiment=tiny tacotron2", "base_steps": args.base_steps,
                  "scratch_steps": args.scratch_steps, "finetune_steps": ft_steps,
                  "batch_size": args.batch_size, "val_every": args.val_every, "seed": args.seed,
                  "train_utterances": {k: len(s.split("train")) for k, s in stores.items()},
                  "val_utterances": {k: len(s.split("val")) for k, s in stores.items()},
                  "symbols": {k: len(s.symbols) for k, s in stores.items()},
                  "symbol_rules": init.get("symbols", {}).get("rules"),
                  "train_minutes": init.get("data_check", {}).get("minutes")},
        "band_mass_step0": {k: round(v["band_mass"], 3) for k, v in start.items()},
        "finetune_val_at_first_check": next(iter(curves["finetune"].values()), None),
        "step0": {k: {m: round(x, 3) for m, x in v.items()} for k, v in start.items()},
        "target_val_loss": round(target, 4),
        "steps_to_target": steps,
        "ratio": None if ratio is None else round(ratio, 3),
        "goal_ratio_at_most": 0.25,
        "val_curves": {k: {s: round(v, 4) for s, v in c.items()} for k, c in curves.items()},
        "seconds": seconds,
        "cpu_s_total": round(time.process_time(), 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_avg": os.getloadavg()[0],
    }


def ckpt_init_from(run_dir: Path) -> dict[str, Any]:
    from neurotts import checkpoint as ckpt

    path = ckpt.resolve_checkpoint(run_dir)
    return ckpt.load_checkpoint(path).get("init_from") or {}


if __name__ == "__main__":
    print(json.dumps(main()))
