"""``neurotts prepare``: an LJSpeech-layout corpus -> a feature store (see ``store.py``).

Work is split in two: text (normalise, symbolise) runs in the main process, where a bad row
can be reported by line; audio (load, resample, trim, log-mel, write arrays) runs in a pool of
worker processes, one per core. Each finished item is appended to a journal
(``.progress.jsonl``), so an interrupted run resumes where it stopped; arrays are written to a
temporary name and renamed, so none is ever half-written. The manifest, statistics and
rejects report are rewritten whole at the end of every run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from neurotts.audio import AudioConfig, AudioError, LogMel, clip_from, int16_to_float, read_audio
from neurotts.config import ConfigError, to_dict
from neurotts.data.config import PrepareConfig
from neurotts.data.formats import Corpus, Reject, Row, read_corpus
from neurotts.data.ljspeech import download_ljspeech
from neurotts.data.splits import (
    assign_splits,
    check_split_config,
    listed_ids,
    read_id_list,
    split_note,
    split_sizes,
)
from neurotts.data.store import SPLITS, StoreLayout, Utterance, describe, utterance_record
from neurotts.data.texts import EncodedTexts, encode_texts, text_notes, write_oov
from neurotts.errors import IncompleteError
from neurotts.files import atomic_save_npy, atomic_write_text
from neurotts.text.frontend import TextFrontend

T = TypeVar("T")


class PrepareError(IncompleteError, RuntimeError):
    """The run cannot produce a usable store (nothing kept, or strict mode saw rejects)."""


@dataclass
class Summary:
    kept: int
    rejected: int
    skipped: int  # already done by an earlier run
    audio_seconds: float
    wall_seconds: float
    out: Path
    excluded: int = 0  # left out by data.exclude
    oov_words: int = 0  # distinct words CMUdict lacks (text=arpabet)
    notes: list[str] = field(default_factory=list)  # one line each, printed after the summary


# ----------------------------------------------------------------------------- workers

_worker: dict[str, Any] = {}


def _init_worker(audio: AudioConfig, out: str, save_audio: bool) -> None:
    # One thread per process: the pool already uses every core.
    torch.set_num_threads(1)
    _worker.update(audio=audio, out=StoreLayout(out), save_audio=save_audio, logmel=LogMel(audio))


def _process(item: tuple[str, str]) -> dict[str, Any]:
    """Audio work for one utterance; returns a journal record (ok or reject)."""
    uid, wav_path = item
    cfg: AudioConfig = _worker["audio"]
    out: StoreLayout = _worker["out"]
    path = Path(wav_path)
    if not path.is_file():
        return {"id": uid, "ok": False, "reason": f"{wav_path}: file not found"}
    if path.stat().st_size == 0:
        return {"id": uid, "ok": False, "reason": f"{wav_path}: empty file (0 bytes)"}
    try:
        wav, source = read_audio(wav_path, cfg.sample_rate)
        pcm = clip_from(wav, cfg, wav_path)  # a vocoder learns mel -> audio from these samples
    except AudioError as exc:
        return {"id": uid, "ok": False, "reason": str(exc)}
    seconds = pcm.size / cfg.sample_rate
    if seconds > cfg.max_duration:
        return {"id": uid, "ok": False,
                "reason": f"{wav_path}: {seconds:.2f} s is over audio.max_duration={cfg.max_duration}"}
    with torch.no_grad():
        mel = _worker["logmel"](torch.from_numpy(int16_to_float(pcm))).numpy()  # (n_frames, n_mels)
    atomic_save_npy(out.mel(uid), mel)
    if _worker["save_audio"]:
        atomic_save_npy(out.wav(uid), pcm)
    m64 = mel.astype(np.float64)
    return {
        "id": uid, "ok": True, "n_frames": int(mel.shape[0]), "n_samples": int(pcm.size),
        "source": source.describe() if source.converted(cfg.sample_rate) else None,
        "sum": m64.sum(axis=0).tolist(), "sumsq": (m64 * m64).sum(axis=0).tolist(),
    }


# ----------------------------------------------------------------------------- helpers


def read_journal(out: Path) -> dict[str, dict[str, Any]]:
    """Finished items from earlier runs; a torn last line (crash mid-write) is ignored."""
    done: dict[str, dict[str, Any]] = {}
    path = StoreLayout(out).journal
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[rec["id"]] = rec
    return done


def _check_settings(out: Path, cfg: PrepareConfig) -> None:
    """Refuse to resume into a store made with different audio/text settings."""
    old_path = StoreLayout(out).config
    if not old_path.exists():
        return
    old = describe(OmegaConf.to_container(OmegaConf.load(old_path)))
    new = describe(to_dict(cfg))
    if old != new:
        diff = [k for k in new if old.get(k) != new[k]]
        raise ConfigError(
            f"out={out} holds features made with other {'/'.join(diff)} settings; "
            "choose a new out folder or delete that one"
        )


def resolve_root(cfg: PrepareConfig) -> Path:
    """The corpus folder ``cfg.data`` names (downloaded first when asked); also used by the audit."""
    if cfg.data.root is None and not cfg.data.download:
        raise ConfigError("data.root is not set (the LJSpeech-1.1 folder), or pass data.download=true")
    if cfg.data.download and (cfg.data.root is None or not Path(cfg.data.root).exists()):
        return download_ljspeech(cfg.data.url, cfg.data.sha256, Path(cfg.data.download_dir).expanduser())
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such directory")
    return root


def clip_progress(label: str) -> Progress:
    """The bar of a pass over a corpus's clips (prepare, audit): ``label`` in bold, count,
    the task's ``rate`` field (e.g. "120x real time"), elapsed time and ETA."""
    return Progress(
        TextColumn(label, style="bold"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(),
    )


def _run_audio(todo: list[Row], cfg: PrepareConfig, out: Path, done: dict[str, dict[str, Any]],
               meanwhile: Callable[[], T]) -> T:
    """Run the audio stage over ``todo``, journalling each result as it arrives.

    ``meanwhile`` runs in this process once the workers are busy (the text stage), so the two
    stages overlap; its result is returned.
    """
    workers = cfg.num_workers or os.cpu_count() or 1
    items = [(r.id, str(r.audio)) for r in todo]
    init_args = (cfg.audio, str(out), cfg.save_audio)
    t0, audio_s = time.perf_counter(), 0.0
    with clip_progress("prepare") as bar, open(StoreLayout(out).journal, "a+", encoding="utf-8") as journal:
        end_journal_line(journal)
        task = bar.add_task("prepare", total=len(items), rate="")
        if workers == 1:
            _init_worker(*init_args)
            results = map(_process, items)
            pool = None
        else:
            # fork keeps start-up cheap; workers only touch numpy/torch CPU ops.
            pool = mp.get_context("fork").Pool(workers, _init_worker, init_args)
            results = pool.imap_unordered(_process, items, chunksize=4)
        try:
            side = meanwhile()
            for rec in results:
                done[rec["id"]] = rec
                if rec["ok"]:
                    journal.write(json.dumps(rec) + "\n")
                    journal.flush()
                    audio_s += rec["n_samples"] / cfg.audio.sample_rate
                rate = audio_s / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, rate=f"{rate:,.0f}x real time")
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return side


