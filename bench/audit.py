"""Benchmark ``neurotts audit`` on the LJSpeech sample: speed, where the time goes, detection.

Runs, each into a fresh folder (nothing reused):

1. the full audit, all checks on (text, audio, transcript alignment, the recogniser on the
   clips that warn), ``--workers`` processes: ``x_realtime`` = audio seconds / wall seconds
   of the whole run, report included;
2. the cheap audio checks alone (``transcript.enabled=false``): ``audio_checks_x_realtime``
   (whole run) and ``audio_checks_measure_x_realtime`` (the measuring stage);
3. the baseline, in the same run on the same cores: plain pocketsphinx decoding of each clip
   as ``neurotts eval`` does it (``Recognizer.transcribe``), over ``--workers`` processes, on
   every ``--baseline-every``-th clip: ``baseline_x_realtime``;
4. a profile of one process over ``--profile-clips`` clips: CPU seconds per step
   (``time_share``), which says which check dominates;
5. detection (unless ``--no-detection``): the audit of a copy of the sample with
   ``--per-kind`` clips of each defect in ``neurotts.audit.corrupt``: precision and recall of
   ``exclude.txt``, and per kind the worst rank in ``audit.tsv``.

This machine is shared, so wall-clock rates depend on its load: the load average is printed,
and ``*_cpu_x_realtime`` give the rate ``--workers`` dedicated cores would reach (audio seconds
over CPU seconds / workers). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"

from neurotts.audit.config import AuditConfig  # noqa: E402
from neurotts.audit.corrupt import corrupt_corpus  # noqa: E402
from neurotts.audit.measures import audio_measures, read_clip  # noqa: E402
from neurotts.audit.run import run as run_audit  # noqa: E402
from neurotts.config import load_config  # noqa: E402
from neurotts.data.formats import read_corpus  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has reaped."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_audit(corpus: Path, out: Path, workers: int, *overrides: str) -> dict[str, float]:
    cfg = load_config("audit", AuditConfig, [f"data.root={corpus}", f"out={out}",
                                             f"num_workers={workers}", *overrides])
    c0, t0 = cpu_seconds(), time.perf_counter()
    summary = run_audit(cfg)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"audio_s": summary.audio_seconds, "wall_s": wall, "cpu_s": cpu,
            "x_realtime": summary.audio_seconds / wall,
            "cpu_x_realtime": summary.audio_seconds / (cpu / workers),
            "stages_s": {k: round(v, 2) for k, v in summary.stage_seconds.items()}}


_recognizer = None


def _decode(path: str) -> float:
    """The baseline's unit of work: what ``neurotts eval`` does to score a recording."""
    import soundfile as sf

    from neurotts.evaluation.asr import Recognizer

    global _recognizer
    if _recognizer is None:
        _recognizer = Recognizer()
    wav, rate = sf.read(path, dtype="float32")
    _recognizer.transcribe(wav, rate)
    return wav.size / rate


def baseline(corpus: Path, every: int, workers: int) -> dict[str, float]:
    rows = read_corpus(corpus, "ljspeech").rows
    paths = [str(r.audio) for r in rows[::every]]
    c0, t0 = cpu_seconds(), time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        audio_s = sum(pool.imap_unordered(_decode, paths))
    pool.join()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"clips": len(paths), "audio_s": audio_s, "x_realtime": audio_s / wall,
            "cpu_x_realtime": audio_s / (cpu / workers)}


