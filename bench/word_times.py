"""Word boundaries from a Tacotron 2's attention vs from the recordings (issue 22).

For each clip of ``--store``'s test split (clips the model did not train on, with a model
trained on that store), read from the corpus as ``prepare`` reads it (silence trimmed):

* ours: the model teacher-forced on the clip's own mel (:meth:`AcousticChecker.alignment`,
  the audit's ``--acoustic`` path), then :func:`neurotts.synthesis.timestamps.word_times` on
  its attention, as ``synth --timestamps`` and the server do;
* reference: pocketsphinx forced alignment of the clip's transcript on the same samples
  (:meth:`TranscriptChecker.word_times`, the audit's transcript alignment; 10 ms frames);
* a naive baseline: the clip's duration shared among its words by character count (what
  word times without any alignment would be).

A word's boundaries are its start and its end; the error of a boundary is the absolute
difference between ours and the reference, over the words the reference placed (words it
left out or had to spell are skipped). Times are only meaningful when the attention is a
diagonal path: the attention health of :mod:`neurotts.models.alignment` is reported beside
them. Prints one JSON line last.

Usage: python bench/word_times.py --acoustic RUN --store STORE [--clips 20]

The README's figure: a store of the sample (``neurotts prepare data.root=SAMPLE out=STORE
data.split.val_size=10 data.split.test_size=20``) and a 0.49M-parameter model trained on it
on one CPU thread (``neurotts train experiment=tiny data.features=STORE run.dir=RUN
model.encoder.embedding_dim=64 model.encoder.conv_channels=64 model.encoder.lstm_dim=64
model.decoder.prenet_dims=[64,64] model.decoder.attention_rnn_dim=128
model.decoder.decoder_rnn_dim=128 model.attention.dim=64 model.postnet.channels=64
trainer.max_steps=4000 trainer.batch_size=16 trainer.bucket_size=8
trainer.schedule.warmup_steps=50``), measured at a named checkpoint of RUN.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"

from neurotts.audit.acoustic import AcousticChecker  # noqa: E402
from neurotts.audit.config import AuditConfig  # noqa: E402
from neurotts.audit.transcript import TranscriptChecker  # noqa: E402
from neurotts.config import load_config  # noqa: E402
from neurotts.evaluation.asr import to_asr_pcm  # noqa: E402
from neurotts.models.alignment import alignment_metrics  # noqa: E402
from neurotts.synthesis.timestamps import Word, word_times  # noqa: E402


def test_clips(store: Path, limit: int) -> list[tuple[str, str]]:
    """(id, transcript) of the first ``limit`` test-split clips of the store's manifest."""
    rows = [json.loads(line) for line in (store / "manifest.jsonl").open(encoding="utf-8")]
    return [(r["id"], r["text"]) for r in rows if r["split"] == "test"][:limit]


def by_characters(words: list[Word], duration: float) -> list[tuple[float, float]]:
    """The naive baseline: ``duration`` shared among ``words`` in proportion to their length."""
    sizes = np.array([len(w.word) for w in words], dtype=float)
    edges = np.concatenate([[0.0], np.cumsum(sizes)]) / sizes.sum() * duration
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def reference_spans(checker: TranscriptChecker, words: list[Word], pcm: np.ndarray, sr: int
                    ) -> list[tuple[float, float] | None]:
    """Each of ``words``' span in the recording (None where pocketsphinx did not place every
    dictionary token of it). A word may hold several tokens ("well-known")."""
    groups = [checker.words(w.word) for w in words]  # the tokens of the whole text, per word
    times = checker.word_times(to_asr_pcm(pcm, sr), [t for g in groups for t in g])
    out, k = [], 0
    for g in groups:
        got = times[k:k + len(g)]
        k += len(g)
        placed = bool(got) and all(t is not None for t in got)
        out.append((got[0][0], got[-1][1]) if placed else None)  # type: ignore[index]
    return out


def errors(ours: list[tuple[float, float]], ref: list[tuple[float, float] | None]) -> list[float]:
    """|difference| of each boundary (start, end) of the words the reference placed, seconds."""
    return [abs(a - b) for o, r in zip(ours, ref, strict=True) if r is not None
            for a, b in zip(o, r, strict=True)]


def summary(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"median_ms": round(float(np.median(ms)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "mean_ms": round(float(ms.mean()), 1),
            "within_50ms": round(float((ms <= 50).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--acoustic", required=True, help="Tacotron 2 run folder or checkpoint")
    parser.add_argument("--store", type=Path, required=True,
                        help="the feature store it was trained on: its test split is measured")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the store's corpus")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="prenet dropout (on, as in synthesis)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    acoustic = AcousticChecker(args.acoustic, "cpu")
    model = acoustic.model
    audit = load_config("audit", AuditConfig, [f"data.root={args.corpus}", "out=unused"])
    aligner = TranscriptChecker(audit.transcript)
    sr, hop, r = model.audio.sample_rate, model.audio.hop_length, model.cfg.reduction_factor
    ours_err, naive_err, health, signed = [], [], [], []
    n_words = n_placed = 0
    clips = test_clips(args.store, args.clips)
    torch.manual_seed(args.seed)
    for uid, text in clips:
        pcm, ids, align = acoustic.alignment(args.corpus / "wavs" / f"{uid}.wav", text)
        words = word_times(align, model.frontend.normalize(text), model.frontend.decode(ids),
                           hop, r, sr, n_frames=pcm.size // hop)
        ref = reference_spans(aligner, words, pcm, sr)
        ours = [(w.start, w.end) for w in words]
        ours_err += errors(ours, ref)
        naive_err += errors(by_characters(words, pcm.size / sr), ref)
        signed += [o[0] - x[0] for o, x in zip(ours, ref, strict=True) if x is not None]
        n_words += len(words)
        n_placed += sum(x is not None for x in ref)
        a = torch.from_numpy(align)[None]
        health.append(alignment_metrics(a, torch.tensor([a.shape[1]]),
                                        torch.tensor([a.shape[2]])).as_dict())
    result = {
        "bench": "word_times", "model": str(model.path), "step": model.step,
        "parameters": sum(p.numel() for p in model.model.parameters()),
        "clips": len(clips), "words": n_words, "words_placed_by_reference": n_placed,
        "boundaries": len(ours_err),
        "attention": summary(ours_err) | {"start_bias_ms": round(statistics.median(signed) * 1000, 1)},
        "by_characters": summary(naive_err),
        "alignment_health": {k: round(statistics.mean(h[k] for h in health), 3) for k in health[0]},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
