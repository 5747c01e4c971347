"""The report of ``neurotts eval``: one model's measures aggregated (``report.json``,
``report.md``, alignment and mel plots, a table on the console), and the comparison of several
models on the same texts (``comparison.json``, ``comparison.md``, a table)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from neurotts import plots
from neurotts.evaluation.config import EvalConfig
from neurotts.files import atomic_write_text
from neurotts.synthesis.engine import AcousticModel, Timing
from neurotts.vocoders import Vocoder

_COMPARED = ("focus", "monotonicity", "coverage", "wer_synth", "mcd_db")
FAILURES = ("max_steps", "early_stop", "skip", "repeat")


def compare(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One row per model of a comparison (``reports``: (name, report) in order)."""
    return {"models": [
        {"name": name, "acoustic": r["acoustic"], "attention": r["attention"], "step": r["acoustic_step"],
         "n_utterances": r["n_utterances"], "failures": r["failures"],
         "failed_utterances": r["failed_utterances"], **{k: r["mean"][k] for k in _COMPARED}}
        for name, r in reports
    ]}


def write_comparison(out: Path, comparison: dict[str, Any]) -> None:
    atomic_write_text(out / "comparison.json", json.dumps(comparison, indent=1))
    head = ["model", "attention", "step", "n", *FAILURES, "failed", *_COMPARED]
    lines = ["# neurotts eval: comparison on the same texts", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in comparison["models"]:
        cells = [m["name"], m["attention"], str(m["step"]), str(m["n_utterances"]),
                 *(str(m["failures"][k]) for k in FAILURES), str(m["failed_utterances"]),
                 *(_fmt(m[k]) for k in _COMPARED)]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")


def print_comparison(console: Console, comparison: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="attention comparison (same texts)")
    for col in ("model", "attention", *FAILURES, "failed", "focus", "coverage"):
        table.add_column(col)
    for m in comparison["models"]:
        cells = [m["name"], m["attention"], *(str(m["failures"][k]) for k in FAILURES),
                 str(m["failed_utterances"]), _fmt(m["focus"]), _fmt(m["coverage"])]
        table.add_row(*(Text(c) for c in cells))  # Text: a model's folder name is shown as is
    console.print(table)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


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
_OF_RECORDING = ("wer_reference", "cer_reference")


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


def aggregate(cfg: EvalConfig, rows: list[dict[str, Any]], timing: Timing,
              asr: dict[str, Any], asr_seconds: float, acoustic: AcousticModel,
              vocoder: Vocoder) -> dict[str, Any]:
    """The report of one model: means, failures, ASR corpus rates (``asr``: the recogniser's
    summary, ``asr_seconds`` its time) and real-time factors."""
    audio_s = max(timing.audio_s, 1e-9)
    mean = {k: _mean([r.get(k) for r in rows]) for k in _LABELS}
    return {
        "acoustic": str(acoustic.path), "acoustic_step": acoustic.step, "vocoder": vocoder.name,
        "split": cfg.split if cfg.texts is None else None, "texts": cfg.texts,
        "attention": acoustic.cfg.attention.type, "n_utterances": len(rows), "seed": cfg.seed,
        "mean": mean,
        "not_available": _not_available(cfg, rows, mean),
        "failures": {k: int(sum(r[k] for r in rows)) for k in FAILURES},
        "failed_utterances": int(sum(_failed(r) for r in rows)),
        # How many failed utterances each mean of the synthesis includes: such a mean
        # describes failures. The recordings' own rates do not depend on the synthesis.
        "failed_in_mean": {k: 0 if k in _OF_RECORDING else
                           int(sum(_failed(r) and _finite(r.get(k)) for r in rows))
                           for k in _LABELS},
        "asr": asr,
        "rtf": {"acoustic": timing.acoustic_s / audio_s, "vocoder": timing.vocoder_s / audio_s,
                "total": timing.rtf, "asr": asr_seconds / audio_s},
        "audio_seconds": timing.audio_s,
        # Multi-speaker models: the same means and failure counts for each speaker's rows.
        "speakers": _per_speaker(rows) if acoustic.speakers else None,
    }


def _per_speaker(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each speaker's (rows carry ``speaker``) utterance count, failures and means."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["speaker"], []).append(r)
    return {name: {"n_utterances": len(group),
                   "failed_utterances": int(sum(_failed(r) for r in group)),
                   "mean": {k: _mean([r.get(k) for r in group]) for k in _LABELS}}
            for name, group in sorted(groups.items())}


def _failed(row: dict[str, Any]) -> bool:
    return any(row[k] for k in FAILURES)


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(v)


def failure_line(report: dict[str, Any]) -> str:
    """What the report leads with: how many utterances failed, and how."""
    kinds = ", ".join(f"{k} {v}" for k, v in report["failures"].items() if v)
    return (f"failed: {report['failed_utterances']} of {report['n_utterances']} utterances"
            + (f" ({kinds})" if kinds else ""))


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
        mean = _fmt(report["mean"][key], reason)
        failed = report["failed_in_mean"][key]
        if failed and report["mean"][key] is not None:
            mean += f" (incl. {failed} failed)"
        rows.append((label, mean, corpus_cell))
    return rows


def write_report(out: Path, report: dict[str, Any], rows: list[dict[str, Any]],
           figures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
    atomic_write_text(out / "report.json", json.dumps({"summary": report, "utterances": rows}, indent=1))
    lines = [f"# neurotts eval: {report['n_utterances']} utterances", "",
             f"acoustic `{report['acoustic']}` (step {report['acoustic_step']}, "
             f"{report['attention']} attention), vocoder `{report['vocoder']}`", "",
             f"**{failure_line(report)}**; a mean marked \"incl. N failed\" includes failed "
             "utterances (max_steps utterances are not measured: no MCD/F0, WER 1)", "",
             "| measure | mean per utterance | corpus rate (all edits / all words or characters) |",
             "| --- | --- | --- |"]
    lines += [f"| {label} | {mean} | {corpus} |" for label, mean, corpus in _measure_rows(report)]
    lines += ["", "| failure | utterances |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["failures"].items()]
    lines += [f"| any | {report['failed_utterances']} |"]
    lines += _speaker_lines(report)
    lines += ["", "| stage | real-time factor |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["rtf"].items()]
    lines += ["", "| id | s | MCD dB | F0 cents | focus | WER | flags |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        flags = ",".join(k for k in FAILURES if r[k]) or "-"
        lines.append(f"| {r['id']} | {r['seconds']:.2f} | {_fmt(r.get('mcd_db'))} | "
                     f"{_fmt(r.get('log_f0_rmse_cents'))} | {r['focus']:.3f} | {_fmt(r.get('wer_synth'))} | {flags} |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    if figures:
        fig = plots.plot_alignments([f[1] for f in figures], titles=[f[0] for f in figures])
        plots.save_figure(fig, out / "alignments.png")
        for uid, _, mel, ref in figures:
            if ref is not None:
                plots.save_figure(plots.plot_mel_comparison(mel, ref, title=uid), out / f"mel_{uid}.png")


_PER_SPEAKER = ("mcd_db", "log_f0_rmse_cents", "duration_ratio", "focus", "wer_synth")


def _speaker_lines(report: dict[str, Any]) -> list[str]:
    """report.md's table of means per speaker (multi-speaker models only)."""
    if not report.get("speakers"):
        return []
    head = ["speaker", "n", "failed", *(_LABELS[k] for k in _PER_SPEAKER)]
    lines = ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, s in report["speakers"].items():
        cells = [name, str(s["n_utterances"]), str(s["failed_utterances"]),
                 *(_fmt(s["mean"][k]) for k in _PER_SPEAKER)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def print_report(console: Console, report: dict[str, Any]) -> None:
    """The measures (mean per utterance and, for WER/CER, the corpus rate; every cell is Text,
    so nothing in it is read as markup), then a line of failure counts and one of real-time
    factors."""
    from rich.table import Table

    console.print(failure_line(report), markup=False, highlight=False, soft_wrap=True,
                  style="bold red" if report["failed_utterances"] else None)
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
    for name, sp in (report.get("speakers") or {}).items():
        means = ", ".join(f"{_LABELS[k]} {_fmt(sp['mean'][k])}" for k in _PER_SPEAKER)
        console.print(f"speaker {name}: {sp['n_utterances']} utterances, "
                      f"{sp['failed_utterances']} failed; {means}", markup=False,
                      highlight=False, soft_wrap=True)
    rtf = ", ".join(f"{k} {v:.3f}" for k, v in report["rtf"].items())
    console.print(f"real-time factor: {rtf}", markup=False, highlight=False, soft_wrap=True)
