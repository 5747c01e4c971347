"""Manifests: a CSV, TSV or JSONL table naming each clip's audio file and its text.

CSV and TSV need a header line; JSONL has one object a line. The columns are found by name
(case ignored): audio from :data:`AUDIO_COLUMNS`, text from :data:`TEXT_COLUMNS`, and optional
speaker and id columns. Audio paths are relative to the manifest's folder (or absolute).
Rows are one line each: a quoted field that spans lines is not read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from neurotts.data.formats.rows import (
    Corpus,
    DatasetError,
    Reject,
    Row,
    bad_id,
    keep_unique,
    path_ids,
    text_lines,
)

AUDIO_COLUMNS = ("audio", "audio_path", "audio_file", "audio_filepath", "path", "file", "wav",
                 "filename")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "speaker_name")
ID_COLUMNS = ("id", "utt_id", "utterance_id")


def delimiter(path: Path, header: str) -> str | None:
    """The field separator of a table manifest: by suffix, else what its header uses."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    for sep in ("\t", "|", ","):
        if sep in header:
            return sep
    return None


def columns(names: list[str], where: str) -> dict[str, str | None]:
    """The actual column name for each role; :class:`DatasetError` when audio or text lacks."""
    lowered = {n.strip().lower(): n for n in names}

    def pick(options: tuple[str, ...]) -> str | None:
        return next((lowered[o] for o in options if o in lowered), None)

    found = {"audio": pick(AUDIO_COLUMNS), "text": pick(TEXT_COLUMNS),
             "speaker": pick(SPEAKER_COLUMNS), "id": pick(ID_COLUMNS)}
    for role, options in (("audio", AUDIO_COLUMNS), ("text", TEXT_COLUMNS)):
        if found[role] is None:
            raise DatasetError(f"{where}: no {role} column (looked for {', '.join(options)}; "
                               f"found {', '.join(names) or 'none'})")
    return found


def looks_like_manifest(path: Path, first_line: str) -> bool:
    """True when ``first_line`` is a JSON object or a header naming audio and text columns."""
    if first_line.lstrip().startswith("{"):
        return True
    sep = delimiter(path, first_line)
    names = [n.strip().lower() for n in first_line.split(sep)] if sep else [first_line.lower()]
    return any(n in AUDIO_COLUMNS for n in names) and any(n in TEXT_COLUMNS for n in names)


def read_manifest(path: Path) -> Corpus:
    """Rows of a CSV/TSV/JSONL manifest (see the module docstring)."""
    lines = [(ln.no, ln.text, ln.error) for ln in text_lines(path) if ln.text is None or ln.text.strip()]
    if not lines:
        raise DatasetError(f"{path}: empty manifest")
    is_json = path.suffix.lower() in (".jsonl", ".json") or (lines[0][1] or "").lstrip().startswith("{")
    rejects: list[Reject] = []
    records = _json_records(path, lines, rejects) if is_json else _table_records(path, lines, rejects)
    if not records:
        return Corpus("manifest", path, [], rejects)
    role = columns(list(records[0][1]), f"{path.name}:{records[0][0]}")
    pending = []
    for lineno, rec in records:
        where = f"{path.name}:{lineno}"
        audio, text = str(rec.get(role["audio"]) or "").strip(), str(rec.get(role["text"]) or "").strip()
        speaker = str(rec.get(role["speaker"]) or "").strip() if role["speaker"] else ""
        given = str(rec.get(role["id"]) or "").strip() if role["id"] else ""
        if not audio:
            rejects.append(Reject(given, f"{where}: no audio path"))
        elif not text:
            rejects.append(Reject(given or Path(audio).stem, f"{where}: empty transcript"))
        elif role["id"] and bad_id(given):
            rejects.append(Reject(given, f"{where}: invalid id {given!r}"))
        else:
            pending.append((where, _resolve(path.parent, audio), text, speaker or None, given))
    ids = [p[4] for p in pending] if role["id"] else path_ids([p[1] for p in pending], path.parent)
    rows = [Row(rid, text, audio, where, speaker)
            for rid, (where, audio, text, speaker, _) in zip(ids, pending, strict=True)]
    return Corpus("manifest", path, keep_unique(rows, rejects), rejects)


def _resolve(folder: Path, audio: str) -> Path:
    p = Path(audio).expanduser()
    return p if p.is_absolute() else folder / p


def _json_records(path: Path, lines: list[tuple[int, str | None, str]],
                  rejects: list[Reject]) -> list[tuple[int, dict[str, object]]]:
    records = []
    for lineno, line, reason in lines:
        where = f"{path.name}:{lineno}"
        if line is None:
            rejects.append(Reject("", f"{where}: {reason}"))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.append(Reject("", f"{where}: not a JSON object ({exc.msg})"))
            continue
        if not isinstance(rec, dict):
            rejects.append(Reject("", f"{where}: not a JSON object"))
            continue
        records.append((lineno, {str(k): v for k, v in rec.items()}))
    return records


def _table_records(path: Path, lines: list[tuple[int, str | None, str]],
                   rejects: list[Reject]) -> list[tuple[int, dict[str, object]]]:
    head_no, header, reason = lines[0]
    if header is None:
        raise DatasetError(f"{path.name}:{head_no}: header {reason}")
    sep = delimiter(path, header)
    if sep is None:
        raise DatasetError(f"{path.name}:{head_no}: no header with tab, '|' or ',' separated "
                           "column names")
    names = [n.strip() for n in next(csv.reader([header], delimiter=sep))]
    columns(names, f"{path.name}:{head_no}")  # a header without audio or text: say so here
    records = []
    for lineno, line, why in lines[1:]:
        where = f"{path.name}:{lineno}"
        if line is None:
            rejects.append(Reject("", f"{where}: {why}"))
            continue
        fields = next(csv.reader([line], delimiter=sep))
        if len(fields) != len(names):
            rejects.append(Reject("", f"{where}: {len(fields)} fields, the header has {len(names)}"))
            continue
        records.append((lineno, dict(zip(names, fields, strict=True))))
    return records
