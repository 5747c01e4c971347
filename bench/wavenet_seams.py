"""What folding costs in quality: folded vs unfolded WaveNet audio of ground-truth mels.

A trained WaveNet vocodes the recorded mels of a split (default: test) three ways, each in one
batch with a fixed seed: unfolded (seed A), unfolded again (seed B: how much two samplings of
the same model differ anyway), and folded into ``--fold`` segments per utterance for each
``--overlaps-ms`` and each cross-fade. Against the recording:

* ``logmel_l1``: mean absolute difference of natural-log mel magnitudes, frame by frame (the
  vocoded audio is sample-aligned with the recording: same mels, same length);
* ``mcd_db``: DTW mel-cepstral distortion (neurotts.evaluation.metrics);

and at the joins (bench/seams.py):

* the correlation of the two segments over each overlap (how in phase they are);
* ``fade_level_db``: the level of each cross-fade's output relative to its two inputs (over
  all joins, and the 5th and 95th percentile per join): a fade that cancels phase-misaligned
  segments is negative there;
* folded against unfolded: ``join_dip_db``, the level difference in a window over each
  cross-fade minus that at control positions half way between joins (negative: a dip), and
  the spectral-flux ratio there (a click raises it).

The folded figures should be within 10% of the unfolded ones, with no systematic dip or
flux rise at the joins.

``--precision bf16`` (CPUs with AVX512-BF16) generates the folded audio in bfloat16 and adds
``unfolded_bf16``: unfolded, seed A, in bf16, against the recording and as a ratio to the
float32 figures (``unfolded_other_seed`` says how far apart two float32 samplings are).

Prints progress lines, then ONE JSON line last.

Usage: python bench/wavenet_seams.py --vocoder RUN_OR_CKPT --features STORE [--split test]
           [--limit 20] [--fold 16] [--overlaps-ms 5,10,20] [--seed 0] [--threads 2]
           [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from seams import fade_report, seam_report  # bench/seams.py: a script's folder is on sys.path

from neurotts.data.store import FeatureStore
from neurotts.evaluation.metrics import log_mel_spectrogram, mcd_dtw
from neurotts.models.wavenet.fold import (
    crossfade,
    fold_plans,
    generate_segments,
    join,
    overlaps,
)
from neurotts.models.wavenet.generate import generate
from neurotts.models.wavenet.options import FADES, PRECISIONS, GenerateOptions
from neurotts.vocoders import WaveNetVocoder


def global_measures(wavs: list[np.ndarray], refs: list[np.ndarray], sr: int) -> dict[str, float]:
    """Mean over utterances of the frame-aligned log-mel L1 and the DTW MCD to the recording."""
    l1, mcd = [], []
    for wav, ref in zip(wavs, refs, strict=True):
        a, b = log_mel_spectrogram(wav, sr), log_mel_spectrogram(ref, sr)
        n = min(len(a), len(b))
        l1.append(float(np.abs(a[:n] - b[:n]).mean()))
        mcd.append(mcd_dtw(ref, wav, sr))
    return {"logmel_l1": float(np.mean(l1)), "mcd_db": float(np.nanmean(mcd))}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocoder", required=True, help="WaveNet run folder or checkpoint")
    parser.add_argument("--features", required=True, help="feature store with audio")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--fold", default="16", help="segments per utterance (or auto)")
    parser.add_argument("--overlaps-ms", default="5,10,20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="arithmetic of the folded generations (and an unfolded bf16 row)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = FeatureStore(args.features)
    sr = store.audio.sample_rate
    voc = WaveNetVocoder(args.vocoder, store.audio, torch.device("cpu"))
    model, hop = voc.model, voc.hop_length
    items = store.split(args.split)[: args.limit]
    n_frames = [store.mel(u.id).shape[0] for u in items]
    mels = torch.zeros(len(items), max(n_frames), model.cfg.n_mels)
    for i, u in enumerate(items):
        mels[i, : n_frames[i]] = voc.norm.normalize(torch.from_numpy(store.mel(u.id)))
    lengths = torch.tensor(n_frames)
    refs = [store.audio_float(u.id)[: n * hop] for u, n in zip(items, n_frames, strict=True)]

    def cut(audio: torch.Tensor) -> list[np.ndarray]:
        return [audio[i, : n * hop].numpy() for i, n in enumerate(n_frames)]

    def seeded(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    result: dict[str, object] = {"vocoder": voc.name, "utterances": len(items),
                                 "audio_s": round(sum(n_frames) * hop / sr, 1),
                                 "fold": args.fold, "precision": args.precision,
                                 "load_avg_1m_start": os.getloadavg()[0]}
    unfolded, secs = timed(lambda: cut(generate(model, mels, lengths, generator=seeded(args.seed)).audio))
    result["unfolded"] = {**global_measures(unfolded, refs, sr), "seconds": round(secs, 1)}
    print(f"unfolded: {result['unfolded']}", flush=True)
    again = cut(generate(model, mels, lengths, generator=seeded(args.seed + 1)).audio)
    result["unfolded_other_seed"] = global_measures(again, refs, sr)
    print(f"unfolded, other seed: {result['unfolded_other_seed']}", flush=True)
    if args.precision != "fp32":
        low, secs = timed(lambda: cut(generate(model, mels, lengths,
                                               GenerateOptions(precision=args.precision),
                                               generator=seeded(args.seed)).audio))
        row = {**global_measures(low, refs, sr), "seconds": round(secs, 1)}
        row["logmel_l1_vs_unfolded"] = row["logmel_l1"] / result["unfolded"]["logmel_l1"]
        row["mcd_vs_unfolded"] = row["mcd_db"] / result["unfolded"]["mcd_db"]
        result[f"unfolded_{args.precision}"] = row
        print(f"unfolded, {args.precision}: {row}", flush=True)
    for overlap_ms in [float(x) for x in args.overlaps_ms.split(",")]:
        options = GenerateOptions(fold=args.fold, overlap_ms=overlap_ms, precision=args.precision)
        overlap = options.overlap_samples(sr)
        plans = fold_plans(model, n_frames, options, sr, mels.device)
        segments = [s for plan in plans for s in plan]
        audio, secs = timed(lambda: generate_segments(model, mels, segments, options,  # noqa: B023
                                                      generator=seeded(args.seed)))
        # Where each join starts: its cross-fade runs from there over the previous tail.
        joins = [[seg.keep * hop for seg in plan[1:]] for plan in plans]
        # How in phase are the two segments over an overlap? (adaptive's rho, unclamped)
        pairs = [(t, h) for _, t, h in overlaps(audio, segments, hop)]
        rho = [float((t * h).sum() / ((t * t).sum() * (h * h).sum()).sqrt().clamp(min=1e-30))
               for t, h in pairs]
        result[f"overlap_{overlap_ms:g}ms_correlation"] = {
            "mean": float(np.mean(rho)), "median": float(np.median(rho)),
            "above_0.5": float(np.mean(np.array(rho) > 0.5))}
        for fade in FADES:
            folded = cut(join(audio, segments, n_frames, hop, fade))
            row = {**global_measures(folded, refs, sr),
                   **fade_report([(t.numpy(), h.numpy(), crossfade(t, h, fade).numpy())
                                  for t, h in pairs]),
                   **seam_report(folded, unfolded, joins, overlap, width=max(overlap, 128)),
                   "segments": len(segments), "seconds": round(secs, 1)}
            row["logmel_l1_vs_unfolded"] = row["logmel_l1"] / result["unfolded"]["logmel_l1"]
            row["mcd_vs_unfolded"] = row["mcd_db"] / result["unfolded"]["mcd_db"]
            result[f"folded_{overlap_ms:g}ms_{fade}"] = row
            print(f"folded {overlap_ms:g} ms {fade}: {row}", flush=True)
    result["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
