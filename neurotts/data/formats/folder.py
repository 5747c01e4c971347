"""Folders of clips with a same-named transcript beside each (``a.wav`` + ``a.txt`` or ``a.lab``),
searched recursively. The transcript file's lines are joined by spaces."""

from __future__ import annotations

from pathlib import Path

from neurotts.data.formats.rows import (
    AUDIO_SUFFIXES,
    Corpus,
    DatasetError,
    Reject,
    Row,
    keep_unique,
    path_ids,
    text_lines,
)

TRANSCRIPT_SUFFIXES = (".txt", ".lab")


def audio_files(root: Path) -> list[Path]:
    """Every clip under ``root`` (any depth, suffix case ignored), in path order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_folder(root: Path) -> Corpus:
    """Rows for the clips under ``root`` that have a transcript; a clip without one is a reject,
    and a folder where no clip has one is a :class:`DatasetError` (nothing to pair)."""
    clips = audio_files(root)
    if not clips:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it or below it")
    ids = path_ids(clips, root)
    rows, rejects, paired = [], [], 0
    for rid, clip in zip(ids, clips, strict=True):
        rel = clip.relative_to(root).as_posix()
        transcript = next((clip.with_suffix(s) for s in TRANSCRIPT_SUFFIXES
                           if clip.with_suffix(s).is_file()), None)
        if transcript is None:
            rejects.append(Reject(rid, f"{rel}: no transcript ({clip.stem}.txt or {clip.stem}.lab)"))
            continue
        paired += 1
        where = f"{transcript.relative_to(root).as_posix()}:1"
        text, reason = _read_transcript(transcript)
        if reason:
            rejects.append(Reject(rid, f"{where}: {reason}"))
        else:
            rows.append(Row(rid, text, clip, where))
    if not paired:
        raise DatasetError(f"{root}: {len(clips)} audio file(s) but no transcript beside any "
                           "(expected a same-named .txt or .lab, e.g. "
                           f"{clips[0].relative_to(root).with_suffix('.txt').as_posix()})")
    return Corpus("folder", root, keep_unique(rows, rejects), rejects)


def _read_transcript(path: Path) -> tuple[str, str]:
    """(text, "") or ("", reason)."""
    parts = []
    for line in text_lines(path):
        if line.text is None:
            return "", line.error if line.no == 1 else f"line {line.no}: {line.error}"
        parts.append(line.text.strip())
    text = " ".join(p for p in parts if p)
    return (text, "") if text else ("", "empty transcript")
