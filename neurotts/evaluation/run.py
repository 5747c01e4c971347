"""``neurotts eval``: synthesise a split (or a text list) and measure the result.

Per utterance: MCD with DTW, log-F0 RMSE, V/UV error and duration ratio against the recorded
audio (when there is one); attention health and failure flags from the model's alignments;
word/character error rates of an offline recogniser on the synthesis and, as the reference,
on the recording. Aggregates go to ``report.json`` and ``report.md``, plots to PNG files.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import MISSING
from rich.console import Console
from rich.text import Text

from neurotts import plots
from neurotts.audio import save_wav
from neurotts.config import constrained
from neurotts.data.store import SPLITS, FeatureStore
from neurotts.errors import UserError
from neurotts.evaluation import metrics
from neurotts.evaluation.passages import LONG_PASSAGES, passage_ids
from neurotts.files import atomic_write_text
from neurotts.models import alignment as health
from neurotts.synthesis import (
    AcousticModel,
    Encoded,
    SynthesisError,
    Timing,
    Utterance,
    encode,
    pick_device,
    seed_rng,
    synthesize,
)
from neurotts.vocoders import Vocoder, VocoderConfig, load_vocoder

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass
class EvalDataConfig:
    features: str | None = None


@dataclass
class EvalConfig:
    # A run folder or checkpoint of an acoustic model, or a list of them: with several, each is
    # evaluated on the same texts and a comparison table is written (e.g. location vs dca vs
    # multihead). Typed Any because OmegaConf has no str-or-list type; see acoustic_paths().
    acoustic: Any = MISSING
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)  # path (--vocoder), folding
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    out: str = MISSING
    split: str = constrained(choices=SPLITS)
    limit: int | None = constrained(None, ge=1)  # null: the whole split
    texts: str | None = None  # null: the split; "long": built-in passages; else a text file
    seed: int | None = constrained(ge=0, lt=2**63)  # random draws; null: different every run
    asr: bool = MISSING
    device: str = MISSING
    batch_size: int = constrained(ge=1)
    skip_run: int = constrained(ge=1)  # this many consecutive never-attended symbols count as a skip
    repeat_jump: int = constrained(ge=1)  # the peak moving back this many symbols counts as a repeat
    plots: int = constrained(ge=0)  # how many utterances get alignment/mel plots


class EvalError(UserError, ValueError):
    """A problem the user can fix (bad texts file, empty split)."""


@dataclass
class Item:
    id: str
    text: str
    where: str  # where the text comes from, for messages: "texts=FILE:LINE", "split test, ID"
    has_reference: bool  # recorded audio in the store (read when the item is measured)


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
        items = [Item(u.id, u.text, f"split {cfg.split}, {u.id}", True) for u in store.split(cfg.split)]
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


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


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

    def add(self, text: str, syn: np.ndarray, ref: np.ndarray | None, sr: int) -> dict[str, Any]:
        if self.recognizer is None:
            return {}
        from neurotts.evaluation.asr import cer, wer

        t0 = time.perf_counter()
        hyp = self.recognizer.transcribe(syn, sr)
        out = {"asr_synth": hyp, "wer_synth": wer(text, hyp), "cer_synth": cer(text, hyp)}
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


def _measure(item: Item, res: Utterance, ref: np.ndarray | None, acoustic: AcousticModel,
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
    if ref is not None:
        row.update(acoustic_metrics(ref, res.wav, sr))
    row.update(asr.add(acoustic.frontend.normalize(item.text), res.wav, ref, sr))
    save_wav(out / "wavs" / f"{item.id}.wav", res.wav, sr)
    return row


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class EvalProgress:
    """Utterances done, rate and ETA: a rich progress bar on a terminal, otherwise (a log file,
    a batch job) one plain line per batch."""

    def __init__(self, console: Console, total: int):
        self.console, self.total = console, total
        self.t0 = time.perf_counter()
        self.bar: Progress | None = None
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self.task = self.bar.add_task("eval", total=total, rate="")

    def __enter__(self) -> EvalProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = done / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{rate:.2f} utt/s")
            return
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = _clock(eta) if math.isfinite(eta) else "?"
        self.console.print(f"eval: {done}/{self.total} utterances, {rate:.2f} utt/s, "
                           f"elapsed {_clock(elapsed)}, ETA {eta_text}", markup=False,
                           highlight=False, soft_wrap=True)


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
    comparison = _compare(reports)
    _write_comparison(out, comparison)
    _print_comparison(console, comparison)
    return comparison


def evaluate_model(cfg: EvalConfig, acoustic_path: str, out: Path, console: Console,
                   store: FeatureStore | None, items: list[Item]) -> dict[str, Any]:
    """Synthesise and measure ``items`` (from ``store``, or texts without recordings) with one
    acoustic model into ``out``."""
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(acoustic_path, device)
    vocoder = load_vocoder(cfg.vocoder.path, acoustic.audio, device, cfg.vocoder)
    inputs = _encode_items(items, acoustic)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    asr = Recognition(cfg.asr)
    rows: list[dict[str, Any]] = []
    timing = Timing()
    figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    seed_rng(cfg.seed)  # each model of a comparison starts from the same seed
    with EvalProgress(console, len(items)) as progress:
        for completed, t in synthesize(inputs, acoustic, vocoder, device, cfg.batch_size,
                                       keep_details=True):
            timing.add(t)
            for i, res in completed:
                it = items[i]
                ref = store.audio_float(it.id) if store is not None and it.has_reference else None
                rows.append(_measure(it, res, ref, acoustic, cfg, asr, out))
                if len(figures) < cfg.plots:
                    ref_mel = None if store is None else store.mel(it.id)
                    figures.append((it.id, res.alignments[0], res.mels[0], ref_mel))
            progress.update(len(rows))
    report = _aggregate(cfg, rows, timing, asr, acoustic, vocoder)
    _write(out, report, rows, figures)
    _print_table(console, report)
    return report


_COMPARED = ("focus", "monotonicity", "coverage", "wer_synth", "mcd_db")
_FAILURES = ("max_steps", "early_stop", "skip", "repeat")


def _compare(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"models": [
        {"name": name, "acoustic": r["acoustic"], "attention": r["attention"], "step": r["acoustic_step"],
         "n_utterances": r["n_utterances"], "failures": r["failures"],
         "failed_utterances": r["failed_utterances"], **{k: r["mean"][k] for k in _COMPARED}}
        for name, r in reports
    ]}


def _write_comparison(out: Path, comparison: dict[str, Any]) -> None:
    atomic_write_text(out / "comparison.json", json.dumps(comparison, indent=1))
    head = ["model", "attention", "step", "n", *_FAILURES, "failed", *_COMPARED]
    lines = ["# neurotts eval: comparison on the same texts", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in comparison["models"]:
        cells = [m["name"], m["attention"], str(m["step"]), str(m["n_utterances"]),
                 *(str(m["failures"][k]) for k in _FAILURES), str(m["failed_utterances"]),
                 *(_fmt(m[k]) for k in _COMPARED)]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")


def _print_comparison(console: Console, comparison: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="attention comparison (same texts)")
    for col in ("model", "attention", *_FAILURES, "failed", "focus", "coverage"):
        table.add_column(col)
    for m in comparison["models"]:
        cells = [m["name"], m["attention"], *(str(m["failures"][k]) for k in _FAILURES),
                 str(m["failed_utterances"]), _fmt(m["focus"]), _fmt(m["coverage"])]
        table.add_row(*(Text(c) for c in cells))  # Text: a model's folder name is shown as is
    console.print(table)


# Each measure's label; every one is a mean over utterances, and the four ASR rates are also
# given as corpus rates (all edits over all reference words or characters).
_LABELS = {
    "mcd_db": "MCD (dB)",
    "log_f0_rmse_cents": "log-F0 RMSE (cents)",
    "vuv_error": "V/UV error",
    "duration_ratio": "duration ratio (synth/rec)",
    "focus": "attention focus",
    "monotonicity": "attention monotonicity",
    "coverage": "attention coverage",
    "wer_synth": "ASR WER synthesis",
    "cer_synth": "ASR CER synthesis",
    "wer_reference": "ASR WER recording",
    "cer_reference": "ASR CER recording",
}
_NEEDS_REFERENCE = ("mcd_db", "log_f0_rmse_cents", "vuv_error", "duration_ratio",
                    "wer_reference", "cer_reference")
_ASR = ("wer_synth", "cer_synth", "wer_reference", "cer_reference")


def _not_available(cfg: EvalConfig, rows: list[dict[str, Any]], mean: dict[str, Any]) -> dict[str, str]:
    """Why each measure without a value has none."""
    reasons: dict[str, str] = {}
    for key in (k for k, v in mean.items() if v is None):
        if key in _ASR and not cfg.asr:
            reasons[key] = "asr=false"
        elif key in _NEEDS_REFERENCE and cfg.texts is not None:
            reasons[key] = f"no reference audio with texts={cfg.texts}"
        else:
            notes = [r["metrics_note"] for r in rows if r.get("metrics_note")]
            reasons[key] = notes[0] if notes else "not computable for any utterance"
    return reasons


def _corpus_rate(report: dict[str, Any], key: str) -> float | None:
    """The corpus WER/CER matching a mean-per-utterance key such as ``wer_synth``."""
    if key not in _ASR:
        return None
    rate, who = key.split("_")
    rates = report["asr"].get("synth" if who == "synth" else "reference")
    return None if rates is None else rates[rate]


def _aggregate(cfg: EvalConfig, rows: list[dict[str, Any]], timing: Timing,
               asr: Recognition, acoustic: AcousticModel, vocoder: Vocoder) -> dict[str, Any]:
    audio_s = max(timing.audio_s, 1e-9)
    mean = {k: _mean([r.get(k) for r in rows]) for k in _LABELS}
    return {
        "acoustic": str(acoustic.path), "acoustic_step": acoustic.step, "vocoder": vocoder.name,
        "split": cfg.split if cfg.texts is None else None, "texts": cfg.texts,
        "attention": acoustic.cfg.attention.type, "n_utterances": len(rows), "seed": cfg.seed,
        "mean": mean,
        "not_available": _not_available(cfg, rows, mean),
        "failures": {k: int(sum(r[k] for r in rows)) for k in _FAILURES},
        "failed_utterances": int(sum(any(r[k] for k in _FAILURES) for r in rows)),
        "asr": asr.summary(),
        "rtf": {"acoustic": timing.acoustic_s / audio_s, "vocoder": timing.vocoder_s / audio_s,
                "total": timing.rtf, "asr": asr.seconds / audio_s},
        "audio_seconds": timing.audio_s,
    }


def _fmt(v: Any, reason: str | None = None) -> str:
    if v is None:
        return f"n/a ({reason})" if reason else "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _measure_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, mean per utterance, corpus rate) for each measure, n/a with its reason."""
    rows = []
    for key, label in _LABELS.items():
        reason = report["not_available"].get(key)
        corpus = _corpus_rate(report, key)
        corpus_cell = "" if key not in _ASR else _fmt(corpus)
        rows.append((label, _fmt(report["mean"][key], reason), corpus_cell))
    return rows


