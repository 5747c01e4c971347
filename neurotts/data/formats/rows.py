"""What every corpus reader yields: rows, rejects, and the helpers they share.

A :class:`Row` is one utterance whatever the layout it came from; ``where`` names the place
it was read ("metadata.csv:12", "spk1/a.txt:1") so that every later message about the row
points at the line to fix. A reader never stops at a bad row: the row becomes a
:class:`Reject` with a reason that starts with its ``where``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from neurotts.errors import UserError

# Containers libsndfile reads (soundfile >= 0.12 with libsndfile >= 1.1 has MP3).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
FORMATS = ("auto", "ljspeech", "piper", "coqui", "folder", "manifest")

__all__ = ["AUDIO_SUFFIXES", "FORMATS", "Corpus", "DatasetError", "Reject", "Row"]


class DatasetError(UserError, RuntimeError):
    """A corpus that cannot be used at all (missing folder or table, failed download, bad
    archive, a layout that cannot be told); one line."""


@dataclass(frozen=True)
class Reject:
    id: str  # may be "" when a row is too broken to have one
    reason: str  # starts with the row's "file:line" (or the clip's path)


@dataclass(frozen=True)
class Row:
    id: str  # unique in the corpus, safe as a file name (the store's mels/ID.npy)
    text: str  # the transcript as written; normalisation happens later
    audio: Path
    where: str  # "file:line" of the row, for messages
    speaker: str | None = None


@dataclass
class Corpus:
    """A corpus as read: its rows, its rejects and how it was read."""

    format: str  # the reader used ("ljspeech", "piper", ...)
    source: Path  # the table or folder the rows came from
    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    reading: str = ""  # one line: which reading of the content was used, and why

    @property
    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.rows if r.speaker is not None})


class TextLine(NamedTuple):
    no: int  # 1-based
    text: str | None  # None when the line is not UTF-8
    error: str  # why text is None ("" otherwise)
    lossy: str  # the line decoded with replacement characters, to name a broken row's id


def text_lines(path: Path) -> Iterator[TextLine]:
    """Each line of ``path`` without its line ending; a line that is not UTF-8 has no text
    and says why. A leading byte-order mark (Windows editors) is skipped."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            lossy = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                yield TextLine(lineno, raw.decode("utf-8").rstrip("\r\n"), "", lossy)
            except UnicodeDecodeError as exc:
                yield TextLine(lineno, None, f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})", lossy)


def bad_id(rid: str) -> bool:
    return not rid or "/" in rid or "\\" in rid or rid in (".", "..")


def path_ids(paths: list[Path], root: Path) -> list[str]:
    """Store ids for audio files: the file's stem where stems are unique in the corpus, else
    its path under ``root`` without suffix, "/" written "_" ("spk1/a.wav" -> "spk1_a")."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    out = []
    for p in paths:
        try:
            rel = p.relative_to(root)
        except ValueError:  # an absolute path elsewhere: its last two parts
            rel = Path(p.parent.name) / p.name
        out.append(rel.with_suffix("").as_posix().replace("/", "_"))
    return out


def keep_unique(rows: list[Row], rejects: list[Reject]) -> list[Row]:
    """Rows whose id was not seen before; each repeat becomes a reject naming the first."""
    first: dict[str, str] = {}
    kept = []
    for r in rows:
        if r.id in first:
            file, _, line = first[r.id].rpartition(":")
            at = f"line {line}" if r.where.rpartition(":")[0] == file else first[r.id]
            rejects.append(Reject(r.id, f"{r.where}: duplicate id (first at {at})"))
            continue
        first[r.id] = r.where
        kept.append(r)
    return kept


def find_audio(root: Path, name: str, folders: tuple[str, ...]) -> Path:
    """The audio file a table row names by ``name`` (an id, or a file name with its suffix)
    in the first of ``folders`` under ``root`` that has it; the ``.wav`` path when none does
    (the audio stage then reports it missing)."""
    has_suffix = Path(name).suffix.lower() in AUDIO_SUFFIXES
    candidates = [name] if has_suffix else [name + s for s in AUDIO_SUFFIXES]
    for folder in folders:
        for candidate in candidates:
            path = root / folder / candidate
            if path.is_file():
                return path
    return root / folders[0] / (name if has_suffix else name + ".wav")
