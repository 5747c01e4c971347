"""``neurotts eval``: synthesise a split (or a text list) and measure the result.

Per utterance: MCD with DTW, log-F0 RMSE, V/UV error and duration ratio against the recorded
audio (when there is one); attention health and failure flags from the model's alignments;
word/character error rates of an offline recogniser on the synthesis and, as the reference,
on the recording. Aggregating and writing the report (``report.json``, ``report.md``, plots)
are :mod:`neurotts.evaluation.report`'s; the schema is :mod:`neurotts.evaluation.config`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.text import Text

from neurotts.audio import save_wav
from neurotts.data.store import FeatureStore
from neurotts.errors import IncompleteError, UserError
from neurotts.evaluation import metrics
from neurotts.evaluation.config import EvalConfig
from neurotts.evaluation.passages import LONG_PASSAGES, passage_ids
from neurotts.evaluation.report import (
    FAILURES,
    aggregate,
    compare,
    print_comparison,
    print_report,
    write_comparison,
    write_report,
)
from neurotts.models import alignment as health
from neurotts.progress import ItemProgress
from neurotts.synthesis.engine import (
    AcousticModel,
    Encoded,
    SynthesisError,
    Synthesized,
    Timing,
    encode,
    pick_device,
    seed_rng,
    synthesize,
)
from neurotts.text.frontend import is_english
from neurotts.vocoders import load_vocoder


class NotAligned(IncompleteError):
    """Most of the first utterances failed: eval stopped early with a partial report."""


class EvalError(UserError, ValueError):
    """A problem the user can fix (bad texts file, empty split)."""


@dataclass
class Item:
    id: str
    text: str
    where: str  # where the text comes from, for messages: "texts=FILE:LINE", "split test, ID"
    has_reference: bool  # recorded audio in the store (read when the item is measured)
    speaker: str | None = None  # the store's speaker label of a split item


def _items(cfg: EvalConfig, store: FeatureStore | None) -> list[Item]:
    if cfg.texts == "long":
        items = [Item(i, t, f"texts=long ({i})", False)
                 for i, t in zip(passage_ids(), LONG_PASSAGES, strict=True)]
    elif cfg.texts is not None:
        path = Path(cfg.texts).expanduser()
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EvalError(f"texts={path}: cannot read ({exc})") from None
        items = [Item(f"line-{n:04d}", ln.strip(), f"texts={path}:{n}", False)
                 for n, ln in enumerate(lines, 1) if ln.strip()]
    else:
        assert store is not None
        items = [Item(u.id, u.text, f"split {cfg.split}, {u.id}", True, u.speaker)
                 for u in store.split(cfg.split)]
    items = items[: cfg.limit] if cfg.limit is not None else items
    if not items:
        raise EvalError(f"nothing to evaluate (split={cfg.split}, texts={cfg.texts})")
    return items


def _encode_items(items: list[Item], acoustic: AcousticModel) -> list[Encoded]:
    """Every text encoded before any synthesis; one that cannot be said is an error naming it."""
    encoded = []
    for it in items:
        try:
            encoded.append(encode(acoustic.frontend, it.text, max_chars=None))
        except SynthesisError as exc:
            raise EvalError(f"{it.where}: {exc}") from None
    return encoded


def item_speakers(items: list[Item], acoustic: AcousticModel, console: Console
                  ) -> list[str | None] | None:
    """Who says each item: for a multi-speaker model a split item's own speaker (one the model
    lacks is an error naming the item and listing the model's speakers), and a text without
    one (``texts=``) the model's first speaker, with a note; None for a single-speaker model."""
    if not acoustic.speakers:
        return None
    first = acoustic.speakers[0]
    if any(it.speaker is None for it in items):
        console.print(Text(f"note: texts without a speaker are spoken as {first}, the first of "
                           f"the model's speakers ({', '.join(acoustic.speakers)})"),
                      soft_wrap=True, highlight=False)
    for it in items:
        if it.speaker is not None and it.speaker not in acoustic.speakers:
            raise EvalError(f"{it.where}: speaker {it.speaker} is not one of acoustic model "
                            f"{acoustic.path}'s speakers ({', '.join(acoustic.speakers)})")
    return [it.speaker or first for it in items]


def acoustic_paths(cfg: EvalConfig) -> list[str]:
    """``acoustic`` as a list: one path (``acoustic=runs/tts``) or several (``acoustic=[a,b]``)."""
    paths = [cfg.acoustic] if isinstance(cfg.acoustic, str) else cfg.acoustic
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise EvalError(f"acoustic={cfg.acoustic}: expected a run folder or checkpoint, or a list "
                        "of them (acoustic=[RUN1,RUN2])")
    if not paths or not all(p.strip() for p in paths):
        raise EvalError("no acoustic model given (--acoustic RUN, repeatable)")
    return paths


