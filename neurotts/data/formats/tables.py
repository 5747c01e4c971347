"""Pipe-separated tables: LJSpeech, Piper and Coqui layouts.

- LJSpeech: ``metadata.csv`` rows ``ID|raw|normalized`` (or ``ID|text``), audio ``wavs/ID.wav``
  (or ``wav/``).
- Piper: ``metadata.csv`` rows ``ID|text`` (one speaker) or ``ID|speaker|text``, audio in
  ``wav/`` or ``wavs/``; an ID may carry its file's suffix ("utt1.wav").
- Coqui: a header ``audio_file|text|speaker_name|emotion_name`` (the last two optional), audio
  paths relative to the corpus folder.

A three-column file without a header is either LJSpeech or Piper; :func:`three_columns` reads
the content to tell which (LJSpeech's third column restates the second; Piper's second is a
short speaker label).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from neurotts.data.formats.rows import (
    Corpus,
    DatasetError,
    Reject,
    Row,
    bad_id,
    find_audio,
    keep_unique,
    path_ids,
    text_lines,
)

COQUI_HEADER = ("audio_file", "text")
VOTERS = 400  # the columns a Coqui header must start with
# Where each layout keeps its clips, first choice first; both look in both, since a
# two-column table is read the same way whichever tool wrote it.
_AUDIO_FOLDERS = {"ljspeech": ("wavs", "wav"), "piper": ("wav", "wavs")}


def split_rows(path: Path) -> tuple[list[tuple[int, list[str]]], list[Reject]]:
    """Non-blank lines of a ``|`` table as ``(line, fields)``; lines not UTF-8 as rejects."""
    rows, rejects = [], []
    for line in text_lines(path):
        if line.text is None:
            rid = line.lossy.split("|", 1)[0].strip()
            rejects.append(Reject(rid, f"{path.name}:{line.no}: {line.error}"))
        elif line.text.strip():
            rows.append((line.no, line.text.split("|")))
    return rows, rejects


def read_pipe_table(path: Path, fmt: str, speaker_column: bool) -> Corpus:
    """LJSpeech or Piper rows of ``path``; ``speaker_column``: Piper's ``ID|speaker|text``."""
    root = path.parent
    table, rejects = split_rows(path)
    rows = []
    expected = "3, ID|speaker|text" if speaker_column else (
        "3, ID|raw|normalized, or 2, ID|text" if fmt == "ljspeech" else "2, ID|text")
    allowed = (3,) if speaker_column else ((2, 3) if fmt == "ljspeech" else (2,))
    for lineno, fields in table:
        where = f"{path.name}:{lineno}"
        name = fields[0].strip()
        if len(fields) not in allowed:
            kind = "few" if len(fields) < min(allowed) else "many"
            rejects.append(Reject(name, f"{where}: too {kind} fields ({len(fields)}; expected {expected})"))
            continue
        rid = Path(name).stem if Path(name).suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else name
        if bad_id(rid):
            rejects.append(Reject(rid, f"{where}: invalid id {rid!r}"))
            continue
        text = fields[2 if speaker_column else 1].strip()
        speaker = fields[1].strip() if speaker_column else None
        if speaker_column and not speaker:
            rejects.append(Reject(rid, f"{where}: empty speaker label"))
            continue
        if not text:
            rejects.append(Reject(rid, f"{where}: empty transcript"))
            continue
        audio = find_audio(root, name, _AUDIO_FOLDERS[fmt])
        rows.append(Row(rid, text, audio, where, speaker))
    return Corpus(fmt, path, keep_unique(rows, rejects), rejects)


def three_columns(table: list[tuple[int, list[str]]]) -> str | None:
    """"ljspeech", "piper" or None (cannot tell) for a headerless table of 3-field rows.

    A row votes LJSpeech when its third field resembles its second (a normalised restatement;
    LJSpeech rows differ only where numbers or abbreviations were expanded), Piper when its
    second field is a short label without spaces that does not resemble the third; other rows
    do not vote. One reading must have nine votes in ten. At most ``VOTERS`` rows, spread over
    the file, vote (LJSpeech has 13,100).
    """
    votes = {"ljspeech": 0, "piper": 0}
    rows = [fields for _, fields in table if len(fields) == 3]
    for fields in rows[:: max(1, len(rows) // VOTERS)]:
        second, third = fields[1].strip(), fields[2].strip()
        if _overlap(second.lower(), third.lower()) >= 0.6:
            votes["ljspeech"] += 1
        elif second and len(second) <= 40 and " " not in second:
            votes["piper"] += 1
    cast = sum(votes.values())
    for fmt, n in votes.items():
        if cast and n >= 0.9 * cast:
            return fmt
    return None


def _overlap(a: str, b: str) -> float:
    """Shared characters (as multisets) over the two lengths: 1 for anagrams, 0 for strangers.
    Enough to tell a restatement from a label, in one pass over each."""
    if not a and not b:
        return 1.0
    return 2 * sum((Counter(a) & Counter(b)).values()) / (len(a) + len(b))


def read_coqui(path: Path) -> Corpus:
    """Rows of a Coqui ``metadata.csv`` (see the module docstring)."""
    root = path.parent
    lines = list(text_lines(path))
    if not lines or lines[0].text is None or not is_coqui_header(lines[0].text):
        raise DatasetError(f"{path}: no Coqui header (expected audio_file|text|speaker_name|emotion_name)")
    header = [h.strip() for h in lines[0].text.split("|")]
    col = {name: k for k, name in enumerate(header)}
    pending: list[tuple[str, Path, str, str | None]] = []
    rejects = []
    for lineno, line, reason, lossy in lines[1:]:
        where = f"{path.name}:{lineno}"
        if line is None:
            rejects.append(Reject(Path(lossy.split("|", 1)[0]).stem, f"{where}: {reason}"))
            continue
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != len(header):
            rejects.append(Reject(fields[0], f"{where}: {len(fields)} fields, the header has {len(header)}"))
            continue
        audio_name, text = fields[col["audio_file"]], fields[col["text"]]
        speaker = fields[col["speaker_name"]] if "speaker_name" in col else None
        if not audio_name:
            rejects.append(Reject("", f"{where}: empty audio_file"))
        elif not text:
            rejects.append(Reject(Path(audio_name).stem, f"{where}: empty transcript"))
        else:
            pending.append((where, root / audio_name, text, speaker or None))
    ids = path_ids([p for _, p, _, _ in pending], root)
    rows = [Row(rid, text, audio, where, speaker)
            for rid, (where, audio, text, speaker) in zip(ids, pending, strict=True)]
    return Corpus("coqui", path, keep_unique(rows, rejects), rejects)


def is_coqui_header(line: str) -> bool:
    fields = tuple(f.strip().lower() for f in line.split("|"))
    return fields[:2] == COQUI_HEADER
