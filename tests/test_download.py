"""``data.download=true`` against a local HTTP server on 127.0.0.1 serving an archive built here."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neurotts.config import load_config
from neurotts.data import prepare
from neurotts.data.config import PrepareConfig
from neurotts.data.ljspeech import DatasetError, download_ljspeech


class ArchiveServer:
    """Serves one byte string at /LJSpeech-1.1.tar.bz2, honouring Range requests, and counts
    the bytes it sent (so a test can see that a resume fetched only the rest)."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.sent = 0
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(server.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                server.sent += len(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/LJSpeech-1.1.tar.bz2"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def build_archive(corpus: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """tar.bz2 of ``corpus`` stored as LJSpeech-1.1/..., plus optional raw members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        tar.add(corpus, arcname="LJSpeech-1.1")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archive(make_corpus) -> bytes:
    return build_archive(make_corpus({f"D{i}": f"Downloaded sentence {i}." for i in range(6)}))


@pytest.fixture
def server(archive) -> Iterator[ArchiveServer]:
    with ArchiveServer(archive) as srv:
        yield srv


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_prepare_downloads_verifies_and_extracts(server, archive, tmp_path):
    cfg = load_config("prepare", PrepareConfig, [
        "data.download=true", f"data.download_dir={tmp_path / 'dl'}", f"data.url={server.url}",
        f"data.sha256={sha(archive)}", f"out={tmp_path / 'store'}",
        "data.split.val_size=1", "data.split.test_size=1", "num_workers=1",
    ])
    summary = prepare.run(cfg)
    assert summary.kept == 6
    assert (tmp_path / "dl" / "LJSpeech-1.1" / "metadata.csv").is_file()
    # a second run finds the corpus and downloads nothing
    sent = server.sent
    prepare.run(cfg)
    assert server.sent == sent


def test_partial_download_resumes(server, archive, tmp_path):
    dl = tmp_path / "dl"
    dl.mkdir()
    half = len(archive) // 2
    (dl / "LJSpeech-1.1.tar.bz2.part").write_bytes(archive[:half])
    corpus = download_ljspeech(server.url, sha(archive), dl)
    assert (corpus / "wavs").is_dir()
    assert server.ranges == [f"bytes={half}-"]
    assert server.sent == len(archive) - half


def test_checksum_mismatch_is_refused(server, tmp_path):
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download_ljspeech(server.url, "0" * 64, tmp_path / "dl")
    assert not (tmp_path / "dl" / "LJSpeech-1.1").exists()


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/neurotts-absolute.txt"])
def test_unsafe_archive_members_are_refused(make_corpus, tmp_path, evil):
    payload = build_archive(make_corpus({"E0": "One."}), {evil: b"owned"})
    with ArchiveServer(payload) as srv, pytest.raises(DatasetError, match="unsafe archive member"):
        download_ljspeech(srv.url, sha(payload), tmp_path / "dl")
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/neurotts-absolute.txt").exists()
    assert not (tmp_path / "dl" / "LJSpeech-1.1").exists()


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="download of http://127.0.0.1:9/"):
        download_ljspeech("http://127.0.0.1:9/LJSpeech-1.1.tar.bz2", "0" * 64, tmp_path / "dl")
