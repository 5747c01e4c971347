"""The audit's files: ``audit.tsv``, ``exclude.txt``, ``audit.json``, ``audit.md`` and plots.

Figures are built like :mod:`neurotts.plots` builds them (a ``Figure`` on the Agg
canvas, never ``pyplot``) and written with its :func:`~neurotts.plots.save_figure`.
Every file is written under a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurotts.audit.config import AuditConfig, Limits
from neurotts.audit.scoring import CHECKS, Record
from neurotts.config import to_dict
from neurotts.data.formats import Reject
from neurotts.files import atomic_write_text
from neurotts.plots import save_figure


@dataclass
class AuditSummary:
    """What a run did (returned by :func:`neurotts.audit.run.run`, shown in audit.md)."""

    clips: int
    excluded: int
    warned: int
    audio_seconds: float
    reused: int  # clips measured by an earlier run
    stage_seconds: dict[str, float] = field(default_factory=dict)
    out: Path = Path(".")

    @property
    def wall_seconds(self) -> float:
        return sum(self.stage_seconds.values())


# Measures drawn as distributions: (record key, axis label, thresholds key or None).
DISTRIBUTIONS = (
    ("duration", "duration (s)", "duration_long"),
    ("leading_silence", "leading silence (s)", "leading_silence"),
    ("trailing_silence", "trailing silence (s)", "trailing_silence"),
    ("longest_pause", "longest pause (s)", "longest_pause"),
    ("end_loudness", "last frame: 0 noise floor, 1 speech level", "end_loudness"),
    ("snr_db", "SNR estimate (dB)", "snr_db"),
    ("peak_db", "peak (dBFS)", None),
    ("clipped_share", "share of samples clipped", "clipped_share"),
    ("align_deficit_excess", "alignment deficit over corpus median", "align_deficit"),
)
FIXED_CHECKS = ("unusable", "format", "duplicate_audio", "duplicate_text")


def ranked(records: dict[str, Record], order: list[str]) -> list[Record]:
    """Most suspect first; ties keep corpus order."""
    position = {uid: k for k, uid in enumerate(order)}
    return sorted(records.values(), key=lambda r: (-r["score"], position[r["id"]]))


def write_report(out: Path, records: dict[str, Record], order: list[str], rejects: list[Reject],
                 stats: dict[str, float], cfg: AuditConfig, summary: AuditSummary) -> None:
    clips = ranked(records, order)
    atomic_write_text(out / "audit.tsv", "id\tscore\treasons\n" + "".join(
        f"{r['id']}\t{r['score']:.3f}\t{'; '.join(r['reasons']).replace(chr(9), ' ')}\n"
        for r in clips))
    excluded = [r["id"] for r in clips if r["score"] >= cfg.exclude_score]
    atomic_write_text(out / "exclude.txt", (
        f"# neurotts audit: {len(excluded)} of {len(clips)} clips scored {cfg.exclude_score} or "
        f"more (reasons in audit.tsv)\n") + "".join(f"{uid}\n" for uid in excluded))
    payload = {
        "summary": {"clips": summary.clips, "excluded": summary.excluded, "warned": summary.warned,
                    "audio_seconds": summary.audio_seconds, "reused": summary.reused,
                    "stage_seconds": summary.stage_seconds},
        "corpus": stats,
        "exclude_score": cfg.exclude_score,
        "thresholds": to_dict(cfg.thresholds),
        "rejected_rows": [{"id": r.id, "reason": r.reason} for r in rejects],
        "clips": clips,
    }
    atomic_write_text(out / "audit.json", json.dumps(payload, indent=1, default=_plain) + "\n")
    _save(plot_speaking_rate(clips, stats, cfg), out / "speaking_rate.png")
    _save(plot_distributions(clips, cfg), out / "audio_measures.png")
    atomic_write_text(out / "audit.md", markdown(clips, rejects, stats, cfg, summary))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    save_figure(fig, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------- plots


def _new_figure(size: tuple[float, float], layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def plot_speaking_rate(clips: list[Record], stats: dict[str, float], cfg: AuditConfig) -> Figure:
    """Symbols against seconds of speech, one point per clip; clips whose speaking rate warns
    or excludes are marked, and the corpus median rate and the exclusion band are drawn."""
    fig = _new_figure((8.0, 5.5))
    ax = fig.subplots()
    rated = [r for r in clips if r.get("speaking_rate") is not None]
    if not rated:
        ax.text(0.5, 0.5, "no speaking rates (no readable clip with text)", ha="center")
        return fig
    sec = np.array([r["speech_seconds"] for r in rated])
    sym = np.array([r["n_symbols"] for r in rated])
    score = np.array([r["scores"].get("speaking_rate_z", 0.0) for r in rated])
    bands = ((0.0, 0.5, "0.6", "clips"), (0.5, 1.0, "tab:orange", "rate warns"),
             (1.0, math.inf, "tab:red", "rate excludes"))
    for lo, hi, colour, label in bands:
        sel = (score >= lo) & (score < hi)
        if sel.any():
            ax.scatter(sec[sel], sym[sel], s=14 if lo == 0 else 36, c=colour, label=label,
                       edgecolors="none" if lo == 0 else "black", linewidths=0.5)
    for k in np.flatnonzero(score >= 0.5)[:20]:
        ax.annotate(rated[k]["id"], (sec[k], sym[k]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    if "speaking_rate_median" in stats:
        x = np.linspace(0.0, sec.max() * 1.05, 2)
        med, spread = stats["speaking_rate_median"], stats["speaking_rate_spread"]
        z = cfg.thresholds.speaking_rate_z.exclude
        ax.plot(x, med * x, "k-", lw=1, label=f"median {med:.1f} symbols/s")
        ax.fill_between(x, max(med - z * spread, 0.0) * x, (med + z * spread) * x, color="0.85",
                        alpha=0.5, label=f"|z| < {z:g}", zorder=0)
    ax.set_xlabel("seconds of speech (pauses left out)")
    ax.set_ylabel("symbols in the transcript")
    ax.set_title("Speaking rate")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_distributions(clips: list[Record], cfg: AuditConfig) -> Figure:
    """Histograms of the audio measures with their warn (dashed) and exclude (solid) levels."""
    panels = [p for p in DISTRIBUTIONS if any(r.get(p[0]) is not None for r in clips)]
    ncols = 3
    nrows = max(1, math.ceil(len(panels) / ncols))
    # Fixed margins: the constrained layout solver would take longer than all the audio checks
    # of a small corpus.
    fig = _new_figure((4.0 * ncols, 2.8 * nrows), layout=None)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.92, hspace=0.5, wspace=0.25)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (key, label, limit_key) in zip(axes.flat, panels, strict=False):
        values = np.array([r[key] for r in clips if r.get(key) is not None], dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        if hi - lo <= 1e-9 * max(1.0, abs(hi)):  # one value (e.g. no clipping anywhere)
            lo, hi = lo - 0.5, hi + 0.5
        # Log counts: the few clips past a threshold stay visible next to the many.
        ax.hist(values, bins=40, range=(lo, hi), color="tab:blue", alpha=0.8, log=True,
                histtype="stepfilled")
        if limit_key is not None:
            limits: Limits = getattr(cfg.thresholds, limit_key)
            ax.axvline(limits.warn, color="tab:orange", ls="--", lw=1)
            ax.axvline(limits.exclude, color="tab:red", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("clips")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.suptitle("Audio and alignment measures (dashed: warn, solid: exclude)")
    return fig


# ----------------------------------------------------------------------------- markdown


def _check_rows(clips: list[Record], cfg: AuditConfig) -> list[str]:
    lines = ["| check | warn at | exclude at | clips warned | clips excluded |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in [c.name for c in CHECKS] + list(FIXED_CHECKS):
        scores = [r["scores"][name] for r in clips if name in r["scores"]]
        if not scores:
            continue
        if hasattr(cfg.thresholds, name):
            lim: Limits = getattr(cfg.thresholds, name)
            warn, exclude = f"{lim.warn:g}", f"{lim.exclude:g}"
        else:
            warn = exclude = "(yes/no)"
        n_warn = sum(0.5 <= s < 1.0 for s in scores)
        n_excl = sum(s >= 1.0 for s in scores)
        lines.append(f"| {name} | {warn} | {exclude} | {n_warn} | {n_excl} |")
    return lines


def _cell(text: str | None) -> str:
    return "" if not text else text.replace("|", "\\|").replace("\n", " ")


def _suspect_rows(clips: list[Record], cfg: AuditConfig) -> list[str]:
    lines = ["| id | score | reasons | transcript (normalised) | recogniser heard |",
             "| --- | ---: | --- | --- | --- |"]
    for r in clips[: cfg.report_rows]:
        if r["score"] < 0.5:
            break
        mark = "**" if r["score"] >= cfg.exclude_score else ""
        reasons = _cell("; ".join(r["reasons"]))
        lines.append(f"| {mark}{r['id']}{mark} | {r['score']:.2f} | {reasons} "
                     f"| {_cell(r.get('normalized'))} | {_cell(r.get('asr_text'))} |")
    if len(lines) == 2:
        lines.append("| (none) | | | | |")
    return lines


def markdown(clips: list[Record], rejects: list[Reject], stats: dict[str, float],
             cfg: AuditConfig, summary: AuditSummary) -> str:
    n = max(len(clips), 1)
    rate = summary.audio_seconds / max(summary.wall_seconds, 1e-9)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items())
    lines = [
        "# Corpus audit", "",
        f"`neurotts audit` of `{cfg.data.root}`: {summary.clips} clips, "
        f"{summary.audio_seconds / 3600:.2f} h of audio, in {summary.wall_seconds:.1f} s "
        f"({rate:,.1f}x real time; {stages}).", "",
        "| | clips | share |", "| --- | ---: | ---: |",
        f"| to exclude (score >= {cfg.exclude_score:g}, in `exclude.txt`) | {summary.excluded} "
        f"| {100 * summary.excluded / n:.1f}% |",
        f"| with warnings (score 0.5 to {cfg.exclude_score:g}) | {summary.warned} "
        f"| {100 * summary.warned / n:.1f}% |",
        f"| unusable (unreadable audio, or text the frontend rejects) "
        f"| {sum(not r.get('ok') for r in clips)} | |",
        f"| metadata rows rejected by the reader | {len(rejects)} | |", "",
        "A check scores 0.5 at its warn level and 1.0 at its exclude level; a clip's score is "
        f"its largest check score plus {cfg.others_weight:g} x its other scores of 0.5 or more. "
        "Levels are in `configs/audit.yaml`.", "",
        "## Checks", "", *_check_rows(clips, cfg), "",
        "## Most suspect clips", "", *_suspect_rows(clips, cfg), "",
        "## Speaking rate", "",
    ]
    if "speaking_rate_median" in stats:
        lines += [f"Corpus median {stats['speaking_rate_median']:.1f} symbols per second of "
                  f"speech, robust spread {stats['speaking_rate_spread']:.2f}.", ""]
    lines += ["![speaking rate](speaking_rate.png)", "", "## Audio and alignment measures", "",
              "![measures](audio_measures.png)", ""]
    if rejects:
        lines += ["## Metadata rows rejected by the reader", ""]
        lines += [f"- {_cell(r.id) or '?'}: {_cell(r.reason)}" for r in rejects[:50]]
        lines.append("")
    return "\n".join(lines)
