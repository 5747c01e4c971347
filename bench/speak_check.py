"""Does a Tacotron 2 trained here speak? Free-running CER of its training lines on the CPU.

Picks short clips from the LJSpeech sample (``--min-s``..``--max-s`` seconds as recorded, at
least ``--min-words`` words; the first ``--clips`` by id), prepares them with ARPAbet input,
trains ``experiment=small_data`` on the CPU (plus any trailing Hydra overrides) and, at
process-CPU-time marks, synthesises ``--eval-lines`` of the *training* lines free-running with
Griffin-Lim, and the same lines teacher-forced, and scores both with neurotts's own
pocketsphinx recogniser (character error rate, corpus-level). The recordings of those lines
and Griffin-Lim of their own mels are scored once as the baseline of the same run.

Budget: the training's process CPU time (user + sys of every thread of this process while
``train`` runs; data loading is in-process, ``data.num_workers=0``), ``--cpu-seconds``
(default 2400 = 2 cores x 20 min), and optionally wall time, ``--minutes``. CPU time is the
figure on a shared machine, where wall time depends on the neighbours; both are reported with
the load average. Evaluation (synthesis, Griffin-Lim, ASR) is not counted.

What it proves: the model, loop and recipe can learn to *say* lines intelligibly from a few
minutes of speech on a CPU. What it does not: these are memorised training lines, not a
held-out voice (``make bench-gpu`` scores unseen sentences).

Prints progress to stderr and ONE JSON line last on stdout.
Usage: python bench/speak_check.py [--cpu-seconds 2400] [--short] [--work DIR] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared/data/ljspeech-sample/LJSpeech-1.1"


@dataclass(frozen=True)
class Clip:
    id: str
    seconds: float
    text: str  # the normalised transcript (metadata.csv's third column)


def log(msg: str) -> None:
    print(f"[speak_check] {msg}", file=sys.stderr, flush=True)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> float:
    """User + system CPU time of this whole process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------ data


def pick_clips(sample: Path, n: int, min_s: float, max_s: float, min_words: int) -> list[Clip]:
    """The first ``n`` rows by id whose recording lasts ``min_s``..``max_s`` s (as recorded,
    before silence trimming) with at least ``min_words`` words."""
    rows = [line.split("|") for line in (sample / "metadata.csv").read_text().splitlines() if line]
    clips = []
    for row in sorted(rows):
        seconds = sf.info(str(sample / "wavs" / f"{row[0]}.wav")).duration
        if min_s <= seconds <= max_s and len(row[-1].split()) >= min_words:
            clips.append(Clip(row[0], seconds, row[-1]))
    if len(clips) < n:
        raise SystemExit(f"speak_check: {sample}/metadata.csv has {len(clips)} clips of "
                         f"{min_s}-{max_s} s with >= {min_words} words, {n} asked (--clips)")
    return clips[:n]


def prepare_store(clips: list[Clip], sample: Path, work: Path, n_val: int) -> Path:
    """A corpus folder of just these clips (metadata rows + links to the wavs) and its ARPAbet
    feature store; reused when the clip list is the same."""
    corpus, store = work / "corpus", work / "store"
    rows = "\n".join(f"{c.id}|{c.text}|{c.text}" for c in clips) + "\n"
    if (corpus / "metadata.csv").is_file() and (corpus / "metadata.csv").read_text() == rows \
            and (store / "manifest.jsonl").is_file():
        return store
    (corpus / "wavs").mkdir(parents=True, exist_ok=True)
    for c in clips:
        link = corpus / "wavs" / f"{c.id}.wav"
        if not link.exists():
            link.symlink_to(sample / "wavs" / f"{c.id}.wav")
    (corpus / "metadata.csv").write_text(rows)
    cmd = [sys.executable, "-m", "neurotts.cli", "prepare", f"data.root={corpus}", f"out={store}",
           "text=arpabet", "data.split.method=hash", f"data.split.val_size={n_val}",
           "data.split.test_size=0", "num_workers=1"]
    log("preparing: " + " ".join(cmd[3:]))
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return store


# ------------------------------------------------------------------------------ scoring


