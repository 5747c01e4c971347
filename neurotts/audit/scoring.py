"""From measures to suspicion: corpus statistics, one score per check, reasons, a ranking.

A check's score is 0.5 at its ``warn`` level and 1.0 at its ``exclude`` level, linear in
between and beyond, floored at 0 and capped at :data:`MAX_SCORE` (see ``configs/audit.yaml``).
A clip's suspicion is its largest check score plus ``others_weight`` times the sum of its
other scores at warning level (0.5) or above, so a clip with several problems ranks above one
with a single problem of the same size. Measures that only mean something against the rest
of the corpus (speaking rate, alignment deficit, teacher-forced loss) are turned into
deviations first (:func:`add_corpus_measures`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurotts.audit.config import AuditConfig, Limits

MAX_SCORE = 3.0
MIN_CLIPS_FOR_Z = 8  # fewer clips than this give no meaningful median and spread
Record = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One thresholded check: which measure it reads and how its finding reads."""

    name: str  # also the key of its Limits in cfg.thresholds
    value: Callable[[Record], float | None]  # None: not measured for this clip
    reason: Callable[[Record, float], str]


def _get(key: str) -> Callable[[Record], float | None]:
    return lambda r: r.get(key)


def _pct(v: float) -> str:
    return f"{100 * v:.2g}%"


CHECKS: tuple[Check, ...] = (
    Check("duration_short", _get("duration"), lambda r, v: f"only {v:.2f} s long"),
    Check("duration_long", _get("duration"), lambda r, v: f"{v:.1f} s long"),
    Check("leading_silence", _get("leading_silence"), lambda r, v: f"{v:.1f} s leading silence"),
    Check("trailing_silence", _get("trailing_silence"), lambda r, v: f"{v:.1f} s trailing silence"),
    Check("longest_pause", _get("longest_pause"), lambda r, v: f"{v:.1f} s pause"),
    Check("end_loudness", lambda r: _judged_end(r),
          lambda r, v: f"ends {-r['end_level_db']:.0f} dB below its speech level, "
                       f"{r['end_level_db'] + r['snr_db']:.0f} dB above its noise floor (cut off?)"),
    Check("snr_db", _get("snr_db"), lambda r, v: f"SNR {v:.0f} dB"),
    Check("clipped_share", _get("clipped_share"), lambda r, v: f"{_pct(v)} of samples clipped"),
    Check("dc_offset", lambda r: abs(r["dc_offset"]) if "dc_offset" in r else None,
          lambda r, v: f"DC offset {r['dc_offset']:+.3f}"),
    Check("speaking_rate_z", lambda r: _abs(r.get("speaking_rate_z")),
          lambda r, v: f"speaking rate {r['speaking_rate']:.1f} symbols/s "
                       f"(corpus {r['corpus_speaking_rate']:.1f}, z {r['speaking_rate_z']:+.1f})"),
    Check("align_skipped", _get("align_skipped"),
          lambda r, v: "transcript could not be aligned" if r.get("align_failed")
          else f"{_pct(v)} of the transcript not found in the audio"),
    Check("align_deficit", _get("align_deficit_excess"),
          lambda r, v: "transcript fits the audio poorly (alignment deficit "
                       f"{r['align_deficit']:.1f}, corpus {r['corpus_align_deficit']:.1f})"),
    Check("transcript_cer", _get("transcript_cer"), lambda r, v: f"transcript CER {v:.2f}"),
    Check("acoustic_loss_z", _get("acoustic_loss_z"),
          lambda r, v: f"teacher-forced loss {r['acoustic_loss']:.3f} (z {v:+.1f})"),
    Check("attention_coverage", _get("attention_coverage"),
          lambda r, v: f"attention covers {_pct(v)} of the text"),
    Check("attention_band_mass", _get("attention_band_mass"),
          lambda r, v: f"{_pct(v)} of the attention on the diagonal"),
)


# Under this SNR the speech level hardly stands above the noise floor (a noise clip): where the
# clip ends between the two says nothing about a cut, and the SNR check names the problem.
END_MIN_SNR_DB = 12.0


def _judged_end(r: Record) -> float | None:
    if "end_loudness" not in r or r["snr_db"] < END_MIN_SNR_DB:
        return None
    return r["end_loudness"]


def _abs(v: float | None) -> float | None:
    return None if v is None else abs(v)


def limit_score(value: float, limits: Limits) -> float:
    """0.5 at ``warn``, 1.0 at ``exclude``, linear, clipped to [0, MAX_SCORE]. Either
    direction: when ``exclude < warn`` smaller values score higher."""
    span = limits.exclude - limits.warn
    if span == 0:
        return MAX_SCORE if value >= limits.exclude else 0.0
    return float(min(max(0.5 + 0.5 * (value - limits.warn) / span, 0.0), MAX_SCORE))


