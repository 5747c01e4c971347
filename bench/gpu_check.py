"""Every GPU check of neurotts in one command (``make bench-gpu``), about 15 minutes on one H100.

Stages, in order, each under ``timeout --foreground`` with its own cap inside the total budget
(a stage that fails or runs out of time is recorded and the next one still runs):

1. ``tests``: ``pytest -m gpu tests/`` (CUDA graphs == eager, log-mel CPU == GPU, ...).
2. ``bench_tacotron2``: ``bench/train_tacotron2.py --gpu-set quick`` (batch 128 and 256, r=1 and
   r=2, fp32 with TF32 / bf16 / fp16, ours eager and graphed, torchaudio's Tacotron2 beside).
3. ``train_graphed``: real training on ``--store`` (``experiment=tacotron2_ljspeech``,
   ``precision=auto``, CUDA graphs on) for ``--train-seconds``, stopped by SIGTERM (the loop
   saves a checkpoint); ``train_eager``: the same command and seed without graphs for
   ``--eager-steps`` steps. ``loss_curve`` compares the two over their common steps.
4. ``synth``: a few sentences from the graphed run's checkpoint (Griffin-Lim).
5. ``bench_wavenet``: bench/wavenet_generate.py with short CPU settings; its GPU part measures
   cached generation eager and with a CUDA graph at batch 1/16/64, and a 5 s utterance folded
   as synth does it (``gpu_utterance_rtf``: the WaveNet real-time target).
6. ``train_small_data`` and ``quality``: does the voice speak sentences it never heard?
   ``experiment=small_data`` trains on ``--store`` for ``--quality-minutes`` (default 6;
   stopped by SIGTERM, which saves a checkpoint), then bench/heldout_quality.py synthesises
   bench/sentences_heldout.txt (24 sentences of our own, none in LJSpeech) with Griffin-Lim
   and the summary's ``quality`` section gets their CER (pocketsphinx, where installed; else
   null, and ``python bench/heldout_quality.py --score-only OUT/quality`` scores the kept wavs
   later), max-decoder-steps hits, attention health and real-time factor; the wavs stay in
   ``OUT/quality/wavs``. The recipe is meant for phonemes: prepare the store with
   ``text=arpabet`` (the summary's ``quality.text`` says what the store holds). For scale: the
   CPU's speak check (bench/speak_check.py) scores the same recipe on its *training* lines,
   memorised; these sentences are unseen.

Writes ``OUT/summary.json`` (rewritten after every stage) and ``OUT/logs/<stage>.log``.
On the GPU machine (../shared/gpu-kit/README.md), from the project root::

    source .gpu/setup.sh; make bench-gpu PY=python3 STORE=/tmp/store OUT=$OUT/gpu-check

``--dry-run`` runs the same stages on the CPU at toy sizes (``experiment=tiny``, the bench's
``--smoke``; the WaveNet bench is skipped: its GPU part is all that is wanted here; the
small-data run is a few steps and speaks two of the held-out sentences), so the script is
known to work before a GPU session spends its minutes on it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurotts.training.logging import read_train_log

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "Printing, in the only sense with which we are at present concerned, differs from most arts.",
    "The earliest book printed with movable types was the Gutenberg Bible.",
    "It is of a clear and easily read character.",
]
# An untrained toy model never stops by itself: the length guard (frames per symbol) ends it,
# so the dry run speaks a few symbols only.
DRY_SENTENCES = ["It is.", "Yes."]


@dataclass
class Check:
    """The run's settings, its deadline and the summary written as it goes."""

    args: argparse.Namespace
    out: Path
    deadline: float
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self) -> None:
        path = self.out / "summary.json"
        path.with_suffix(".json.part").write_text(json.dumps(self.summary, indent=2) + "\n")
        path.with_suffix(".json.part").replace(path)

    def run(self, stage: str, cmd: list[str], cap: float, stop_ok: bool = False) -> dict[str, Any]:
        """``cmd`` under ``timeout --foreground -s TERM`` (KILL 30 s later), output to
        ``logs/<stage>.log``. ``stop_ok``: being stopped at the time limit is the plan."""
        left = self.deadline - time.monotonic()
        cap *= 3 if self.args.dry_run else 1  # a shared CPU, not a GPU
        if left < 10:
            result = {"status": "skipped", "reason": "out of time"}
        else:
            limit = int(min(cap, left))
            log = self.out / "logs" / f"{stage}.log"
            start = time.monotonic()
            with open(log, "w") as f:
                f.write("$ " + " ".join(cmd) + "\n")
                f.flush()
                rc = subprocess.call(["timeout", "--foreground", "-s", "TERM", "-k", "30",
                                      str(limit), *cmd],
                                     cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            seconds = round(time.monotonic() - start, 1)
            stopped = rc == 124  # timeout's code when it had to stop the command
            status = "ok" if rc == 0 or (stopped and stop_ok) else ("timeout" if stopped else "failed")
            result = {"status": status, "rc": rc, "seconds": seconds, "limit_s": limit,
                      "log": str(log.relative_to(self.out))}
        self.summary["stages"][stage] = result
        self.write()
        print(f"[gpu_check] {stage}: {result['status']}", flush=True)
        return result


def last_json(log: Path) -> dict[str, Any] | None:
    """The last line of a log that parses as a JSON object (the benches print one)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def environment(dry_run: bool) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "dry_run": dry_run, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
        env["capability"] = list(torch.cuda.get_device_capability())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True)
    env["commit"] = commit.stdout.strip() if commit.returncode == 0 else None
    return env


def stage_tests(check: Check) -> None:
    target = "tests/test_graphs.py" if check.args.dry_run else "tests/"
    check.run("tests", [check.args.python, "-m", "pytest", "-q", "-m", "gpu", "-p",
                        "no:cacheprovider", target], cap=60)


def stage_bench(check: Check) -> None:
    cmd = [check.args.python, "bench/train_tacotron2.py", "--gpu-set", "quick"]
    cmd += ["--smoke"] if check.args.dry_run else ["--no-cpu", "--steps", "2"]
    result = check.run("bench_tacotron2", cmd, cap=120)
    if "log" in result:
        result["json"] = last_json(check.out / result["log"])
        check.write()


def train_cmd(check: Check, run_dir: Path, graphed: bool, extra: list[str]) -> list[str]:
    experiment = "tiny" if check.args.dry_run else "tacotron2_ljspeech"
    device = "trainer.device=cpu" if check.args.dry_run else "trainer.device=cuda"
    return [check.args.python, "-m", "neurotts.cli", "train", f"experiment={experiment}",
            "model=tacotron2", f"data.features={check.args.store}", f"run.dir={run_dir}",
            device, "trainer.precision=auto", "trainer.resume=never", "trainer.log_every=1",
            "trainer.val_every=1000000", "trainer.checkpoint_every=1000000",
            "trainer.media.griffin_lim_iters=0", f"trainer.seed={check.args.seed}",
            f"trainer.cuda_graphs.enabled={str(graphed).lower()}", *extra]


def stage_train(check: Check) -> Path:
    """The graphed run (time-limited), then the eager one (step-limited); the loss curves."""
    dry = check.args.dry_run
    graphed_dir, eager_dir = check.out / "run_graphed", check.out / "run_eager"
    # A dry run is on the CPU, where CUDA graphs do not exist: both runs are eager, and their
    # curves must then agree exactly.
    limit = [f"trainer.max_steps={check.args.eager_steps + 2}"] if dry else []
    result = check.run("train_graphed", train_cmd(check, graphed_dir, not dry, limit),
                       cap=check.args.train_seconds, stop_ok=True)
    result["cuda_graphs"] = not dry
    check.run("train_eager", train_cmd(check, eager_dir, False,
                                       [f"trainer.max_steps={check.args.eager_steps}"]),
              cap=check.args.train_seconds / 2)
    check.summary["loss_curve"] = compare_curves(graphed_dir, eager_dir)
    check.write()
    return graphed_dir


def read_steps(run_dir: Path) -> dict[int, dict[str, float]]:
    log = run_dir / "train_log.jsonl"
    return read_train_log(log) if log.is_file() else {}


def rate(steps: dict[int, dict[str, float]], key: str) -> float | None:
    """Median of a per-step rate after the first 10 steps (captures, cuDNN autotuning)."""
    values = [v[key] for s, v in sorted(steps.items()) if s > 10 and key in v]
    return round(statistics.median(values), 3) if values else None


def compare_curves(graphed_dir: Path, eager_dir: Path) -> dict[str, Any]:
    """Per-step training loss of both runs over their common steps. ``within_noise``: the mean
    |graphed - eager| over the second half is at most twice the eager curve's own mean
    step-to-step change there (the random masks differ once batches are padded)."""
    g, e = read_steps(graphed_dir), read_steps(eager_dir)
    common = sorted(s for s in set(g) & set(e) if "train/loss" in g[s] and "train/loss" in e[s])
    result: dict[str, Any] = {"steps_compared": len(common),
                              "graphed_steps": len(g), "eager_steps": len(e),
                              "graphed_steps_per_s": rate(g, "train/steps_per_s"),
                              "eager_steps_per_s": rate(e, "train/steps_per_s"),
                              "graphed_frames_per_s": rate(g, "train/frames_per_s"),
                              "eager_frames_per_s": rate(e, "train/frames_per_s")}
    if len(common) < 4:
        return result
    gl = [g[s]["train/loss"] for s in common]
    el = [e[s]["train/loss"] for s in common]
    diff = [abs(a - b) for a, b in zip(gl, el, strict=True)]
    half = len(common) // 2
    noise = statistics.mean(abs(el[i] - el[i - 1]) for i in range(half, len(el)))
    result.update(graphed_loss=gl, eager_loss=el, max_abs_diff=max(diff),
                  mean_abs_diff_second_half=statistics.mean(diff[half:]),
                  eager_step_to_step_second_half=noise,
                  within_noise=statistics.mean(diff[half:]) <= 2 * noise + 1e-6)
    return result


def stage_synth(check: Check, run_dir: Path) -> None:
    lines = check.out / "sentences.txt"
    lines.write_text("\n".join(DRY_SENTENCES if check.args.dry_run else SENTENCES) + "\n")
    wavs = check.out / "wavs"
    device = "cpu" if check.args.dry_run else "cuda"
    result = check.run("synth", [check.args.python, "-m", "neurotts.cli", "synth", "--input",
                                 str(lines), "--acoustic", str(run_dir), "-o", str(wavs),
                                 "--device", device, "--force"], cap=50)  # a rerun replaces them
    result["wavs"] = sorted(p.name for p in wavs.glob("*.wav")) if wavs.is_dir() else []
    check.write()


def stage_wavenet(check: Check) -> None:
    if check.args.dry_run:
        check.summary["stages"]["bench_wavenet"] = {"status": "skipped",
                                                    "reason": "dry run: its GPU part is the point"}
        check.write()
        return
    result = check.run("bench_wavenet", [check.args.python, "bench/wavenet_generate.py",
                                         "--samples-b1", "1000", "--samples-b16", "500",
                                         "--naive-steps", "1", "--repeats", "1"], cap=60)
    if "log" in result:
        result["json"] = last_json(check.out / result["log"])
        check.write()


def store_text(store: str) -> str | None:
    """The store's symbol set: the recipe expects arpabet (a store prepared with the GPU kit's
    plain command is characters, which the summary then says)."""
    from neurotts.data.store import FeatureStore, StoreError

    try:
        return FeatureStore(store).text.symbol_set
    except (StoreError, OSError):
        return None


def stage_quality(check: Check) -> None:
    """experiment=small_data for --quality-minutes, then the held-out sentences' quality."""
    dry, run_dir = check.args.dry_run, check.out / "run_small_data"
    device = "cpu" if dry else "cuda"
    limit = ["trainer.max_steps=3"] if dry else []
    cmd = [check.args.python, "-m", "neurotts.cli", "train", "experiment=small_data",
           f"data.features={check.args.store}", f"run.dir={run_dir}", f"trainer.device={device}",
           "trainer.precision=auto", "trainer.resume=never", "trainer.media.griffin_lim_iters=0",
           f"trainer.seed={check.args.seed}", *limit]
    # The dry run's cap is scaled x3 like every stage's; its steps are what bound it.
    trained = check.run("train_small_data", cmd, cap=check.args.quality_minutes * 60,
                        stop_ok=True)
    steps = read_steps(run_dir)
    trained.update(steps=max(steps, default=0), steps_per_s=rate(steps, "train/steps_per_s"))
    out = check.out / "quality"
    # The newest checkpoint (the one the stop wrote), not the run folder's best.pt: that is the
    # lowest teacher-forced validation loss, which may be minutes older.
    newest = sorted(run_dir.glob("checkpoints/step_*.pt"))
    acoustic = newest[-1] if newest else run_dir
    cmd = [check.args.python, "bench/heldout_quality.py", "--acoustic", str(acoustic), "--out",
           str(out), "--device", device, *(["--limit", "2"] if dry else [])]
    result = check.run("quality", cmd, cap=90)
    quality = last_json(check.out / result["log"]) if "log" in result else None
    check.summary["quality"] = {"experiment": "small_data", "text": store_text(check.args.store),
                                "train_minutes":
                                check.args.quality_minutes, "train_steps": trained["steps"],
                                **(quality or {"error": "no result: see the quality log"}),
                                "wavs": str((out / "wavs").relative_to(check.out))}
    check.write()