class Scorer:
    """Griffin-Lim + pocketsphinx CER of a list of lines (one recogniser, reused)."""

    def __init__(self, store: Any, uids: list[str], gl_iters: int, wav_dir: Path | None):
        from neurotts.evaluation.asr import Recognizer

        self.store, self.uids, self.gl_iters, self.wav_dir = store, uids, gl_iters, wav_dir
        self.refs = [store[u].normalized for u in uids]
        self.asr = Recognizer()

    def cer(self, wavs: list[np.ndarray], tag: str) -> float:
        from neurotts.evaluation.asr import corpus_error_rates

        sr = self.store.audio.sample_rate
        hyps = [self.asr.transcribe(w, sr) for w in wavs]
        if self.wav_dir is not None:
            folder = self.wav_dir / tag
            folder.mkdir(parents=True, exist_ok=True)
            for uid, wav in zip(self.uids, wavs, strict=True):
                sf.write(folder / f"{uid}.wav", np.clip(wav, -1, 1), sr)
            (folder / "transcripts.tsv").write_text(
                "".join(f"{u}\t{r}\t{h}\n" for u, r, h in zip(self.uids, self.refs, hyps, strict=True)))
        return round(corpus_error_rates(self.refs, hyps).cer, 4)

    def vocode(self, log_mels: list[torch.Tensor]) -> list[np.ndarray]:
        """``(T, n_mels)`` log-mels -> waveforms."""
        from neurotts.training.media import griffin_lim

        return [griffin_lim(m, self.store.audio, self.gl_iters).numpy() for m in log_mels]

    def baseline(self) -> dict[str, float]:
        recordings = [self.store.audio_float(u) for u in self.uids]
        mels = [torch.from_numpy(self.store.mel(u)) for u in self.uids]
        return {"recordings_cer": self.cer(recordings, "recordings"),
                "griffin_lim_recordings_cer": self.cer(self.vocode(mels), "griffin_lim_recordings")}


@torch.no_grad()
def evaluate(run_dir: Path, scorer: Scorer, step: int) -> dict[str, Any]:
    """Free-running and teacher-forced CER of the scorer's lines from the run's newest
    checkpoint, with how many free-running lines hit the length guard and their length
    relative to the recording's."""
    from neurotts.checkpoint import load_trained

    # This step's periodic checkpoint, not the run folder (which means best.pt, the lowest
    # validation loss, and that is not the newest).
    trained = load_trained(run_dir / "checkpoints" / f"step_{step:08d}.pt", "tacotron2")
    model, norm, store = trained.model, trained.mel_norm, scorer.store
    utts = [store[u] for u in scorer.uids]
    text = torch.nn.utils.rnn.pad_sequence([torch.tensor(u.ids) for u in utts], batch_first=True)
    text_lengths = torch.tensor([len(u.ids) for u in utts])
    mels = [torch.from_numpy(store.mel(u.id)) for u in utts]
    with torch.random.fork_rng():
        torch.manual_seed(0)  # prenet dropout stays on at inference: same draw every time
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            free = model.infer(text, text_lengths)
        target = torch.nn.utils.rnn.pad_sequence([norm.normalize(m) for m in mels], batch_first=True)
        mel_lengths = torch.tensor([len(m) for m in mels])
        forced = model(text, text_lengths, target, mel_lengths)
    free_mels = [norm.inverse(free.mels[i, : int(free.mel_lengths[i])]) for i in range(len(utts))]
    forced_mels = [norm.inverse(forced.mel_after[i, : len(m)]) for i, m in enumerate(mels)]
    ratio = float(free.mel_lengths.sum()) / float(mel_lengths.sum())
    return {"step": trained.step,
            "free_cer": scorer.cer(scorer.vocode(free_mels), f"step{step}_free"),
            "tf_cer": scorer.cer(scorer.vocode(forced_mels), f"step{step}_forced"),
            "hit_max": int(free.hit_max.sum()), "length_ratio": round(ratio, 3)}


def cached_baseline(scorer: Scorer, path: Path, gl_iters: int) -> dict[str, Any]:
    """The recordings' CER, computed once per set of lines (it does not depend on training)."""
    key = {"uids": scorer.uids, "gl_iters": gl_iters}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["baseline"]
    baseline = scorer.baseline()
    path.write_text(json.dumps({"key": key, "baseline": baseline}) + "\n")
    return baseline


# ------------------------------------------------------------------------------ training


