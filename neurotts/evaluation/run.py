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
from typing import Any

import numpy as np
import torch
from omegaconf import MISSING
from rich.console import Console

from neurotts.audio import save_wav
from neurotts.data.store import FeatureStore, atomic_write_text
from neurotts.evaluation import metrics, plots
from neurotts.evaluation.passages import LONG_PASSAGES, passage_ids
from neurotts.models import alignment as health
from neurotts.models.fold_config import FoldConfig
from neurotts.synthesis import AcousticModel, Vocoder, pick_device, synthesize


@dataclass
class EvalDataConfig:
    features: str | None = None


@dataclass
class EvalVocoderConfig(FoldConfig):
    path: str = MISSING  # run folder or checkpoint of a WaveNet, or "griffinlim"


@dataclass
class EvalConfig:
    # Run folders or checkpoints of acoustic models; with several, each is evaluated on the
    # same texts and a comparison table is written (e.g. location vs dca vs multihead).
    acoustic: list[str] = MISSING
    vocoder: EvalVocoderConfig = field(default_factory=EvalVocoderConfig)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    out: str = MISSING
    split: str = MISSING
    limit: int | None = None
    texts: str | None = None  # null: the split; "long": built-in passages; else a text file
    asr: bool = MISSING
    device: str = MISSING
    batch_size: int = MISSING
    skip_run: int = MISSING  # this many consecutive never-attended symbols count as a skip
    repeat_jump: int = MISSING  # the peak moving back this many symbols counts as a repeat
    plots: int = MISSING  # how many utterances get alignment/mel plots


class EvalError(ValueError):
    """A problem the user can fix (bad texts file, empty split)."""


@dataclass
class Item:
    id: str
    text: str
    ref_wav: np.ndarray | None


def _items(cfg: EvalConfig, store: FeatureStore | None) -> list[Item]:
    if cfg.texts == "long":
        items = [Item(i, t, None) for i, t in zip(passage_ids(), LONG_PASSAGES, strict=True)]
    elif cfg.texts is not None:
        path = Path(cfg.texts).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EvalError(f"texts={path}: cannot read ({exc})") from None
        items = [Item(f"line-{n:04d}", ln.strip(), None) for n, ln in enumerate(lines, 1) if ln.strip()]
    else:
        assert store is not None
        items = [Item(u.id, u.text, store.audio_float(u.id)) for u in store.split(cfg.split)]
    items = items[: cfg.limit] if cfg.limit is not None else items
    if not items:
        raise EvalError(f"nothing to evaluate (split={cfg.split}, texts={cfg.texts})")
    return items


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


def _evaluate_batch(batch: list[Item], normalized: list[str], acoustic: AcousticModel,
                    vocoder: Vocoder, cfg: EvalConfig, device: torch.device, asr: Recognition,
                    out: Path) -> tuple[list[dict[str, Any]], Any, list[Any]]:
    results, timing = synthesize([it.text for it in batch], acoustic, vocoder, device,
                                 max_chars=None, keep_details=True)
    sr = acoustic.audio.sample_rate
    rows = []
    for item, norm, res in zip(batch, normalized, results, strict=True):
        align = res.alignments[0]
        m = health.alignment_metrics(torch.from_numpy(align)[None])
        row: dict[str, Any] = {
            "id": item.id, "text": item.text, "seconds": res.wav.size / sr,
            "focus": m.focus, "monotonicity": m.monotonicity, "coverage": m.coverage,
            **failure_flags(align, res.hit_max[0], cfg.skip_run, cfg.repeat_jump),
        }
        if item.ref_wav is not None:
            row.update(acoustic_metrics(item.ref_wav, res.wav, sr))
        row.update(asr.add(norm, res.wav, item.ref_wav, sr))
        save_wav(out / "wavs" / f"{item.id}.wav", res.wav, sr)
        rows.append(row)
    return rows, timing, results