def robust_z(values: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Median, spread (1.4826 x MAD: the standard deviation for normal data) and z-scores."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    if spread == 0.0:
        return median, spread, np.zeros_like(values)
    return median, spread, (values - median) / spread


def add_corpus_measures(records: dict[str, Record]) -> dict[str, float]:
    """Add corpus-relative measures to each readable clip's record, in place; return the
    corpus statistics used (medians and spreads) for the report."""
    stats: dict[str, float] = {}
    good = {i: r for i, r in records.items() if r.get("ok")}
    rated = {i: r for i, r in good.items() if r.get("n_symbols") and r["speech_seconds"] > 0}
    for r in rated.values():
        r["speaking_rate"] = r["n_symbols"] / r["speech_seconds"]
    if len(rated) >= MIN_CLIPS_FOR_Z:
        ids = list(rated)
        med, spread, z = robust_z(np.array([rated[i]["speaking_rate"] for i in ids]))
        stats.update(speaking_rate_median=med, speaking_rate_spread=spread)
        for i, zi in zip(ids, z, strict=True):
            rated[i].update(speaking_rate_z=float(zi), corpus_speaking_rate=med)
    aligned = {i: r for i, r in good.items() if r.get("align_deficit") is not None}
    if aligned:
        med = float(np.median([r["align_deficit"] for r in aligned.values()]))
        stats["align_deficit_median"] = med
        for r in aligned.values():
            r.update(align_deficit_excess=r["align_deficit"] - med, corpus_align_deficit=med)
    losses = {i: r for i, r in good.items() if r.get("acoustic_loss") is not None}
    if len(losses) >= MIN_CLIPS_FOR_Z:
        ids = list(losses)
        med, spread, z = robust_z(np.array([losses[i]["acoustic_loss"] for i in ids]))
        stats.update(acoustic_loss_median=med, acoustic_loss_spread=spread)
        for i, zi in zip(ids, z, strict=True):
            losses[i]["acoustic_loss_z"] = float(zi)
    return stats


def _format_findings(records: dict[str, Record], order: list[str], cfg: AuditConfig
                     ) -> dict[str, list[tuple[float, str, str]]]:
    """Yes/no findings (format, duplicates) as (score, check name, reason) per clip."""
    found: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    good = [i for i in order if records[i].get("ok")]
    if not good:
        return found
    fmt = Counter((records[i]["sample_rate"], records[i]["channels"], records[i]["encoding"])
                  for i in good)
    usual = fmt.most_common(1)[0][0]
    for i in good:
        r = records[i]
        if r["sample_rate"] < cfg.audio.sample_rate:
            found[i].append((cfg.scores.low_sample_rate, "format",
                             f"sample rate {r['sample_rate']} Hz, below {cfg.audio.sample_rate}"))
        elif (r["sample_rate"], r["channels"], r["encoding"]) != usual:
            found[i].append((cfg.scores.other_format, "format",
                             f"{r['sample_rate']} Hz, {r['channels']} channel(s), {r['encoding']} "
                             f"(most clips: {usual[0]} Hz, {usual[1]}, {usual[2]})"))
    _duplicates(records, good, found, cfg)
    return found


def _duplicates(records: dict[str, Record], good: list[str],
                found: dict[str, list[tuple[float, str, str]]], cfg: AuditConfig) -> None:
    by_audio: dict[str, list[str]] = defaultdict(list)
    by_text: dict[str, list[str]] = defaultdict(list)
    for i in good:
        by_audio[records[i]["audio_hash"]].append(i)
        if records[i].get("text_key"):
            by_text[records[i]["text_key"]].append(i)
    for ids in by_audio.values():
        texts = {records[i].get("text_key") for i in ids}
        for k, i in enumerate(ids):
            if k == 0 and len(texts) == 1:
                continue  # the first copy of a true duplicate is kept
            other = ids[1] if k == 0 else ids[0]
            note = " with another transcript" if len(texts) > 1 else ""
            found[i].append((cfg.scores.duplicate_audio, "duplicate_audio",
                             f"same audio as {other}{note}"))
    for ids in by_text.values():
        if len(ids) < 2:
            continue
        for k, i in enumerate(ids):
            if len({records[j]["audio_hash"] for j in ids}) == 1:
                continue  # already reported as duplicate audio
            found[i].append((cfg.scores.duplicate_text, "duplicate_text",
                             f"same transcript as {ids[1] if k == 0 else ids[0]}"))


def score_clips(records: dict[str, Record], order: list[str], cfg: AuditConfig) -> None:
    """Add ``scores`` (check -> score), ``score`` and ``reasons`` to every record, in place.

    ``order`` is the corpus order (metadata lines): the first copy of duplicated audio is the
    one kept.
    """
    findings = _format_findings(records, order, cfg)
    for i in order:
        r = records[i]
        if not r.get("ok"):
            r.update(scores={"unusable": cfg.scores.unusable}, score=cfg.scores.unusable,
                     reasons=[r["reason"]])
            continue
        items = list(findings.get(i, []))
        for check in CHECKS:
            value = check.value(r)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            s = limit_score(value, getattr(cfg.thresholds, check.name))
            items.append((s, check.name, check.reason(r, value)))
        items.sort(key=lambda t: -t[0])
        scores = {name: round(s, 4) for s, name, _ in items}
        top = items[0][0] if items else 0.0
        rest = sum(s for s, _, _ in items[1:] if s >= 0.5)
        reasons = [text for s, _, text in items if s >= 0.5]
        if not reasons and top > 0:  # a score below every warning still says where it comes from
            reasons = [f"{items[0][2]} (under its warning level)"]
        r.update(scores=scores, score=round(top + cfg.others_weight * rest, 4), reasons=reasons)
