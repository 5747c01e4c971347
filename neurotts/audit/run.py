"""``neurotts audit``: measure every clip of a corpus, score it, write the report.

Stages, each resumable:

1. *measure* (a pool of worker processes, one per core): text frontend, audio measures,
   transcript alignment (:mod:`neurotts.audit.measures`, :mod:`neurotts.audit.transcript`).
2. *acoustic* (``--acoustic RUN``, this process): teacher-forced loss and attention health.
3. *recognise* (the pool again): the full recogniser on the clips that warn for any reason.
4. *score and report*: corpus statistics, one score per check, the ranking, the files.

Each clip's record is appended to prepare's journal (``.progress.jsonl``) after every stage
that changed it, so an interrupted run loses at most the clips in flight. A record carries a
key made of the measuring settings, the wav file's size and modification time and the
transcript; a rerun reuses every record whose key still matches and measures the rest.
Thresholds are not part of the key: changing them only rescores.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from neurotts.audit.config import AuditConfig
from neurotts.audit.measures import ClipError, audio_measures, read_clip
from neurotts.audit.report import AuditSummary, write_report
from neurotts.audit.scoring import Record, add_corpus_measures, score_clips
from neurotts.config import ConfigError, to_dict
from neurotts.data.formats import Reject, Row, read_corpus
from neurotts.data.prepare import clip_progress, end_journal_line, read_journal, resolve_root
from neurotts.data.store import JOURNAL, StoreLayout
from neurotts.errors import IncompleteError
from neurotts.evaluation.asr import import_optional, normalize_text, to_asr_pcm
from neurotts.files import atomic_write_text
from neurotts.text.frontend import TextError, TextFrontend, TextWarning, is_english
from neurotts.text.ipa import is_ipa_phone
from neurotts.text.symbols import LETTERS, is_phone_symbol

# Bump when a measure's definition changes, so that old journal records are measured again.
MEASURES_VERSION = 2


class AuditError(IncompleteError, RuntimeError):
    """The corpus cannot be audited at all (no rows, no readable clip)."""


# ----------------------------------------------------------------------------- workers

_worker: dict[str, Any] = {}


def _init_worker(cfg: AuditConfig) -> None:
    import torch

    torch.set_num_threads(1)  # the pool already uses every core
    _worker.clear()
    _worker.update(cfg=cfg, frontend=TextFrontend(cfg.text), checker=None)


def _checker() -> Any:
    """The worker's pocketsphinx aligner/recogniser, built on first use (about a second)."""
    if _worker["checker"] is None:
        from neurotts.audit.transcript import TranscriptChecker

        _worker["checker"] = TranscriptChecker(_worker["cfg"].transcript)
    return _worker["checker"]


def _text_measures(raw: str) -> Record:
    fe: TextFrontend = _worker["frontend"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextWarning)  # dropped characters: prepare reports them
        normalized = fe.normalize(raw)
        symbols = fe.to_symbols(normalized)  # no ids: an ipa table would need the whole corpus
    if fe.cfg.symbol_set == "ipa":
        n = sum(1 for s in symbols if is_ipa_phone(s))
    else:
        n = sum(1 for s in symbols if s in LETTERS or is_phone_symbol(s))
    return {"normalized": normalized, "n_symbols": n, "text_key": normalize_text(normalized)}


def _measure(item: tuple[str, str, str, str]) -> Record:
    """Stage 1 for one clip: text, audio and alignment measures (or why it failed)."""
    uid, wav, raw, where = item
    cfg: AuditConfig = _worker["cfg"]
    rec: Record = {"id": uid, "where": where, "text": raw}
    try:
        rec.update(_text_measures(raw))
    except TextError as exc:
        return {**rec, "ok": False, "reason": f"{where}: {exc}"}
    try:
        clip = read_clip(Path(wav))
    except ClipError as exc:
        return {**rec, "ok": False, "reason": str(exc)}
    rec.update(audio_measures(clip, cfg.levels), ok=True)
    if cfg.transcript.enabled:
        pcm = to_asr_pcm(clip.mono, clip.sample_rate)  # (n_16k,) int16
        checker = _checker()
        rec.update(checker.align(pcm, checker.words(rec["normalized"])))
    return rec


def _recognise(item: tuple[str, str, str]) -> tuple[str, Record]:
    """Stage 3 for one clip: what the full recogniser hears."""
    uid, wav, normalized = item
    try:
        clip = read_clip(Path(wav))
    except ClipError as exc:  # changed on disk since stage 1
        return uid, {"asr_text": None, "transcript_cer": None, "asr_error": str(exc)}
    return uid, _checker().recognise(to_asr_pcm(clip.mono, clip.sample_rate), normalized)


# ----------------------------------------------------------------------------- helpers