def run(cfg: EvalConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate every acoustic model in ``cfg.acoustic`` on the same texts; returns the report
    (one model) or the comparison (several, with each model's report in ``out/NN-name/``)."""
    console = console or Console(stderr=True)
    if not cfg.acoustic:
        raise EvalError("no acoustic model given (--acoustic RUN, repeatable)")
    cfg.vocoder.check()
    if cfg.texts is None and cfg.data.features is None:
        raise EvalError("data.features is not set (the feature store whose split is evaluated)")
    out = Path(cfg.out).expanduser()
    if len(cfg.acoustic) == 1:
        return evaluate_model(cfg, cfg.acoustic[0], out, console)
    reports = []
    for i, path in enumerate(cfg.acoustic, start=1):
        name = f"{i:02d}-{Path(path).expanduser().resolve().name}"
        console.print(f"[bold]eval {name}[/] ({path})")
        reports.append((name, evaluate_model(cfg, path, out / name, console)))
    comparison = _compare(reports)
    _write_comparison(out, comparison)
    _print_comparison(console, comparison)
    return comparison


def evaluate_model(cfg: EvalConfig, acoustic_path: str, out: Path, console: Console) -> dict[str, Any]:
    """Synthesise and measure the texts of ``cfg`` with one acoustic model into ``out``."""
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(acoustic_path, device)
    vocoder = Vocoder(cfg.vocoder.path, acoustic.audio, device, fold=cfg.vocoder)
    store = FeatureStore(cfg.data.features) if cfg.texts is None else None
    items = _items(cfg, store)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    asr = Recognition(cfg.asr)
    rows: list[dict[str, Any]] = []
    stage = {"acoustic_s": 0.0, "vocoder_s": 0.0, "audio_s": 0.0}
    figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for start in range(0, len(items), cfg.batch_size):
        batch = items[start: start + cfg.batch_size]
        normalized = [acoustic.frontend.normalize(it.text) for it in batch]
        batch_rows, timing, results = _evaluate_batch(batch, normalized, acoustic, vocoder, cfg,
                                                      device, asr, out)
        rows += batch_rows
        for key in stage:
            stage[key] += getattr(timing, key)
        for it, res in zip(batch, results, strict=True):
            if len(figures) < cfg.plots:
                ref_mel = None if store is None else store.mel(it.id)
                figures.append((it.id, res.alignments[0], res.mels[0], ref_mel))
        console.print(f"eval: {len(rows)}/{len(items)} utterances")
    report = _aggregate(cfg, rows, stage, asr, acoustic, vocoder)
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
        table.add_row(m["name"], m["attention"], *(str(m["failures"][k]) for k in _FAILURES),
                      str(m["failed_utterances"]), _fmt(m["focus"]), _fmt(m["coverage"]))
    console.print(table)


def _aggregate(cfg: EvalConfig, rows: list[dict[str, Any]], stage: dict[str, float],
               asr: Recognition, acoustic: AcousticModel, vocoder: Vocoder) -> dict[str, Any]:
    keys = ["mcd_db", "log_f0_rmse_cents", "vuv_error", "duration_ratio", "focus",
            "monotonicity", "coverage", "wer_synth", "cer_synth", "wer_reference", "cer_reference"]
    audio_s = max(stage["audio_s"], 1e-9)
    return {
        "acoustic": str(acoustic.path), "acoustic_step": acoustic.step, "vocoder": vocoder.name,
        "split": cfg.split if cfg.texts is None else None, "texts": cfg.texts,
        "attention": acoustic.cfg.attention.type, "n_utterances": len(rows),
        "mean": {k: _mean([r.get(k) for r in rows]) for k in keys},
        "failures": {k: int(sum(r[k] for r in rows)) for k in _FAILURES},
        "failed_utterances": int(sum(any(r[k] for k in _FAILURES) for r in rows)),
        "asr": asr.summary(),
        "rtf": {"acoustic": stage["acoustic_s"] / audio_s, "vocoder": stage["vocoder_s"] / audio_s,
                "total": (stage["acoustic_s"] + stage["vocoder_s"]) / audio_s,
                "asr": asr.seconds / audio_s},
        "audio_seconds": stage["audio_s"],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _write(out: Path, report: dict[str, Any], rows: list[dict[str, Any]],
           figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
    atomic_write_text(out / "report.json", json.dumps({"summary": report, "utterances": rows}, indent=1))
    lines = [f"# neurotts eval: {report['n_utterances']} utterances", "",
             f"acoustic `{report['acoustic']}` (step {report['acoustic_step']}, "
             f"{report['attention']} attention), vocoder `{report['vocoder']}`", "",
             "| metric | mean |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["mean"].items()]
    lines += ["", "| failure | count |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["failures"].items()]
    lines += [f"| any (utterances) | {report['failed_utterances']} |"]
    lines += ["", "| stage | real-time factor |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["rtf"].items()]
    if report["asr"]:
        lines += ["", "| ASR corpus rates | WER | CER |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['wer']:.3f} | {v['cer']:.3f} |" for k, v in report["asr"].items()]
    lines += ["", "| id | s | MCD dB | F0 cents | focus | WER | flags |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        flags = ",".join(k for k in ("max_steps", "early_stop", "skip", "repeat") if r[k]) or "-"
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
    from rich.table import Table

    table = Table(title=f"neurotts eval ({report['n_utterances']} utterances)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in report["mean"].items():
        table.add_row(k, _fmt(v))
    for k, v in report["failures"].items():
        table.add_row(f"failures: {k}", str(v))
    for k, v in report["rtf"].items():
        table.add_row(f"RTF {k}", f"{v:.3f}")
    for k, v in report["asr"].items():
        table.add_row(f"ASR {k} WER / CER", f"{v['wer']:.3f} / {v['cer']:.3f}")
    console.print(table)