def _write(out: Path, report: dict[str, Any], rows: list[dict[str, Any]],
           figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
    atomic_write_text(out / "report.json", json.dumps({"summary": report, "utterances": rows}, indent=1))
    lines = [f"# neurotts eval: {report['n_utterances']} utterances", "",
             f"acoustic `{report['acoustic']}` (step {report['acoustic_step']}, "
             f"{report['attention']} attention), vocoder `{report['vocoder']}`", "",
             "| measure | mean per utterance | corpus rate (all edits / all words or characters) |",
             "| --- | --- | --- |"]
    lines += [f"| {label} | {mean} | {corpus} |" for label, mean, corpus in _measure_rows(report)]
    lines += ["", "| failure | utterances |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["failures"].items()]
    lines += [f"| any | {report['failed_utterances']} |"]
    lines += ["", "| stage | real-time factor |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["rtf"].items()]
    lines += ["", "| id | s | MCD dB | F0 cents | focus | WER | flags |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        flags = ",".join(k for k in _FAILURES if r[k]) or "-"
        lines.append(f"| {r['id']} | {r['seconds']:.2f} | {_fmt(r.get('mcd_db'))} | "
                     f"{_fmt(r.get('log_f0_rmse_cents'))} | {r['focus']:.3f} | {_fmt(r.get('wer_synth'))} | {flags} |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    if figures:
        fig = plots.plot_alignments([f[1] for f in figures], titles=[f[0] for f in figures])
        plots.save_figure(fig, out / "alignments.png")
        for uid, _, mel, ref in figures:
            if ref is not None:
                plots.save_figure(plots.plot_mel_comparison(mel, ref, title=uid), out / f"mel_{uid}.png")


def _print_table(console: Console, report: dict[str, Any]) -> None:
    """The measures (mean per utterance and, for WER/CER, the corpus rate; every cell is Text,
    so nothing in it is read as markup), then a line of failure counts and one of real-time
    factors."""
    from rich.table import Table

    table = Table(title=f"neurotts eval ({report['n_utterances']} utterances)",
                  caption="corpus rate: all ASR edits over all words (characters) of the texts")
    table.add_column("measure")
    table.add_column("mean per utterance", justify="right")
    table.add_column("corpus rate", justify="right")
    for label, mean, corpus in _measure_rows(report):
        table.add_row(Text(label), Text(mean), Text(corpus))
    console.print(table)
    failures = ", ".join(f"{k} {v}" for k, v in report["failures"].items())
    console.print(f"failures (utterances): {failures}; any {report['failed_utterances']}",
                  markup=False, highlight=False, soft_wrap=True)
    rtf = ", ".join(f"{k} {v:.3f}" for k, v in report["rtf"].items())
    console.print(f"real-time factor: {rtf}", markup=False, highlight=False, soft_wrap=True)