def check(cfg: EvalConfig) -> list[str]:
    """What the schema's field ranges cannot say: the acoustic models and where the texts come
    from; returns the acoustic model paths."""
    paths = acoustic_paths(cfg)
    cfg.vocoder.check_finite("vocoder.")
    if cfg.texts is None and cfg.data.features is None:
        raise EvalError("data.features is not set (the feature store whose split is evaluated)")
    return paths


def failure_flags(align: np.ndarray, hit_max: bool, skip_run: int, repeat_jump: int) -> dict[str, bool]:
    """Classify one alignment ``(T_dec, T_text)``: max-steps hit, early stop, skip, repeat."""
    peaks = align.argmax(axis=1)
    t_text = align.shape[1]
    attended = np.zeros(t_text, dtype=bool)
    for p in peaks:
        attended[max(0, p - 1): p + 2] = True
    # A skip is a gap inside the span the attention went through; symbols after its furthest
    # point were never reached, which is an early stop (or a max-steps hit), not a skip.
    longest_gap, gap = 0, 0
    for a in attended[: int(peaks.max()) + 1]:
        gap = 0 if a else gap + 1
        longest_gap = max(longest_gap, gap)
    running_max = np.maximum.accumulate(peaks)
    return {
        "max_steps": bool(hit_max),
        # Stopped before the attention reached the last symbols (EOS included).
        "early_stop": (not hit_max) and int(peaks[-1]) < t_text - 1 - skip_run,
        "skip": longest_gap >= skip_run,
        "repeat": bool(np.any(running_max - peaks >= repeat_jump)),
    }


def acoustic_metrics(ref: np.ndarray, syn: np.ndarray, sr: int) -> dict[str, Any]:
    """MCD, log-F0 RMSE, V/UV error and duration ratio of ``syn`` against ``ref``; a metric that
    cannot be computed (e.g. a synthesis that stopped after a frame) is NaN and ``metrics_note``
    says why."""
    mcd = metrics.mcd_dtw_detailed(ref, syn, sr)
    f0 = metrics.f0_metrics(ref, syn, sr)
    row: dict[str, Any] = {"mcd_db": mcd.mcd_db, "log_f0_rmse_cents": f0["log_f0_rmse_cents"],
                           "vuv_error": f0["vuv_error"], "duration_ratio": f0["duration_ratio"]}
    notes = [n for n in (mcd.reason, f0["reason"]) if n]
    if notes:
        row["metrics_note"] = "; ".join(dict.fromkeys(notes))
    return row


class Recognition:
    """Collects ASR transcripts; corpus WER/CER sum edits over all words."""

    def __init__(self, enabled: bool):
        self.recognizer = None
        if enabled:
            from neurotts.evaluation.asr import Recognizer

            self.recognizer = Recognizer()
        self.refs: list[str] = []
        self.syn: list[str] = []
        self.rec: list[str] = []
        self.seconds = 0.0

    def add(self, text: str, syn: np.ndarray | None, ref: np.ndarray | None, sr: int) -> dict[str, Any]:
        """Recognise one item's synthesis ``syn`` and its recording ``ref`` (when there is
        one). ``syn`` None: an utterance that failed outright, counted as nothing recognised
        (every word an edit) without running the recogniser on its audio."""
        if self.recognizer is None:
            return {}
        from neurotts.evaluation.asr import cer, wer

        t0 = time.perf_counter()
        hyp = "" if syn is None else self.recognizer.transcribe(syn, sr)
        out: dict[str, Any] = {"asr_synth": hyp, "wer_synth": wer(text, hyp), "cer_synth": cer(text, hyp)}
        self.refs.append(text)
        self.syn.append(hyp)
        if ref is not None:
            hyp_ref = self.recognizer.transcribe(ref, sr)
            self.rec.append(hyp_ref)
            out.update(asr_reference=hyp_ref, wer_reference=wer(text, hyp_ref), cer_reference=cer(text, hyp_ref))
        self.seconds += time.perf_counter() - t0
        return out

    def summary(self) -> dict[str, Any]:
        if self.recognizer is None:
            return {}
        from neurotts.evaluation.asr import corpus_error_rates

        def rates(hyps: list[str]) -> dict[str, float]:
            r = corpus_error_rates(self.refs, hyps)
            return {"wer": r.wer, "cer": r.cer}

        out = {"synth": rates(self.syn)}
        if self.rec:
            out["reference"] = rates(self.rec)
        return out


