"""Schema of configs/serve.yaml (``neurotts serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.config import constrained
from neurotts.serve.stream import StreamConfig
from neurotts.serve.voice import VocoderConfig


@dataclass
class LimitsConfig:
    """What one request, and the server as a whole, may ask for."""

    max_input_chars: int = constrained(ge=1)  # longer input: 413
    request_timeout_s: float = constrained(gt=0)  # a request still running then is stopped
    queue_size: int = constrained(ge=1)  # requests in the server at once; more: 503
    max_batch: int = constrained(ge=1)  # sentences decoded together
    sentences_per_request: int = constrained(ge=1)  # of one request, decoded at once
    shutdown_grace_s: float = constrained(ge=0)  # on SIGTERM, how long in-flight requests may finish


@dataclass
class ServeConfig:
    """``neurotts serve -a RUN [-v RUN|griffinlim] [--host H] [--port P]``."""

    acoustic: str = MISSING  # Tacotron 2 run folder or checkpoint (--acoustic)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)  # path: --vocoder
    voice: str = constrained(pattern=r"[A-Za-z0-9_.-]+", expect="letters, digits, _ . -")
    host: str = MISSING  # --host
    port: int = constrained(ge=0, le=65535)  # --port; 0: any free port (printed)
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    seed: int | None = constrained(ge=0, lt=2**63)  # seeds prenet dropout once at start
    max_chars: int = constrained(ge=1)  # a sentence longer than this is split at clauses
    max_symbols: int = constrained(ge=2)  # a piece's symbols: bounds its decoder (as synth's)
    pause: float = constrained(ge=0, le=10)  # seconds of silence between sentences
    threads: int = constrained(ge=0)  # torch CPU threads; 0: torch's default
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