@contextmanager
def _pool(cfg: AuditConfig, n_items: int) -> Iterator[Callable[..., Iterator[Any]]]:
    """``imap_unordered`` over one worker per core (or in this process for one worker)."""
    workers = min(cfg.num_workers or os.cpu_count() or 1, max(n_items, 1))
    if workers == 1:
        _init_worker(cfg)
        yield lambda fn, items: map(fn, items)
        return
    # fork keeps start-up cheap; workers touch numpy, soundfile and pocketsphinx only.
    pool = mp.get_context("fork").Pool(workers, _init_worker, (cfg,))
    try:
        yield lambda fn, items: pool.imap_unordered(fn, items, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


def _settings_key(cfg: AuditConfig) -> str:
    """What the stage-1 and stage-2 measures depend on, besides the clip itself."""
    settings = {"version": MEASURES_VERSION, "levels": to_dict(cfg.levels),
                "transcript": to_dict(cfg.transcript), "text": to_dict(cfg.text)}
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _clip_key(settings: str, row: Row) -> str:
    try:
        st = row.audio.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return hashlib.sha1(f"{settings}|{stamp}|{row.text}".encode()).hexdigest()[:16]


class _Journal:
    """Appends whole records to prepare's journal file and keeps the merged view."""

    def __init__(self, out: Path, records: dict[str, Record]):
        self.records = records
        self._file = open(out / JOURNAL, "a+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        end_journal_line(self._file)

    def put(self, rec: Record) -> None:
        self.records[rec["id"]] = rec
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _run_stage(label: str, fn: Callable[[Any], Any], items: list[Any], cfg: AuditConfig,
               on_result: Callable[[Any], float], console: Console) -> None:
    """Map ``fn`` over ``items`` in the pool with a progress bar; ``on_result`` journals a
    result and returns the seconds of audio it covered (for the rate shown)."""
    t0, seconds = time.perf_counter(), 0.0
    with clip_progress(f"audit: {label}") as bar, _pool(cfg, len(items)) as imap:
        task = bar.add_task(label, total=len(items), rate="")
        for result in imap(fn, items):
            seconds += on_result(result)
            rate = seconds / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:,.1f}x real time")


# ----------------------------------------------------------------------------- stages


def _measure_stage(rows: list[Row], cfg: AuditConfig, journal: _Journal, console: Console) -> int:
    """Stage 1 over the rows without a current record; returns how many were reused."""
    settings = _settings_key(cfg)
    keys = {r.id: _clip_key(settings, r) for r in rows}
    todo = [r for r in rows if journal.records.get(r.id, {}).get("key") != keys[r.id]]

    def put(rec: Record) -> float:
        journal.put({**rec, "key": keys[rec["id"]]})
        return float(rec.get("duration", 0.0))

    if todo:
        items = [(r.id, str(r.audio), r.text, r.where) for r in todo]
        _run_stage("measure", _measure, items, cfg, put, console)
    return len(rows) - len(todo)


def _recognise_stage(rows: list[Row], cfg: AuditConfig, journal: _Journal,
                     console: Console) -> None:
    """Stage 3: the full recogniser on every clip that warns for any reason (once per clip):
    a second opinion on the transcript, and for the report what was heard."""
    # Provisional scores, on copies: the journal keeps measures only.
    records = {r.id: dict(journal.records[r.id]) for r in rows}
    add_corpus_measures(records)
    score_clips(records, [r.id for r in rows], cfg)
    todo = [r for r in rows if records[r.id].get("ok") and "asr_text" not in records[r.id]
            and "normalized" in records[r.id] and records[r.id]["score"] >= 0.5]

    def put(result: tuple[str, Record]) -> float:
        uid, found = result
        journal.put({**journal.records[uid], **found})
        return float(records[uid]["duration"])

    if todo:
        items = [(r.id, str(r.audio), records[r.id]["normalized"]) for r in todo]
        _run_stage("recognise", _recognise, items, cfg, put, console)


def _acoustic_stage(rows: list[Row], cfg: AuditConfig, journal: _Journal, console: Console) -> None:
    """Stage 2: teacher-forced loss and attention health of every readable clip."""
    from neurotts.audit.acoustic import AcousticChecker

    assert cfg.acoustic is not None
    checker = AcousticChecker(cfg.acoustic, cfg.device)
    records = journal.records
    todo = [r for r in rows if records[r.id].get("ok")
            and records[r.id].get("acoustic_model") != checker.name]
    if not todo:
        return
    t0, seconds = time.perf_counter(), 0.0
    with clip_progress("audit: acoustic") as bar:
        task = bar.add_task("acoustic", total=len(todo), rate="")
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            found = checker.measure([(r.id, r.audio, r.text) for r in batch],
                                    [r.speaker for r in batch])
            for r in batch:
                journal.put({**records[r.id], **found[r.id], "acoustic_model": checker.name})
                seconds += records[r.id]["duration"]
            rate = seconds / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=len(batch), rate=f"{rate:,.1f}x real time")