def stage_train_and_synth(check: Check) -> None:
    stage_synth(check, stage_train(check))


# Stage groups in running order (--only picks some, e.g. to rerun one on a GPU machine).
STAGES = {"tests": stage_tests, "bench": stage_bench, "train": stage_train_and_synth,
          "wavenet": stage_wavenet, "quality": stage_quality}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="prepared feature store (e.g. /tmp/store)")
    parser.add_argument("--out", required=True, help="folder for summary.json and the logs")
    parser.add_argument("--budget", type=float, default=470.0,
                        help="seconds for everything but the quality stages (x3 with --dry-run)")
    parser.add_argument("--quality-minutes", type=float, default=6.0,
                        help="experiment=small_data training time before the quality check")
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--eager-steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, about a minute")
    parser.add_argument("--only", default="",
                        help="comma-separated stage groups to run: tests,bench,train,wavenet,quality")
    args = parser.parse_args()
    unknown = set(filter(None, args.only.split(","))) - set(STAGES)
    if unknown:
        parser.error(f"--only {args.only}: no stage group {', '.join(sorted(unknown))}; "
                     f"choose from {','.join(STAGES)}")
    if args.dry_run:
        args.eager_steps = min(args.eager_steps, 4)
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    # The quality stages' own time (training + synthesis) comes on top of --budget.
    budget = (args.budget + args.quality_minutes * 60 + 90) * (3 if args.dry_run else 1)
    check = Check(args, out, time.monotonic() + budget)
    check.summary.update(environment(args.dry_run), store=str(args.store), stages={})
    check.write()
    chosen = set(args.only.split(",")) if args.only else set(STAGES)
    for name in STAGES:
        if name in chosen:
            STAGES[name](check)
    check.summary["seconds"] = round(budget - (check.deadline - time.monotonic()), 1)
    check.write()
    failed = [k for k, v in check.summary["stages"].items() if v["status"] not in ("ok", "skipped")]
    print(f"[gpu_check] summary: {out / 'summary.json'}; not ok: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
