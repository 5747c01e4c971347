"""``neurotts prepare``: an LJSpeech-layout corpus -> a feature store (see ``store.py``).

Work is split in two: text (normalise, symbolise) runs in the main process, where a bad row
can be reported by line; audio (load, resample, trim, log-mel, write arrays) runs in a pool of
worker processes, one per core. Each finished item is appended to a journal
(``.progress.jsonl``), so an interrupted run resumes where it stopped; arrays are written to a
temporary name and renamed, so none is ever half-written. The manifest, statistics and
rejects report are rewritten whole at the end of every run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
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

from neurotts.audio import (
    AudioError,
    LogMel,
    fit_to_hop,
    float_to_int16,
    int16_to_float,
    load_wav,
    trim_silence,
)
from neurotts.config import AudioConfig, ConfigError, PrepareConfig, SplitConfig, to_dict
from neurotts.data.ljspeech import Reject, Row, download_ljspeech, read_metadata
from neurotts.data.store import SPLITS, Utterance, describe, utterance_record
from neurotts.files import atomic_save_npy, atomic_write_text
from neurotts.text.frontend import TextError, TextFrontend

JOURNAL = ".progress.jsonl"
T = TypeVar("T")


class PrepareError(RuntimeError):
    """The run cannot produce a usable store (nothing kept, or strict mode saw rejects)."""


@dataclass
class Summary:
    kept: int
    rejected: int
    skipped: int  # already done by an earlier run
    audio_seconds: float
    wall_seconds: float
    out: Path


# ----------------------------------------------------------------------------- workers

_worker: dict[str, Any] = {}


def _init_worker(audio: AudioConfig, out: str, save_audio: bool) -> None:
    # One thread per process: the pool already uses every core.
    torch.set_num_threads(1)
    _worker.update(audio=audio, out=Path(out), save_audio=save_audio, logmel=LogMel(audio))


def _process(item: tuple[str, str]) -> dict[str, Any]:
    """Audio work for one utterance; returns a journal record (ok or reject)."""
    uid, wav_path = item
    cfg: AudioConfig = _worker["audio"]
    out: Path = _worker["out"]
    try:
        wav = load_wav(wav_path, cfg.sample_rate)
    except AudioError as exc:
        reason = f"{wav_path}: file not found" if not Path(wav_path).exists() else str(exc)
        return {"id": uid, "ok": False, "reason": reason}
    if cfg.trim_silence:
        wav = trim_silence(wav, cfg.trim_top_db, cfg.win_length, cfg.hop_length)
    wav = fit_to_hop(wav, cfg.hop_length)
    seconds = wav.size / cfg.sample_rate
    if wav.size == 0:
        return {"id": uid, "ok": False, "reason": f"{wav_path}: silent or shorter than one hop"}
    if seconds > cfg.max_duration:
        return {"id": uid, "ok": False,
                "reason": f"{wav_path}: {seconds:.2f} s is over audio.max_duration={cfg.max_duration}"}
    # The mel is computed from the 16-bit waveform the store keeps, so features and audio agree
    # exactly (a vocoder learns the mel -> audio map from these pairs).
    pcm = float_to_int16(wav)
    with torch.no_grad():
        mel = _worker["logmel"](torch.from_numpy(int16_to_float(pcm))).numpy()  # (n_frames, n_mels)
    atomic_save_npy(out / "mels" / f"{uid}.npy", mel)
    if _worker["save_audio"]:
        atomic_save_npy(out / "audio" / f"{uid}.npy", pcm)
    m64 = mel.astype(np.float64)
    return {
        "id": uid, "ok": True, "n_frames": int(mel.shape[0]), "n_samples": int(wav.size),
        "sum": m64.sum(axis=0).tolist(), "sumsq": (m64 * m64).sum(axis=0).tolist(),
    }


# ----------------------------------------------------------------------------- helpers


def assign_splits(ids: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Map every id to train/val/test. Deterministic: by hash rank, or from ID-list files."""
    if cfg.method == "lists":
        mapping: dict[str, str] = {}
        for split in SPLITS:
            path = getattr(cfg, f"{split}_list")
            if path is None:
                continue
            p = Path(path).expanduser()
            if not p.is_file():
                raise ConfigError(f"data.split.{split}_list: {p}: no such file")
            for line in p.read_text().split():
                mapping.setdefault(line.strip(), split)
        return {i: mapping[i] for i in ids if i in mapping}
    if cfg.method != "hash":
        raise ConfigError(f"data.split.method={cfg.method!r}: choose hash or lists")
    if cfg.val_size < 0 or cfg.test_size < 0:
        raise ConfigError("data.split.val_size and test_size must be >= 0")
    if cfg.val_size + cfg.test_size >= len(ids):
        raise ConfigError(
            f"data.split sizes (val {cfg.val_size} + test {cfg.test_size}) leave no training data "
            f"from {len(ids)} utterances; set data.split.val_size / data.split.test_size"
        )
    # Rank by a hash of the id alone, so an id's split never depends on file order.
    ranked = sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
    out = {i: "test" for i in ranked[: cfg.test_size]}
    out.update({i: "val" for i in ranked[cfg.test_size : cfg.test_size + cfg.val_size]})
    out.update({i: "train" for i in ranked[cfg.test_size + cfg.val_size :]})
    return out


def _read_journal(out: Path) -> dict[str, dict[str, Any]]:
    """Finished items from earlier runs; a torn last line (crash mid-write) is ignored."""
    done: dict[str, dict[str, Any]] = {}
    path = out / JOURNAL
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
    old_path = out / "config.yaml"
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