def _check_out(out: Path) -> None:
    # prepare journals into the same file name: sharing a folder would mix the two.
    if StoreLayout(out).manifest.exists():
        raise ConfigError(f"out={out} is a feature store; choose another folder for the audit")


def run(cfg: AuditConfig, console: Console | None = None) -> AuditSummary:
    """Audit the corpus described by ``cfg`` and write the report into ``cfg.out``."""
    console = console or Console(stderr=True)
    root = resolve_root(cfg)  # type: ignore[arg-type]  # reads only cfg.data
    out = Path(cfg.out).expanduser()
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _english_transcripts_only(cfg, console)
    if cfg.transcript.enabled:  # fail before any work, not in every worker
        for module in ("pocketsphinx", "jiwer"):
            import_optional(module, "the audit's transcript check (or transcript.enabled=false)")
    corpus = read_corpus(root, cfg.data.format, cfg.data.metadata)
    rows, rejects = corpus.rows, corpus.rejects
    if not rows:
        raise AuditError(f"{corpus.source}: no usable rows to audit")
    atomic_write_text(out / "config.yaml", json.dumps(to_dict(cfg), indent=1) + "\n")
    times: dict[str, float] = {}
    journal = _Journal(out, read_journal(out))
    try:
        t = time.perf_counter()
        reused = _measure_stage(rows, cfg, journal, console)
        times["measure"] = time.perf_counter() - t
        if cfg.acoustic:
            t = time.perf_counter()
            _acoustic_stage(rows, cfg, journal, console)
            times["acoustic"] = time.perf_counter() - t
        if cfg.transcript.enabled and cfg.transcript.recognise:
            t = time.perf_counter()
            _recognise_stage(rows, cfg, journal, console)
            times["recognise"] = time.perf_counter() - t
    finally:
        journal.close()
    return _finish(rows, rejects, cfg, out, journal.records, reused, times, console)


def _english_transcripts_only(cfg: AuditConfig, console: Console) -> AuditConfig:
    """The config with the transcript check off, said in one line, for a corpus that is not
    English: pocketsphinx's model (the only one inside its wheel) is English."""
    if not cfg.transcript.enabled or is_english(cfg.text):
        return cfg
    console.print(Text(f"transcript check skipped: the recogniser's model is English "
                       f"(text.language={cfg.text.language})"), soft_wrap=True, highlight=False)
    return replace(cfg, transcript=replace(cfg.transcript, enabled=False))


def _finish(rows: list[Row], rejects: list[Reject], cfg: AuditConfig, out: Path,
            all_records: dict[str, Record], reused: int, times: dict[str, float],
            console: Console) -> AuditSummary:
    t = time.perf_counter()
    records = {r.id: all_records[r.id] for r in rows}
    stats = add_corpus_measures(records)
    order = [r.id for r in rows]
    score_clips(records, order, cfg)
    excluded = sum(r["score"] >= cfg.exclude_score for r in records.values())
    warned = sum(0.5 <= r["score"] < cfg.exclude_score for r in records.values())
    audio_s = sum(r.get("duration", 0.0) for r in records.values())
    summary = AuditSummary(len(rows), excluded, warned, audio_s, reused, times, out)
    write_report(out, records, order, rejects, stats, cfg, summary)
    times["report"] = time.perf_counter() - t
    if not any(r.get("ok") for r in records.values()):
        raise AuditError(f"no readable clip among {len(rows)}; see {out / 'audit.tsv'}")
    _print_summary(console, summary, records, cfg)
    return summary


def _print_summary(console: Console, s: AuditSummary, records: dict[str, Record],
                   cfg: AuditConfig) -> None:
    rate = s.audio_seconds / max(s.wall_seconds, 1e-9)
    # Text, not markup: ids, reasons and the report path are printed as they are.
    console.print(Text.assemble(
        ("audited", "bold green"),
        f" {s.clips} clips ({s.audio_seconds / 3600:.2f} h) in {s.wall_seconds:.1f} s "
        f"({rate:,.1f}x real time; {s.reused} reused): {s.excluded} to exclude, "
        f"{s.warned} with warnings; report in {s.out}"), soft_wrap=True)
    ranked = sorted(records.values(), key=lambda r: -r["score"])
    for r in ranked[:10]:
        if r["score"] < 0.5:
            break
        colour = "red" if r["score"] >= cfg.exclude_score else "yellow"
        console.print(Text.assemble("  ", (f"{r['score']:.2f}", colour),
                                    f" {r['id']}: {'; '.join(r['reasons'])}"), soft_wrap=True)
