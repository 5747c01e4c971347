"""LJSpeech-1.1: downloading, verifying and extracting it (``neurotts download``).

Reading a corpus, in this layout or any other, is :mod:`neurotts.data.formats`'s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from neurotts.data.config import PrepareConfig
from neurotts.data.formats import DatasetError

# ----------------------------------------------------------------------------- download


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest``, resuming from ``dest``'s current size with an HTTP Range."""
    have = dest.stat().st_size if dest.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the partial file is already whole
            return
        raise DatasetError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(f"download of {url} failed: {exc}") from None
    with resp:
        if have and resp.status != 206:  # server ignored the Range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        columns = (
            TextColumn("download", style="bold"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
        )
        with Progress(*columns) as bar, open(dest, "ab" if have else "wb") as out:
            task = bar.add_task("download", total=total, completed=have)
            while block := resp.read(1 << 20):
                out.write(block)
                bar.advance(task, len(block))


def _safe_members(tar: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """Refuse archives whose members would land outside ``target`` or are not plain files/dirs."""
    target = target.resolve()
    members = tar.getmembers()
    for m in members:
        dest = (target / m.name).resolve()
        if os.path.isabs(m.name) or (dest != target and target not in dest.parents):
            raise DatasetError(f"unsafe archive member {m.name!r}: it would be written outside {target}")
        if not (m.isfile() or m.isdir()):
            raise DatasetError(f"unsafe archive member {m.name!r}: links and devices are not extracted")
    return members


def extract_archive(archive: Path, target: Path) -> None:
    """Extract a tar archive into ``target`` via a temporary folder, so a crash leaves no half tree."""
    tmp = target / ".extract.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            members = _safe_members(tar, tmp)
            tar.extractall(tmp, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{archive}: cannot extract ({exc})") from None
    except DatasetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for child in tmp.iterdir():
        dest = target / child.name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        child.replace(dest)
    tmp.rmdir()


def download_ljspeech(url: str, sha256: str, download_dir: Path) -> Path:
    """Fetch, verify and extract LJSpeech-1.1 into ``download_dir``; return the corpus folder.

    Resumes a partial download (``*.part``), checks the SHA-256 before extracting, and skips
    everything already done.
    """
    download_dir.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "LJSpeech-1.1.tar.bz2"
    archive = download_dir / name
    corpus = download_dir / "LJSpeech-1.1"
    if (corpus / "metadata.csv").is_file() and (corpus / "wavs").is_dir():
        return corpus
    if not archive.exists():
        part = archive.with_name(archive.name + ".part")
        _fetch(url, part)
        digest = sha256_of(part)
        if digest != sha256.lower():
            raise DatasetError(
                f"{part}: checksum mismatch (sha256 {digest}, expected {sha256}); "
                "delete it to download again"
            )
        part.replace(archive)
    extract_archive(archive, download_dir)
    if not (corpus / "metadata.csv").is_file():
        raise DatasetError(f"{archive}: archive did not contain LJSpeech-1.1/metadata.csv")
    return corpus


def run(cfg: PrepareConfig, console: Console) -> Path:
    """``neurotts download``: LJSpeech-1.1 into ``data.download_dir`` (the prepare config's
    data section says where from and its checksum); returns the corpus folder."""
    root = download_ljspeech(cfg.data.url, cfg.data.sha256, Path(cfg.data.download_dir).expanduser())
    console.print(f"LJSpeech is in {root}")
    return root