@dataclass
class Budget:
    cpu_s: float
    wall_s: float  # 0 = no wall-time limit
    used_cpu: float = 0.0
    used_wall: float = 0.0

    def left_fraction(self) -> float:
        """The smaller share of either budget still left (1 = untouched)."""
        shares = [1 - self.used_cpu / self.cpu_s]
        if self.wall_s > 0:
            shares.append(1 - self.used_wall / self.wall_s)
        return min(shares)


# What the check trains: experiment=small_data with these settings on top (each one's figure
# is in the README's speak-check table, measured with this script):
CHECK_SETTINGS = [
    # The CPU: loading in this process, so that its CPU time is counted; no TensorBoard audio.
    "trainer.device=cpu", "data.num_workers=0", "trainer.media.griffin_lim_iters=0",
    # More updates per CPU second: batch 8 (the recipe's 32 is for a GPU) at twice its lr.
    # Free CER at ~790 CPU s: 0.72 against batch 16 at 1e-3's 0.89.
    "trainer.batch_size=8", "trainer.optimizer.lr=2e-3",
    # The check memorises its lines, so the recipe's regularisation only slows it: encoder
    # and postnet dropout 0.5 -> 0.1, no zoneout (prenet dropout stays: it is what makes the
    # decoder use the attention). Free CER at ~800 CPU s: 0.51 against 0.72.
    "model.encoder.dropout=0.1", "model.postnet.dropout=0.1", "model.decoder.zoneout=0",
]
# (The recipe's noise on the fed frames, model.teacher_forcing.input_noise=0.3, came from here:
# 0.27 against 0.51 at ~780 CPU s.)


class Trainer:
    """``neurotts train`` in this process, run up to a step at a time (each call resumes the
    run folder exactly where the last one stopped), with its CPU and wall time summed."""

    def __init__(self, store: Path, run_dir: Path, overrides: list[str], log_file: Path):
        self.store, self.run_dir, self.overrides = store, run_dir, overrides
        self.log_file = log_file
        self.step = 0

    def train_to(self, step: int, budget: Budget) -> None:
        from rich.console import Console

        from neurotts.training.config import load_train_config
        from neurotts.training.loop import train

        cfg = load_train_config(["experiment=small_data", f"data.features={self.store}",
                                 f"run.dir={self.run_dir}", *CHECK_SETTINGS,
                                 *self.overrides, f"trainer.max_steps={step}"])
        with open(self.log_file, "a") as f:
            console = Console(file=f, markup=False, emoji=False, highlight=False, width=200)
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            summary = train(cfg, console)
            budget.used_cpu += cpu_seconds() - cpu0
            budget.used_wall += time.perf_counter() - wall0
        self.step = summary.step


def next_step(step: int, cpu_per_step: float, budget: Budget, mark_cpu: float) -> int:
    """The step at which the training's CPU time reaches ``mark_cpu`` (or the budget's end)
    at the rate measured so far."""
    target_cpu = min(mark_cpu, budget.cpu_s)
    steps = (target_cpu - budget.used_cpu) / cpu_per_step
    if budget.wall_s > 0:
        wall_per_step = budget.used_wall / max(step, 1)
        steps = min(steps, (budget.wall_s - budget.used_wall) / wall_per_step)
    return step + max(int(steps), 1)


