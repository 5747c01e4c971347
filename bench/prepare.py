"""Benchmark ``neurotts prepare`` against the naive feature extraction the anchors use.

Baseline (r9y9/NVIDIA-style preprocessing): one file at a time, ``librosa.load`` +
``librosa.feature.melspectrogram`` + ``np.save``. Both run in this process, on the same files,
with a warm page cache, and real time is measured against the corpus's original audio length.

Prints one JSON line last: x_realtime, baseline_x_realtime, ratio, peak memory, sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"


def baseline(corpus: Path, out: Path, audio: dict, limit: int | None) -> float:
    """The naive path; returns wall seconds."""
    ids = [ln.split("|", 1)[0] for ln in (corpus / "metadata.csv").read_text().splitlines()][:limit]
    t0 = time.perf_counter()
    for uid in ids:
        y, sr = librosa.load(corpus / "wavs" / f"{uid}.wav", sr=audio["sample_rate"])
        mel = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=audio["n_fft"], hop_length=audio["hop_length"],
            win_length=audio["win_length"], n_mels=audio["n_mels"], fmin=audio["fmin"],
            fmax=audio["fmax"], power=1.0,
        )
        np.save(out / f"{uid}.npy", np.log(np.maximum(mel, 1e-5)))
    return time.perf_counter() - t0


def corpus_seconds(corpus: Path, limit: int | None) -> float:
    ids = [ln.split("|", 1)[0] for ln in (corpus / "metadata.csv").read_text().splitlines()][:limit]
    total = 0.0
    for uid in ids:
        info = sf.info(str(corpus / "wavs" / f"{uid}.wav"))
        total += info.frames / info.samplerate
        # Read once so both contenders start from a warm page cache.
        (corpus / "wavs" / f"{uid}.wav").read_bytes()
    return total


def peak_rss_mib() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main": round(me, 1), "largest_worker": round(kids, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--workers", type=int, default=0, help="0: one per core")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows (baseline)")
    args = ap.parse_args()
    if not (args.corpus / "metadata.csv").is_file():
        print(f"error: {args.corpus}: no LJSpeech corpus there", file=sys.stderr)
        return 1

    from neurotts.config import load_config
    from neurotts.data import prepare
    from neurotts.data.config import PrepareConfig

    seconds = corpus_seconds(args.corpus, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("prepare", PrepareConfig, [
            f"data.root={args.corpus}", f"out={tmp}/store", f"num_workers={args.workers}",
            "data.split.val_size=10", "data.split.test_size=20",
        ])
        audio = {k: getattr(cfg.audio, k) for k in
                 ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax")}
        (Path(tmp) / "base").mkdir()
        base_s = baseline(args.corpus, Path(tmp) / "base", audio, args.limit)
        rss_before = peak_rss_mib()
        t0 = time.perf_counter()
        summary = prepare.run(cfg)
        ours_s = time.perf_counter() - t0
        rerun_t0 = time.perf_counter()
        prepare.run(cfg)
        rerun_s = time.perf_counter() - rerun_t0
    if args.limit is not None:
        base_s *= summary.kept / max(args.limit, 1)  # scale the partial baseline to the corpus
    x_rt, base_rt = seconds / ours_s, seconds / base_s
    print(json.dumps({
        "corpus_minutes": round(seconds / 60, 2),
        "utterances": summary.kept,
        "workers": args.workers or os.cpu_count(),
        "seconds": round(ours_s, 3),
        "baseline_seconds": round(base_s, 3),
        "x_realtime": round(x_rt, 1),
        "baseline_x_realtime": round(base_rt, 1),
        "ratio": round(x_rt / base_rt, 2),
        "rerun_seconds": round(rerun_s, 3),
        # Peak resident memory of this process (imports, the baseline, then prepare) and of the
        # largest forked worker (which shares the parent's pages); prepare's own addition to the
        # parent's peak shows that it streams rather than holding the corpus.
        "peak_rss_mib": peak_rss_mib(),
        "prepare_added_peak_rss_mib": round(peak_rss_mib()["main"] - rss_before["main"], 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