def _measure(item: Item, res: Synthesized, ref: np.ndarray | None, acoustic: AcousticModel,
             cfg: EvalConfig, asr: Recognition, out: Path) -> dict[str, Any]:
    """One row of measures for a synthesised item; writes its wav."""
    sr = acoustic.audio.sample_rate
    align = res.alignments[0]
    m = health.alignment_metrics(torch.from_numpy(align)[None])
    row: dict[str, Any] = {
        "id": item.id, "text": item.text, "seconds": res.wav.size / sr,
        "focus": m.focus, "monotonicity": m.monotonicity, "coverage": m.coverage,
        **failure_flags(align, res.hit_max[0], cfg.skip_run, cfg.repeat_jump),
    }
    text = acoustic.frontend.normalize(item.text)
    if res.hit_max[0]:
        # Audio cut at the length guard did not align: the recogniser and DTW would spend
        # most of the evaluation on it (minutes for max-length audio) to confirm a failure.
        row["metrics_note"] = "not measured: hit max decoder steps"
        row.update(asr.add(text, None, ref, sr))
        save_wav(out / "wavs" / f"{item.id}.wav", res.wav, sr)
        return row
    if ref is not None:
        row.update(acoustic_metrics(ref, res.wav, sr))
    row.update(asr.add(text, res.wav, ref, sr))
    save_wav(out / "wavs" / f"{item.id}.wav", res.wav, sr)
    return row


def run(cfg: EvalConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate every acoustic model in ``cfg.acoustic`` on the same texts; returns the report
    (one model) or the comparison (several, with each model's report in ``out/NN-name/``)."""
    console = console or Console(stderr=True)
    paths = check(cfg)
    # The texts (and the store they come from) before any model loads: a missing texts file
    # or an empty split is reported at once, and every model of a comparison gets the same.
    store = FeatureStore(cfg.data.features) if cfg.texts is None else None
    items = _items(cfg, store)
    out = Path(cfg.out).expanduser()
    if len(paths) == 1:
        return evaluate_model(cfg, paths[0], out, console, store, items)
    reports = []
    for i, path in enumerate(paths, start=1):
        name = f"{i:02d}-{Path(path).expanduser().resolve().name}"
        console.print(Text.assemble((f"eval {name}", "bold"), f" ({path})"), soft_wrap=True)
        reports.append((name, evaluate_model(cfg, path, out / name, console, store, items)))
    comparison = compare(reports)
    write_comparison(out, comparison)
    print_comparison(console, comparison)
    return comparison


def evaluate_model(cfg: EvalConfig, acoustic_path: str, out: Path, console: Console,
                   store: FeatureStore | None, items: list[Item]) -> dict[str, Any]:
    """Synthesise and measure ``items`` (from ``store``, or texts without recordings) with one
    acoustic model into ``out``."""
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(acoustic_path, device)
    vocoder = load_vocoder(cfg.vocoder.path, acoustic.audio, device, cfg.vocoder)
    inputs = _encode_items(items, acoustic)
    speakers = item_speakers(items, acoustic, console)
    for name in dict.fromkeys(speakers or []):
        vocoder.check_speaker(name, "speaker")
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    english = is_english(acoustic.frontend.cfg)
    if cfg.asr and not english:
        console.print(Text(f"ASR skipped: the recogniser's model is English "
                           f"(text.language={acoustic.frontend.cfg.language})"), soft_wrap=True,
                      highlight=False)
    asr = Recognition(cfg.asr and english)
    rows: list[dict[str, Any]] = []
    timing = Timing()
    figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    seed_rng(cfg.seed)  # each model of a comparison starts from the same seed
    with ItemProgress(console, len(items), "eval", "utterances") as progress:
        for completed, t in synthesize(inputs, acoustic, vocoder, device, cfg.batch_size,
                                       keep_details=True, speakers=speakers):
            timing.add(t)
            for i, res in completed:
                it = items[i]
                ref = store.audio_float(it.id) if store is not None and it.has_reference else None
                rows.append(_measure(it, res, ref, acoustic, cfg, asr, out))
                if speakers is not None:
                    rows[-1]["speaker"] = speakers[i]
                if len(figures) < cfg.plots:
                    ref_mel = None if store is None else store.mel(it.id)
                    figures.append((it.id, res.alignments[0], res.mels[0], ref_mel))
            progress.update(len(rows))
            if cfg.stop_unaligned and _unaligned(rows) and len(rows) < len(items):
                break
    report = aggregate(cfg, rows, timing, asr.summary(), asr.seconds, acoustic, vocoder)
    write_report(out, report, rows, figures)
    print_report(console, report)
    if len(rows) < len(items):
        raise NotAligned(f"stopped after {len(rows)} of {len(items)} utterances: "
                         f"{report['failed_utterances']} failed ({_counts(report)}); the model "
                         "has not aligned yet (train longer; stop_unaligned=false evaluates "
                         f"every utterance); partial report in {out}")
    return report


# Stop when more than this share of the first STOP_AFTER or more utterances measured failed.
STOP_SHARE, STOP_AFTER = 0.75, 8


def _unaligned(rows: list[dict[str, Any]]) -> bool:
    failed = sum(any(r[k] for k in FAILURES) for r in rows)
    return len(rows) >= STOP_AFTER and failed > STOP_SHARE * len(rows)


def _counts(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in report["failures"].items() if v)


