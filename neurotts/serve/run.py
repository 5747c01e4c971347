"""``neurotts serve``: load the voice, bind the socket, run uvicorn until SIGTERM or Ctrl-C.

uvicorn (over Starlette) handles the signals: on SIGTERM it stops accepting connections, lets
the requests in flight finish (at most ``limits.shutdown_grace_s``), then the app's lifespan
stops the engine and :func:`run` returns.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType

import torch
import uvicorn
from rich.console import Console

from neurotts.errors import UserError
from neurotts.serve.app import Server, build_app
from neurotts.serve.config import ServeConfig
from neurotts.serve.voice import load_voice, seed_rng


class ServeError(UserError, OSError):
    """The server cannot start (the address is taken or cannot be bound)."""


class ServeStopped(UserError):
    """The server was stopped by a signal after the requests in flight were answered (the CLI
    exits 128 + signal, printing this as a plain line: a requested stop is not an error)."""

    label = None

    def __init__(self, signal_number: int, served: int):
        self.exit_code = 128 + signal_number
        super().__init__(f"stopped by {signal.Signals(signal_number).name} after answering "
                         f"every request in flight ({served} speech requests answered)")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: not an address this machine can use ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(cfg: ServeConfig, console: Console) -> None:
    if cfg.stream.crossfade_frames > cfg.stream.context_frames:
        raise ServeError(f"stream.crossfade_frames={cfg.stream.crossfade_frames}: at most "
                         f"stream.context_frames ({cfg.stream.context_frames})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    voice = load_voice(cfg.voice, cfg.acoustic, cfg.vocoder, cfg.device,
                       cfg.stream.griffin_lim_iters)
    seed_rng(cfg.seed)
    sock = bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    voices = (f"voices {', '.join(voice.speakers)} (default {voice.speakers[0]})"
              if voice.speakers else f"voice {cfg.voice!r}")
    console.print(f"serving {voices} ({voice.acoustic.path}, vocoder "
                  f"{cfg.vocoder.path}) on http://{shown}:{port}/", markup=False,
                  highlight=False, soft_wrap=True)
    server = Server(cfg, voice)
    config = uvicorn.Config(build_app(server), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=cfg.limits.shutdown_grace_s or None,
                            lifespan="on")

    def stopped(signal_number: int, frame: FrameType | None) -> None:
        raise ServeStopped(signal_number, server.metrics.answered())

    # uvicorn takes SIGINT and SIGTERM while it runs, drains, restores these handlers and
    # raises the signal again: the stop then leaves run() as a ServeStopped.
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