def run_check(args: argparse.Namespace, scorer: Scorer, trainer: Trainer) -> list[dict[str, Any]]:
    """Train in chunks that end at each ``--eval-every-cpu`` mark, evaluating after each."""
    budget = Budget(args.cpu_seconds, args.minutes * 60)
    curve: list[dict[str, Any]] = []
    trainer.train_to(args.probe_steps, budget)  # measures the CPU time per step
    mark = args.eval_every_cpu
    while budget.left_fraction() > 0.01:
        cpu_per_step = budget.used_cpu / trainer.step
        if budget.used_cpu >= mark:
            mark += args.eval_every_cpu * math.ceil((budget.used_cpu - mark + 1) / args.eval_every_cpu)
        target = next_step(trainer.step, cpu_per_step, budget, mark)
        trainer.train_to(target, budget)
        point = {"step": trainer.step, "cpu_s": round(budget.used_cpu, 1),
                 "wall_s": round(budget.used_wall, 1), "load": load_avg()}
        point.update(evaluate(trainer.run_dir, scorer, trainer.step))
        curve.append(point)
        log(json.dumps(point))
        with open(args.work / "curve.jsonl", "a") as f:  # survives a run stopped early
            f.write(json.dumps(point) + "\n")
        mark += args.eval_every_cpu
        if args.stop_at_target and point["free_cer"] <= args.target:
            break
    return curve


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", type=Path, default=SAMPLE, help="LJSpeech-layout folder")
    p.add_argument("--work", type=Path, default=ROOT / "outputs/speak-check",
                   help="corpus, store, run folder and wavs (the run folder is started afresh)")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--val", type=int, default=4, help="of the clips, held out for validation")
    p.add_argument("--min-s", type=float, default=2.8)
    p.add_argument("--max-s", type=float, default=4.5)
    p.add_argument("--min-words", type=int, default=5)
    p.add_argument("--eval-lines", type=int, default=12, help="training lines synthesised")
    p.add_argument("--cpu-seconds", type=float, default=2400.0,
                   help="training budget in process CPU seconds (2 cores x 20 min)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="training budget in wall minutes as well (0 = none)")
    p.add_argument("--eval-every-cpu", type=float, default=400.0,
                   help="evaluate each time training has used this many more CPU seconds")
    p.add_argument("--probe-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=1234, help="trainer.seed (same seed, same curve)")
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--target", type=float, default=0.25)
    p.add_argument("--stop-at-target", action="store_true")
    p.add_argument("--keep-wavs", action="store_true", help="write every scored wav under WORK/wavs")
    p.add_argument("--short", action="store_true",
                   help="a quick check: 4 lines, 150 CPU s, one evaluation (does not reach the target)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for `neurotts train`")
    args = p.parse_args()
    if args.short:
        args.eval_lines, args.cpu_seconds, args.eval_every_cpu = 4, 150.0, 150.0
    return args


def main() -> int:
    args = parse_args()
    from neurotts.data.store import FeatureStore

    args.work.mkdir(parents=True, exist_ok=True)
    load_start = load_avg()
    clips = pick_clips(args.sample, args.clips, args.min_s, args.max_s, args.min_words)
    store = FeatureStore(prepare_store(clips, args.sample, args.work, args.val))
    train_ids = [u.id for u in store.split("train")]
    # Spread over the train split (sorted by id) rather than its first few.
    uids = [train_ids[i] for i in np.linspace(0, len(train_ids) - 1, args.eval_lines).astype(int)]
    scorer = Scorer(store, uids, args.gl_iters, args.work / "wavs" if args.keep_wavs else None)
    baseline = cached_baseline(scorer, args.work / "baseline.json", args.gl_iters)
    log(f"baseline {baseline}")
    run_dir = args.work / "run"
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    (args.work / "curve.jsonl").unlink(missing_ok=True)
    overrides = [f"trainer.cpu_threads={args.threads}", f"trainer.seed={args.seed}", *args.overrides]
    torch.set_num_threads(args.threads)
    trainer = Trainer(store.root, run_dir, overrides, args.work / "train.log")
    curve = run_check(args, scorer, trainer)
    reached = next((p for p in curve if p["free_cer"] <= args.target), None)
    from neurotts.checkpoint import load_trained

    newest = run_dir / "checkpoints" / f"step_{trainer.step:08d}.pt"
    params = sum(p.numel() for p in load_trained(newest, "tacotron2").model.parameters())
    result = {"bench": "speak_check", "clips": len(clips), "train": len(train_ids),
              "speech_s": round(sum(c.seconds for c in clips), 1), "eval_lines": len(uids),
              "threads": args.threads, "seed": args.seed, "settings": CHECK_SETTINGS,
              "overrides": args.overrides, "params": params,
              "cpu_budget_s": args.cpu_seconds, "wall_budget_s": args.minutes * 60,
              "baseline": baseline, "curve": curve, "target": args.target,
              "reached": None if reached is None else {k: reached[k] for k in ("step", "cpu_s", "wall_s")},
              # Free-running output of one checkpoint can slip (a loss spike at a constant
              # lr): how many points after the first at the target were above it again.
              "above_after_reached": None if reached is None else sum(
                  p["free_cer"] > args.target for p in curve[curve.index(reached) + 1:]),
              "final_free_cer": curve[-1]["free_cer"] if curve else None,
              "load_start": load_start, "load_end": load_avg(), "cpus": os.cpu_count()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
