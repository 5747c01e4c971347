"""How a trained Tacotron 2 says sentences it never heard: CER, length-guard hits, attention
health and real-time factor on ``bench/sentences_heldout.txt`` (written for neurotts; none is
an LJSpeech line).

Synthesis is ``neurotts synth``'s engine (Griffin-Lim vocoder, fixed seed), one batch of
``--batch`` sentences at a time; the wavs are kept in ``OUT/wavs`` with ``OUT/quality.json``.
Attention health is :func:`neurotts.models.alignment.alignment_metrics` of each free-running
alignment, averaged, plus how many sentences pass :func:`~neurotts.models.alignment.is_aligned`.
CER is pocketsphinx's (neurotts.evaluation.asr) where it is installed; where it is not (the
GPU kit lacks it), ``cer`` is null with the reason, and ``--score-only OUT`` scores the kept
wavs later on a machine that has it, rewriting ``quality.json``.

Prints ONE JSON line (the contents of quality.json) on stdout.
Usage: python bench/heldout_quality.py --acoustic RUN_OR_CKPT --out DIR [--device cuda]
       python bench/heldout_quality.py --score-only DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "bench" / "sentences_heldout.txt"


def read_sentences(path: Path, limit: int) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return lines[:limit] if limit else lines


def synthesize_all(acoustic_path: str, sentences: list[str], device: torch.device, batch: int,
                   gl_iters: int, seed: int) -> tuple[list[Any], Any, int, int]:
    """Every sentence as one piece through the synth engine -> utterances, timing, step,
    sample rate."""
    from neurotts.synthesis.engine import AcousticModel, Timing, encode, seed_rng, synthesize
    from neurotts.vocoders import GriffinLimVocoder

    acoustic = AcousticModel.load(acoustic_path, device)
    vocoder = GriffinLimVocoder(acoustic.audio, device, n_iter=gl_iters)
    inputs = [encode(acoustic.frontend, s, None) for s in sentences]
    seed_rng(seed)
    utts: list[Any] = [None] * len(inputs)
    total = Timing()
    for done, timing in synthesize(inputs, acoustic, vocoder, device, batch, keep_details=True):
        total.add(timing)
        for i, utt in done:
            utts[i] = utt
    return utts, total, acoustic.step, acoustic.audio.sample_rate


def attention_health(utts: list[Any]) -> dict[str, Any]:
    """Mean alignment metrics of the free-running alignments and how many pass the
    thresholds that tests use for "aligned"."""
    from neurotts.models.alignment import AlignmentThresholds, alignment_metrics

    per = [alignment_metrics(torch.from_numpy(u.alignments[0])[None]) for u in utts]
    means = {k: round(float(np.mean([m.as_dict()[k] for m in per])), 3)
             for k in per[0].as_dict()}
    return {**means, "aligned": sum(m.passes(AlignmentThresholds()) for m in per)}


def score(out: Path, sentences: list[str]) -> dict[str, Any]:
    """CER/WER of the kept wavs against the sentences, or null with the reason."""
    try:
        from neurotts.evaluation.asr import Recognizer, corpus_error_rates

        asr = Recognizer()
    except ImportError as exc:  # MissingDependencyError is one
        return {"cer": None, "wer": None, "asr": f"not scored here: {exc}"}
    hyps = []
    for i in range(len(sentences)):
        wav, sr = sf.read(out / "wavs" / f"{i + 1:03d}.wav", dtype="float32")
        hyps.append(asr.transcribe(wav, sr))
    rates = corpus_error_rates(sentences, hyps)
    (out / "transcripts.tsv").write_text(
        "".join(f"{i + 1:03d}\t{s}\t{h}\n" for i, (s, h) in enumerate(zip(sentences, hyps, strict=True))))
    return {"cer": round(rates.cer, 4), "wer": round(rates.wer, 4), "asr": "pocketsphinx"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acoustic", help="Tacotron 2 run folder or checkpoint")
    p.add_argument("--out", type=Path, help="folder for wavs/ and quality.json")
    p.add_argument("--score-only", type=Path, help="score the wavs a previous run kept in DIR")
    p.add_argument("--sentences", type=Path, default=SENTENCES)
    p.add_argument("--limit", type=int, default=0, help="first N sentences only (0 = all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.score_only:
        result = json.loads((args.score_only / "quality.json").read_text())
        result.update(score(args.score_only, read_sentences(args.sentences, result["sentences"])))
        (args.score_only / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        return 0
    if not (args.acoustic and args.out):
        p.error("--acoustic and --out are needed (or --score-only DIR)")
    sentences = read_sentences(args.sentences, args.limit)
    started = time.perf_counter()
    utts, timing, step, sr = synthesize_all(args.acoustic, sentences, torch.device(args.device),
                                            args.batch, args.gl_iters, args.seed)
    (args.out / "wavs").mkdir(parents=True, exist_ok=True)
    for i, utt in enumerate(utts):
        sf.write(args.out / "wavs" / f"{i + 1:03d}.wav", np.clip(utt.wav, -1, 1), sr)
    result: dict[str, Any] = {
        "step": step, "sentences": len(sentences), "device": args.device,
        "hit_max": sum(any(u.hit_max) for u in utts),
        "attention": attention_health(utts),
        "audio_s": round(timing.audio_s, 2), "rtf": round(timing.rtf, 4),
        "rtf_acoustic": round(timing.acoustic_s / max(timing.audio_s, 1e-9), 4),
        "synth_s": round(time.perf_counter() - started, 2), "wavs": "wavs/"}
    result.update(score(args.out, sentences))
    (args.out / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
