"""Corpus readers: every layout neurotts reads, chosen by ``data.format`` (see :func:`read_corpus`).

==========  ==================================================================================
ljspeech    ``metadata.csv``: ``ID|raw|normalized`` or ``ID|text``; audio ``wavs/ID.wav``
piper       ``metadata.csv``: ``ID|text`` or ``ID|speaker|text``; audio in ``wav/`` or ``wavs/``
coqui       ``metadata.csv`` with the header ``audio_file|text|speaker_name|emotion_name``
manifest    a CSV, TSV or JSONL table with audio-path and text columns (speaker optional)
folder      clips (wav, flac, ogg, mp3) with a same-named ``.txt`` or ``.lab``, recursively
auto        the one the content shows (the default); the corpus's ``reading`` says which
==========  ==================================================================================
"""

from __future__ import annotations

from pathlib import Path

from neurotts.data.formats.folder import audio_files, read_folder
from neurotts.data.formats.manifest import looks_like_manifest, read_manifest
from neurotts.data.formats.rows import (
    AUDIO_SUFFIXES,
    FORMATS,
    Corpus,
    DatasetError,
    Reject,
    Row,
    text_lines,
)
from neurotts.data.formats.tables import (
    is_coqui_header,
    read_coqui,
    read_pipe_table,
    split_rows,
    three_columns,
)

__all__ = ["AUDIO_SUFFIXES", "FORMATS", "Corpus", "DatasetError", "Reject", "Row", "read_corpus"]

_TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")


def read_corpus(root: Path, fmt: str = "auto", metadata: str = "metadata.csv") -> Corpus:
    """Read the corpus in ``root``; ``metadata`` names its table (relative to ``root``) for
    every format but ``folder``. :class:`DatasetError` for what cannot be read at all."""
    if fmt not in FORMATS:
        raise DatasetError(f"data.format={fmt!r} is not a format; expected one of {', '.join(FORMATS)}")
    if fmt == "folder":
        return _note(read_folder(root), "read as a folder of clips with same-named transcripts")
    table = root / metadata
    if fmt == "auto":
        return _detect(root, table)
    if not table.is_file():
        raise DatasetError(f"{table}: no such file (data.format={fmt} reads its rows from "
                           "data.metadata)")
    if fmt == "coqui":
        return _note(read_coqui(table), "read as Coqui (header audio_file|text|...)")
    if fmt == "manifest":
        return _note(read_manifest(table), "read as a manifest (audio and text columns by name)")
    speakers = fmt == "piper" and _field_count(table) == 3
    return _note(read_pipe_table(table, fmt, speakers), _pipe_reading(fmt, speakers, "as asked"))


def _detect(root: Path, table: Path) -> Corpus:
    if not table.is_file():
        tables = sorted(p for p in root.iterdir() if p.suffix.lower() in _TABLE_SUFFIXES[:4]
                        and p.is_file()) if root.is_dir() else []
        if len(tables) > 1:
            names = ", ".join(p.name for p in tables)
            raise DatasetError(f"{root}: no {table.name}, and several tables ({names}): "
                               "name one with data.metadata=FILE")
        if tables:
            table = tables[0]
        elif audio_files(root):
            return _note(read_folder(root), "read as a folder of clips with same-named transcripts "
                                            f"(no {table.name})")
        else:
            raise DatasetError(f"{root}: no corpus here: no {table.name}, no .csv/.tsv/.jsonl table "
                               f"and no audio files ({', '.join(AUDIO_SUFFIXES)})")
    lines = [line.text for line in text_lines(table) if line.text is None or line.text.strip()]
    if not lines:
        raise DatasetError(f"{table}: empty file")
    first = lines[0] or ""  # a first line that is not UTF-8 is no header; its row is a reject
    if is_coqui_header(first):
        return _note(read_coqui(table), "read as Coqui (its header is audio_file|text|...)")
    if looks_like_manifest(table, first):
        return _note(read_manifest(table), "read as a manifest (its header names audio and text columns)")
    return _detect_pipe(table)


def _detect_pipe(table: Path) -> Corpus:
    rows, _ = split_rows(table)
    counts = [len(f) for _, f in rows]
    three = sum(n == 3 for n in counts)
    if three <= len(counts) / 2:  # mostly ID|text: LJSpeech's two-column form, Piper's single-speaker one
        return _note(read_pipe_table(table, "ljspeech", False), _pipe_reading("ljspeech", False, "2 columns"))
    fmt = three_columns(rows)
    if fmt is None:
        raise DatasetError(f"{table}: cannot tell whether its 3 columns are LJSpeech (ID|text|normalized) "
                           "or Piper (ID|speaker|text): set data.format=ljspeech or data.format=piper")
    why = ("column 3 restates column 2" if fmt == "ljspeech" else "column 2 holds short speaker labels")
    return _note(read_pipe_table(table, fmt, fmt == "piper"), _pipe_reading(fmt, fmt == "piper", why))


def _field_count(table: Path) -> int:
    rows, _ = split_rows(table)
    counts = [len(f) for _, f in rows]
    return max(set(counts), key=counts.count) if counts else 0


def _pipe_reading(fmt: str, speakers: bool, why: str) -> str:
    if why == "2 columns":  # the one two-column layout LJSpeech and Piper share
        return "read as ID|text (LJSpeech's and Piper's single-speaker layout): 2 columns"
    layout = {("ljspeech", False): "LJSpeech (ID|text|normalized)",
              ("piper", True): "Piper (ID|speaker|text)", ("piper", False): "Piper (ID|text)"}[fmt, speakers]
    return f"read as {layout}: {why}"


def _note(corpus: Corpus, reading: str) -> Corpus:
    corpus.reading = reading
    return corpus