def end_journal_line(journal: Any) -> None:
    """After a crash mid-write the journal may end in a torn line; start ours on a fresh one."""
    if journal.tell() > 0:
        journal.seek(journal.tell() - 1)
        if journal.read(1) != "\n":
            journal.write("\n")


def _mel_stats(kept: list[Utterance], done: dict[str, dict[str, Any]], n_mels: int) -> dict[str, Any]:
    train = [u for u in kept if u.split == "train"] or kept
    total = sum(done[u.id]["n_frames"] for u in train)
    s = np.zeros(n_mels)
    ss = np.zeros(n_mels)
    for u in train:
        s += np.asarray(done[u.id]["sum"])
        ss += np.asarray(done[u.id]["sumsq"])
    mean = s / total
    std = np.sqrt(np.maximum(ss / total - mean * mean, 1e-10))
    return {"mel_mean": mean.tolist(), "mel_std": std.tolist(), "n_frames": total,
            "n_utterances": len(train), "split": "train" if train[0].split == "train" else "all"}


def _write_outputs(out: Path, kept: list[Utterance], rejects: list[Reject],
                   done: dict[str, dict[str, Any]], cfg: PrepareConfig, enc: EncodedTexts) -> None:
    layout = StoreLayout(out)
    atomic_write_text(layout.manifest, "".join(utterance_record(u) + "\n" for u in kept))
    _write_rejects(out, rejects)
    if kept:
        stats = _mel_stats(kept, done, cfg.audio.n_mels)
        atomic_write_text(layout.stats, json.dumps(stats, indent=1))
    atomic_write_text(layout.symbols, json.dumps(
        {"symbol_set": cfg.text.symbol_set, "symbols": enc.frontend.table.to_list()}, indent=1))
    if cfg.text.symbol_set == "arpabet":
        write_oov(layout.oov, enc.tally)


