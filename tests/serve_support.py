"""Helpers of the serve tests: an untrained voice, servers in a thread or a process, and an
HTTP client that sees when each piece of a streamed answer arrives."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvicorn

from neurotts.config import load_config
from neurotts.serve.app import Server, build_app
from neurotts.serve.config import ServeConfig
from neurotts.serve.run import bind
from neurotts.serve.voice import load_voice, untrained_checkpoint

# A ~0.15M-parameter Tacotron 2 that never fires its stop token (threshold near 1), so every
# sentence runs to the length guard: 2.5 frames per symbol plus 8.
TINY = ["encoder.embedding_dim=32", "encoder.conv_channels=32", "encoder.lstm_dim=32",
        "decoder.prenet_dims=[32,32]", "decoder.attention_rnn_dim=64",
        "decoder.decoder_rnn_dim=64", "attention.dim=32", "attention.location.n_filters=8",
        "postnet.channels=32", "postnet.layers=3", "inference.stop_threshold=0.999",
        "inference.max_frames_per_symbol=2.5", "inference.max_frames_offset=8"]


def tiny_checkpoint(folder: Path, extra: tuple[str, ...] = ()) -> Path:
    path = folder / "tiny.pt"
    untrained_checkpoint(path, [*TINY, *extra])
    return path


def serve_config(checkpoint: Path, *overrides: str) -> ServeConfig:
    return load_config("serve", ServeConfig, [f"acoustic={checkpoint}", "device=cpu", "port=0",
                                              *overrides])


class ThreadServer:
    """``neurotts serve``'s app under uvicorn in a thread of this process."""

    def __init__(self, cfg: ServeConfig):
        voice = load_voice(cfg.voice, cfg.acoustic, cfg.vocoder, cfg.device,
                           cfg.stream.griffin_lim_iters)
        self.server = Server(cfg, voice)
        sock = bind(cfg.host, 0)
        self.port = sock.getsockname()[1]
        self.uvicorn = uvicorn.Server(uvicorn.Config(build_app(self.server), log_level="warning",
                                                     lifespan="on"))
        self.thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(30)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes so far)

    def json(self) -> dict:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: object = None, raw: bytes | None = None,
            timeout: float = 120) -> Answer:
    """One request; records when each piece of the body arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    t0 = time.perf_counter()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    parts, arrivals, size = [], [], 0
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
        arrivals.append((time.perf_counter() - t0, size))
    conn.close()
    return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(parts),
                  arrivals)


def wav_samples(body: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, int16 samples) of a streamed WAV (44-byte header, sizes unknown)."""
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt " and body[36:40] == b"data"
    rate = int.from_bytes(body[24:28], "little")
    return rate, np.frombuffer(body[44:], dtype="<i2")


def start_process(checkpoint: Path, *overrides: str) -> tuple[subprocess.Popen, int]:
    """``neurotts serve`` as a process on a free port; returns it and the port."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurotts.cli", "serve", "-a", str(checkpoint), "--port", "0",
         "device=cpu", "threads=1", *overrides],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the "serving ... on http://host:port/" line
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert found, f"no address in {line!r} (exit {proc.poll()})"
    return proc, int(found[1])