def _resolve_root(cfg: PrepareConfig) -> Path:
    if cfg.data.root is None and not cfg.data.download:
        raise ConfigError("data.root is not set (the LJSpeech-1.1 folder), or pass data.download=true")
    if cfg.data.download and (cfg.data.root is None or not Path(cfg.data.root).exists()):
        return download_ljspeech(cfg.data.url, cfg.data.sha256, Path(cfg.data.download_dir).expanduser())
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such directory")
    return root


def _encode_texts(rows: list[Row], fe: TextFrontend) -> tuple[dict[str, tuple[str, list[int]]], list[Reject]]:
    encoded: dict[str, tuple[str, list[int]]] = {}
    rejects: list[Reject] = []
    for row in rows:
        try:
            normalized, _, ids = fe.encode(row.text)
        except TextError as exc:
            rejects.append(Reject(row.id, f"metadata.csv:{row.line}: {exc}"))
            continue
        encoded[row.id] = (normalized, ids)
    return encoded, rejects


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(),
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
    items = [(r.id, str(r.wav)) for r in todo]
    init_args = (cfg.audio, str(out), cfg.save_audio)
    t0, audio_s = time.perf_counter(), 0.0
    with _progress() as bar, open(out / JOURNAL, "a+", encoding="utf-8") as journal:
        _end_line(journal)
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


def _end_line(journal: Any) -> None:
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
                   done: dict[str, dict[str, Any]], cfg: PrepareConfig, fe: TextFrontend) -> None:
    atomic_write_text(out / "manifest.jsonl", "".join(utterance_record(u) + "\n" for u in kept))
    atomic_write_text(out / "rejects.tsv", "id\treason\n" + "".join(
        f"{r.id}\t{r.reason}\n" for r in rejects))
    if kept:
        stats = _mel_stats(kept, done, cfg.audio.n_mels)
        atomic_write_text(out / "stats.json", json.dumps(stats, indent=1))
    atomic_write_text(out / "symbols.json", json.dumps(
        {"symbol_set": cfg.text.symbol_set, "symbols": fe.symbols.to_list()}, indent=1))


def run(cfg: PrepareConfig, console: Console | None = None) -> Summary:
    """Prepare the store described by ``cfg``; returns a summary (also printed)."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    root = _resolve_root(cfg)
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    for sub in ("mels", "audio") if cfg.save_audio else ("mels",):
        (out / sub).mkdir(exist_ok=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    rows, rejects = read_metadata(root, cfg.data.metadata)
    splits = assign_splits([r.id for r in rows], cfg.data.split)
    for r in rows:
        if r.id not in splits:
            rejects.append(Reject(r.id, f"metadata.csv:{r.line}: id is in none of the split lists"))
    rows = [r for r in rows if r.id in splits]

    fe = TextFrontend(cfg.text)
    done = _read_journal(out)
    todo = [r for r in rows if not _is_done(out, done.get(r.id), cfg.save_audio)]
    skipped = len(rows) - len(todo)
    # Text is encoded while the workers process audio; rows whose text fails are left out of
    # the manifest (their features stay on disk and are reused if the text is fixed).
    encode = partial(_encode_texts, rows, fe)
    encoded, text_rejects = _run_audio(todo, cfg, out, done, encode) if todo else encode()
    rejects += text_rejects

    kept: list[Utterance] = []
    for r in rows:
        if r.id not in encoded:
            continue
        rec = done[r.id]
        if not rec["ok"]:
            rejects.append(Reject(r.id, rec["reason"]))
            continue
        normalized, ids = encoded[r.id]
        kept.append(Utterance(r.id, splits[r.id], r.text, normalized, ids,
                              rec["n_frames"], rec["n_samples"]))
    _write_outputs(out, kept, rejects, done, cfg, fe)
    audio_s = sum(u.n_samples for u in kept) / cfg.audio.sample_rate
    summary = Summary(len(kept), len(rejects), skipped, audio_s, time.perf_counter() - t0, out)
    _print_summary(console, summary, kept, rejects)
    if not kept:
        raise PrepareError(f"no usable utterances in {root}; see {out / 'rejects.tsv'}")
    if cfg.strict and rejects:
        raise PrepareError(f"strict=true and {len(rejects)} utterance(s) were rejected; see {out / 'rejects.tsv'}")
    return summary


def _is_done(out: Path, rec: dict[str, Any] | None, save_audio: bool) -> bool:
    if rec is None or not rec["ok"]:
        return False
    if not (out / "mels" / f"{rec['id']}.npy").exists():
        return False
    return not save_audio or (out / "audio" / f"{rec['id']}.npy").exists()


def _print_summary(console: Console, s: Summary, kept: list[Utterance], rejects: list[Reject]) -> None:
    counts = {k: sum(u.split == k for u in kept) for k in SPLITS}
    console.print(
        f"[bold green]prepared[/] {s.kept} utterances ({s.audio_seconds / 3600:.2f} h; "
        f"train {counts['train']}, val {counts['val']}, test {counts['test']}) into {s.out} "
        f"in {s.wall_seconds:.1f} s; {s.skipped} already done, {s.rejected} rejected"
    )
    for r in rejects[:10]:
        console.print(f"  [yellow]rejected[/] {r.id or '?'}: {r.reason}")
    if len(rejects) > 10:
        console.print(f"  ... and {len(rejects) - 10} more in {s.out / 'rejects.tsv'}")
