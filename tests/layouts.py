"""Re-lay an LJSpeech-layout corpus in each other format (audio linked, not copied)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def lj_rows(root: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """``(id, raw text)`` of the first ``limit`` rows of ``root/metadata.csv``."""
    lines = (root / "metadata.csv").read_text(encoding="utf-8").splitlines()[:limit]
    return [(f[0], f[1]) for f in (ln.split("|") for ln in lines)]


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src.resolve(), dest)


def relay(src: Path, out: Path, fmt: str, limit: int | None = None, speaker: str = "lj") -> Path:
    """Write ``src``'s first ``limit`` rows as ``fmt`` into ``out``; returns ``out``."""
    rows = lj_rows(src, limit)
    out.mkdir(parents=True, exist_ok=True)
    wav = {rid: src / "wavs" / f"{rid}.wav" for rid, _ in rows}
    if fmt == "ljspeech":
        for rid, _ in rows:
            _link(wav[rid], out / "wavs" / f"{rid}.wav")
        (out / "metadata.csv").write_text("".join(f"{r}|{t}|{t}\n" for r, t in rows), encoding="utf-8")
    elif fmt == "piper":
        for rid, _ in rows:
            _link(wav[rid], out / "wav" / f"{rid}.wav")
        (out / "metadata.csv").write_text("".join(f"{r}|{speaker}|{t}\n" for r, t in rows), encoding="utf-8")
    elif fmt == "coqui":
        for rid, _ in rows:
            _link(wav[rid], out / "wavs" / f"{rid}.wav")
        (out / "metadata.csv").write_text("audio_file|text|speaker_name|emotion_name\n" + "".join(
            f"wavs/{r}.wav|{t}|{speaker}|neutral\n" for r, t in rows), encoding="utf-8")
    elif fmt == "manifest":
        (out / "metadata.csv").unlink(missing_ok=True)
        (out / "clips.jsonl").write_text("".join(json.dumps(
            {"audio": str(wav[r].resolve()), "text": t, "speaker": speaker}) + "\n" for r, t in rows),
            encoding="utf-8")
    elif fmt == "folder":
        for rid, text in rows:
            _link(wav[rid], out / speaker / f"{rid}.wav")
            (out / speaker / f"{rid}.txt").write_text(text + "\n", encoding="utf-8")
    else:
        raise ValueError(fmt)
    return out