def profile(corpus: Path, n: int) -> dict[str, float]:
    """CPU seconds per step over ``n`` clips in this process, and the share of each."""
    import warnings

    from neurotts.audit.transcript import TranscriptChecker
    from neurotts.evaluation.asr import to_asr_pcm
    from neurotts.text.frontend import TextFrontend

    cfg = load_config("audit", AuditConfig, [f"data.root={corpus}", "out=-"])
    rows = read_corpus(corpus, "ljspeech").rows
    rows = rows[:: max(1, len(rows) // n)][:n]
    fe, checker = TextFrontend(cfg.text), TranscriptChecker(cfg.transcript)
    spent = dict.fromkeys(("read", "audio_measures", "text", "resample_16k", "align",
                           "recognise"), 0.0)
    audio_s = 0.0
    warm = read_clip(rows[0].audio)  # first calls load models and libraries: not per-clip costs
    checker.recognise(to_asr_pcm(warm.mono, warm.sample_rate), "warm up")
    checker.align(to_asr_pcm(warm.mono, warm.sample_rate), checker.words("warm up"))
    for row in rows:
        t = time.process_time()
        clip = read_clip(row.audio)
        spent["read"] += time.process_time() - t
        t = time.process_time()
        audio_measures(clip, cfg.levels)
        spent["audio_measures"] += time.process_time() - t
        t = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normalized = fe.encode(row.text)[0]
        spent["text"] += time.process_time() - t
        t = time.process_time()
        pcm = to_asr_pcm(clip.mono, clip.sample_rate)
        spent["resample_16k"] += time.process_time() - t
        t = time.process_time()
        checker.align(pcm, checker.words(normalized))
        spent["align"] += time.process_time() - t
        t = time.process_time()
        checker.recognise(pcm, normalized)  # what a clip the alignment flags costs on top
        spent["recognise"] += time.process_time() - t
        audio_s += clip.samples.shape[0] / clip.sample_rate
    return {"clips": len(rows), "audio_s": round(audio_s, 1),
            **{f"{k}_x_realtime_1core": round(audio_s / max(v, 1e-9), 1) for k, v in spent.items()}}


def detection(corpus: Path, work: Path, per_kind: int, workers: int) -> dict[str, object]:
    damaged = work / "damaged"
    truth = corrupt_corpus(corpus, damaged, per_kind=per_kind, seed=1)
    out = work / "audit_damaged"
    speed = timed_audit(damaged, out, workers)
    lines = (out / "audit.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rank = {ln.split("\t", 1)[0]: k for k, ln in enumerate(lines)}
    excluded = {ln for ln in (out / "exclude.txt").read_text().splitlines()[1:] if ln}
    hits = excluded & set(truth)
    kinds: dict[str, dict[str, float]] = {}
    for kind in sorted(set(truth.values())):
        ids = [i for i, k in truth.items() if k == kind]
        kinds[kind] = {"clips": len(ids), "excluded": sum(i in excluded for i in ids),
                       "worst_rank": max(rank[i] for i in ids) + 1}
    false = sorted(excluded - set(truth))
    return {"damaged": len(truth), "excluded": len(excluded),
            "precision": round(len(hits) / max(len(excluded), 1), 3),
            "recall": round(len(hits) / len(truth), 3), "per_kind": kinds,
            "false_positives": false, "x_realtime": round(speed["x_realtime"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline-every", type=int, default=8)
    ap.add_argument("--profile-clips", type=int, default=24)
    ap.add_argument("--per-kind", type=int, default=6)
    ap.add_argument("--no-detection", action="store_true")
    ap.add_argument("--keep", type=Path, help="write the audits here (a new folder) and keep them")
    args = ap.parse_args()
    if not (args.corpus / "metadata.csv").is_file():
        sys.exit(f"no corpus at {args.corpus} (pass --corpus)")
    # Warm the page cache so every contender reads from memory.
    for wav in (args.corpus / "wavs").glob("*.wav"):
        wav.read_bytes()
    load0 = os.getloadavg()[0]
    if args.keep is not None and args.keep.exists():
        sys.exit(f"--keep {args.keep}: already exists (the bench measures fresh audits)")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        full = timed_audit(args.corpus, work / "all", args.workers)
        cheap = timed_audit(args.corpus, work / "audio", args.workers, "transcript.enabled=false")
        base = baseline(args.corpus, args.baseline_every, args.workers)
        prof = profile(args.corpus, args.profile_clips)
        found = None if args.no_detection else detection(args.corpus, work, args.per_kind,
                                                         args.workers)
    result = {
        "x_realtime": round(full["x_realtime"], 2),
        "audio_checks_x_realtime": round(cheap["x_realtime"], 1),
        # The measuring stage alone: per-clip throughput, without the report's fixed second or
        # two (plots), which weighs heavily on a 42-minute sample and not on a 24-hour corpus.
        "audio_checks_measure_x_realtime": round(
            cheap["audio_s"] / cheap["stages_s"]["measure"], 1),
        "baseline_x_realtime": round(base["x_realtime"], 2),
        "speedup_vs_baseline": round(full["x_realtime"] / base["x_realtime"], 1),
        "cpu_x_realtime": round(full["cpu_x_realtime"], 2),
        "audio_checks_cpu_x_realtime": round(cheap["cpu_x_realtime"], 1),
        "baseline_cpu_x_realtime": round(base["cpu_x_realtime"], 2),
        "workers": args.workers, "audio_s": round(full["audio_s"], 1),
        "stages_s": full["stages_s"], "audio_only_stages_s": cheap["stages_s"],
        "baseline_clips": base["clips"], "profile": prof, "detection": found,
        "load_average": [round(load0, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
