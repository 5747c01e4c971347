"""Peak memory of ``neurotts synth`` on one long paragraph: bounded by ``batch_size`` pieces.

Each measurement is a fresh ``neurotts synth`` subprocess (tiny Tacotron 2 from
``experiment=tiny``, Griffin-Lim) whose peak resident set size is read from ``os.wait4``.
For each input length (default 2,000 and 20,000 characters of LJSpeech text, one paragraph) it
runs the current code at ``batch_size=16`` and, as the baseline, the same code with a batch
large enough to hold every piece of the paragraph at once, which is how synth batched before
(all pieces of one input in one batch). ``--baseline-tree DIR`` runs the baseline with another
checkout's code instead (``PYTHONPATH=DIR``), e.g. the commit before the change.

Prints one JSON line last: per length and contender, peak RSS (MiB), wall seconds and audio
seconds, and the ratios of the longest to the shortest input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TEXTS = SHARED / "ljspeech-texts" / "metadata.csv"
SAMPLE = SHARED / "ljspeech-sample" / "LJSpeech-1.1"


def neurotts(args: list[str], pythonpath: Path, check: bool = True) -> dict[str, float]:
    """Run one CLI command in a fresh process; returns its peak RSS (MiB) and wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    cmd = [sys.executable, "-c", "from neurotts.cli import main; main()", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        stderr = proc.stderr.read() if proc.stderr is not None else b""
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted: do not leave the child running
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{stderr.decode()[-2000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def paragraph(n_chars: int, texts: Path = TEXTS) -> str:
    """``n_chars`` characters of LJSpeech text (``texts``: an LJSpeech metadata.csv) as one
    line, or of made-up sentences when that file is absent."""
    if texts.is_file():
        rows = texts.read_text(encoding="utf-8").splitlines()
        sentences = [r.split("|")[2].strip() for r in rows]
    else:
        sentences = [f"This is sentence number {i}, read aloud at an even pace." for i in range(5000)]
    out: list[str] = []
    size = 0
    for s in sentences:
        if size >= n_chars:
            break
        out.append(s)
        size += len(s) + 1
    return " ".join(out)[:n_chars]


def build_model(work: Path, pythonpath: Path) -> Path:
    """``experiment=tiny`` Tacotron 2 (20 steps: a real checkpoint, not a voice). Like any
    barely trained model it rarely emits a stop token, so each piece runs to its length guard;
    the guard is set to 3 frames per symbol (default 12) to keep the 20k-character runs to
    minutes on a small CPU while the audio still grows with the text."""
    if (SAMPLE / "metadata.csv").is_file():
        corpus = SAMPLE
        split = ["data.split.val_size=2", "data.split.test_size=2", "data.exclude=null"]
        rows = "\n".join((SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()[:12])
        (work / "meta.csv").write_text(rows + "\n", encoding="utf-8")
        split.append(f"data.metadata={work / 'meta.csv'}")
    else:
        corpus = work / "toy"
        neurotts(["toy-corpus", str(corpus), "-n", "12"], pythonpath)
        split = ["data.split.val_size=2", "data.split.test_size=2"]
    neurotts(["prepare", f"data.root={corpus}", f"out={work / 'store'}", *split], pythonpath)
    run = work / "tts"
    neurotts(["train", "model=tacotron2", "experiment=tiny", f"data.features={work / 'store'}",
              f"run.dir={run}", "model.inference.max_frames_per_symbol=3"], pythonpath)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--acoustic", type=Path, help="a trained Tacotron 2 (default: train a tiny one)")
    ap.add_argument("--chars", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--baseline-tree", type=Path, help="code for the baseline (default: this one)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--texts", type=Path, default=TEXTS, help="LJSpeech metadata.csv to take text from")
    args = ap.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        acoustic = args.acoustic or build_model(work, ROOT)
        contenders = {"bounded": (ROOT, [f"batch_size={args.batch_size}"])}
        if not args.skip_baseline:
            contenders["one_batch"] = (args.baseline_tree or ROOT, ["batch_size=100000"])
        for n in args.chars:
            text = paragraph(n, args.texts)
            for name, (tree, extra) in contenders.items():
                wav = work / f"{name}_{n}.wav"
                r = neurotts(["synth", text, "--acoustic", str(acoustic), "--vocoder", "griffinlim",
                              "-o", str(wav), "--device", "cpu", *extra], tree)
                r["audio_s"] = round(sf.info(str(wav)).duration, 1)
                results.setdefault(str(n), {})[name] = r
                print(f"{n} chars, {name}: {r}", file=sys.stderr, flush=True)
    lo, hi = str(min(args.chars)), str(max(args.chars))
    ratios = {name: {"rss": round(results[hi][name]["peak_rss_mib"] / results[lo][name]["peak_rss_mib"], 2),
                     "audio": round(results[hi][name]["audio_s"] / max(results[lo][name]["audio_s"], 1e-9), 2)}
              for name in results[lo]}
    print(json.dumps({"bench": "synth_memory", "batch_size": args.batch_size,
                      "text": str(args.texts) if args.texts.is_file() else "made-up", "results": results,
                      f"ratio_{hi}_to_{lo}": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