def _write_rejects(out: Path, rejects: list[Reject]) -> None:
    atomic_write_text(StoreLayout(out).rejects, "id\treason\n" + "".join(
        f"{r.id}\t{r.reason}\n" for r in rejects))


def _open_store(cfg: PrepareConfig) -> Path:
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    layout = StoreLayout(out)
    for folder in (layout.mels, layout.audio) if cfg.save_audio else (layout.mels,):
        folder.mkdir(exist_ok=True)
    atomic_write_text(layout.config, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return out


@dataclass
class Selection:
    """The corpus rows a run works on, and what was set aside before any audio work."""

    rows: list[Row]
    rejects: list[Reject]
    excluded: int
    notes: list[str]
    source: Path  # the corpus's table (or folder), for messages


def _select_rows(root: Path, cfg: PrepareConfig) -> Selection:
    """Read the corpus (``data.format``), leave out data.exclude's ids and (method=lists)
    unlisted ones."""
    exclude = read_id_list(cfg.data.exclude, "data.exclude") if cfg.data.exclude else {}
    corpus: Corpus = read_corpus(root, cfg.data.format, cfg.data.metadata)
    rows, rejects = corpus.rows, corpus.rejects
    notes = [corpus.reading] + ([f"speakers: {len(corpus.speakers)} ({_listed(corpus.speakers)})"]
                                if corpus.speakers else [])
    if exclude:
        # A duplicate row of an excluded id is excluded too, not reported as a duplicate.
        present = {r.id for r in rows} | {r.id for r in rejects}
        unknown = [i for i in exclude if i not in present]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            notes.append(f"data.exclude: {len(unknown)} listed id(s) are not in the corpus: {shown}")
        rejects = [r for r in rejects if r.id not in exclude]
    kept = [r for r in rows if r.id not in exclude]
    excluded = len(rows) - len(kept)
    if cfg.data.split.method == "lists":
        listed = listed_ids(cfg.data.split)
        rejects += [Reject(r.id, f"{r.where}: id is in none of the split lists")
                    for r in kept if r.id not in listed]
        kept = [r for r in kept if r.id in listed]
    split = cfg.data.split
    if kept and split.method == "hash" and (split.val_size, split.test_size) != (None, None):
        # Sizes that even every row could not meet: fail now, before any audio work.
        split_sizes(len(kept), split, f"rows of {corpus.source.name}")
    return Selection(kept, rejects, excluded, notes, corpus.source)


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _usable(rows: list[Row], encoded: dict[str, tuple[str, list[int]]],
            done: dict[str, dict[str, Any]]) -> tuple[list[Row], list[Reject]]:
    """Rows whose text and audio both came through; the audio failures as rejects, each named
    by its row's ``file:line``."""
    usable, rejects = [], []
    for r in rows:
        if r.id not in encoded:
            continue  # its text failed: already a reject
        if done[r.id]["ok"]:
            usable.append(r)
        else:
            rejects.append(Reject(r.id, f"{r.where}: {done[r.id]['reason']}"))
    return usable, rejects


# Clips shorter than this are kept but named in a warning: too short for any sentence (the
# audit excludes them with the same bound), most likely a cut or a wrong file.
SHORT_CLIP_S = 0.5


def _short_note(usable: list[Row], done: dict[str, dict[str, Any]], cfg: PrepareConfig) -> list[str]:
    sr = cfg.audio.sample_rate
    short = [r for r in usable if done[r.id]["n_samples"] < SHORT_CLIP_S * sr]
    if not short:
        return []
    first = short[0]
    return [f"warning: {len(short)} clip(s) kept under {SHORT_CLIP_S} s (the audit excludes "
            f"them); first {first.where}, {first.id}: "
            f"{done[first.id]['n_samples'] / sr:.2f} s for {len(first.text)} characters of text"]


def _nothing_usable(cfg: PrepareConfig, sel: Selection, rejects: list[Reject]) -> str:
    """Why a run kept nothing, in one line."""
    where = sel.source
    if not rejects and not sel.excluded:
        return f"{where}: no utterance rows in it"
    if not rejects:
        return f"no utterances left in {where}: all {sel.excluded} were excluded by data.exclude"
    first = rejects[0]
    return (f"no usable utterances in {where}: {len(rejects)} rejected"
            f"{f', {sel.excluded} excluded' if sel.excluded else ''}; the first: {first.id or '?'}: "
            f"{first.reason} (all in {StoreLayout(Path(cfg.out).expanduser()).rejects})")


def run(cfg: PrepareConfig, console: Console | None = None) -> Summary:
    """Prepare the store described by ``cfg``; returns a summary (also printed)."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    check_split_config(cfg.data.split)
    root = resolve_root(cfg)
    sel = _select_rows(root, cfg)
    out = _open_store(cfg)

    fe = TextFrontend(cfg.text)
    done = read_journal(out)
    todo = [r for r in sel.rows if not _is_done(out, done.get(r.id), cfg.save_audio)]
    # Text is encoded while the workers process audio; rows whose text fails are left out of
    # the manifest (their features stay on disk and are reused if the text is fixed).
    encode = partial(encode_texts, sel.rows, fe)
    enc = _run_audio(todo, cfg, out, done, encode) if todo else encode()
    usable, audio_rejects = _usable(sel.rows, enc.texts, done)
    rejects = sel.rejects + enc.rejects + audio_rejects
    if not usable:
        _write_rejects(out, rejects)
        raise PrepareError(_nothing_usable(cfg, sel, rejects))
    # Splits are drawn from the usable utterances only, so the sizes asked for are the sizes made.
    try:
        splits = assign_splits([r.id for r in usable], cfg.data.split)
    except ConfigError:
        _write_rejects(out, rejects)  # the audio work is journalled; a rerun reuses it
        raise
    kept = [Utterance(r.id, splits[r.id], r.text, *enc.texts[r.id], done[r.id]["n_frames"],
                      done[r.id]["n_samples"], r.speaker) for r in usable]
    _write_outputs(out, kept, rejects, done, cfg, enc)
    audio_s = sum(u.n_samples for u in kept) / cfg.audio.sample_rate
    notes = [*sel.notes, *filter(None, [split_note(splits, cfg.data.split)]),
             *_audio_notes(kept, done, cfg), *text_notes(enc.tally, cfg.text.symbol_set, StoreLayout(out).oov),
             *_short_note(usable, done, cfg)]
    summary = Summary(len(kept), len(rejects), len(sel.rows) - len(todo), audio_s,
                      time.perf_counter() - t0, out, sel.excluded, len(enc.tally.oov), notes)
    _print_summary(console, summary, kept, rejects)
    if cfg.strict and rejects:
        raise PrepareError(f"strict=true and {len(rejects)} utterance(s) were rejected; see {StoreLayout(out).rejects}")
    return summary


def _is_done(out: Path, rec: dict[str, Any] | None, save_audio: bool) -> bool:
    if rec is None or not rec["ok"]:
        return False
    layout = StoreLayout(out)
    if not layout.mel(rec["id"]).exists():
        return False
    return not save_audio or layout.wav(rec["id"]).exists()


def _audio_notes(kept: list[Utterance], done: dict[str, dict[str, Any]], cfg: PrepareConfig) -> list[str]:
    """One line on the clips that were not already mono wav at the audio config's rate."""
    # Journals written before sources were recorded have no "source": counted as unconverted.
    sources = Counter(done[u.id].get("source") for u in kept)
    converted = {k: n for k, n in sources.items() if k is not None}
    if not converted:
        return []
    target = f"{cfg.audio.sample_rate / 1000:g} kHz mono"
    parts = ", ".join(f"{n} from {k}" for k, n in sorted(converted.items(), key=lambda kv: -kv[1]))
    return [f"audio: {sum(converted.values())} of {len(kept)} clips converted to {target}: {parts}"]


def _print_summary(console: Console, s: Summary, kept: list[Utterance], rejects: list[Reject]) -> None:
    # Ids, reasons and paths are the user's text: printed as Text, never parsed as markup, and
    # not wrapped, so that each stays one line in a log.
    counts = {k: sum(u.split == k for u in kept) for k in SPLITS}
    excluded = f", {s.excluded} excluded" if s.excluded else ""
    lines = [Text.assemble(("prepared", "bold green"), (
        f" {s.kept} utterances ({s.audio_seconds / 3600:.2f} h; "
        f"train {counts['train']}, val {counts['val']}, test {counts['test']}) into {s.out} "
        f"in {s.wall_seconds:.1f} s; {s.skipped} already done, {s.rejected} rejected{excluded}"))]
    lines += [Text(f"  {note}") for note in s.notes]
    lines += [Text.assemble(("  rejected", "yellow"), f" {r.id or '?'}: {r.reason}")
              for r in rejects[:10]]
    if len(rejects) > 10:
        lines.append(Text(f"  ... and {len(rejects) - 10} more in {StoreLayout(s.out).rejects}"))
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
