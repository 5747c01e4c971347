"""The engine: one thread owns the model and decodes every request's sentences together.

Requests hand in :class:`SentenceJob` s; the engine admits waiting jobs into the decoder's batch
between steps (up to ``max_batch`` sentences at once), so a new request starts within one
decoder step instead of waiting for the running ones. After each step, every sentence's newly
final frames go through the postnet, the speed change and chunked Griffin-Lim (chunks of all
sentences with the same length are vocoded as one batch), and the audio is handed to the
job's ``sink`` right away. A cancelled job (client gone) or one past its deadline leaves the
batch at the next step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from neurotts.serve.metrics import Metrics
from neurotts.serve.stream import (
    ChunkVocoder,
    IncrementalDecoder,
    MelFinisher,
    Sentence,
    StreamConfig,
    Stretch,
    Window,
)
from neurotts.serve.voice import ServedVoice, Word, griffin_lim, word_times

log = logging.getLogger("neurotts.serve")

# What a job's sink receives: ("audio", float32 samples), ("words", [Word] from the sentence
# start), ("end", samples in the sentence), ("timeout", message) or ("error", message);
# called from the engine thread, so it must be thread-safe.
Sink = Callable[[str, object], None]


@dataclass(eq=False)
class SentenceJob:
    """One sentence of one request."""

    sentence: Sentence
    text: str  # the piece of normalised text, for word names
    speed: float
    deadline: float  # time.monotonic() after which the job is stopped
    sink: Sink
    cancelled: bool = False  # set by the request's side: the engine drops the job
    gate: SentenceJob | None = None  # joins the batch only once this one has ended
    ended: bool = False
    finisher: MelFinisher | None = None
    stretch: Stretch | None = None
    chunks: ChunkVocoder | None = None
    whole: list[torch.Tensor] = field(default_factory=list)  # log-mels, for a whole-sentence vocoder
    samples: int = 0


class Engine:
    """The decoding thread and its queue of waiting sentences."""

    def __init__(self, voice: ServedVoice, stream: StreamConfig, max_batch: int, metrics: Metrics):
        self.voice, self.cfg, self.max_batch, self.metrics = voice, stream, max_batch, metrics
        self._waiting: deque[SentenceJob] = deque()
        self._active: list[SentenceJob] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="neurotts-engine", daemon=True)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return len(self._active)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the jobs in hand, then end the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join()

    def submit(self, jobs: list[SentenceJob]) -> None:
        with self._cv:
            self._waiting.extend(jobs)
            self._cv.notify()

    def _run(self) -> None:
        decoder = IncrementalDecoder(self.voice.model)
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._waiting and not self._active and not self._stop:
                        self._cv.wait()
                    if self._stop and not self._waiting and not self._active:
                        return
                    joining = self._admit(self.max_batch - len(self._active))
                try:
                    self._iterate(decoder, [j for j in joining if not j.cancelled])
                except Exception as exc:  # a failure costs the jobs in hand, not the server
                    log.exception("engine step failed")
                    for job in self._active:
                        job.sink("error", f"synthesis failed ({type(exc).__name__})")
                    self._active = []
                    decoder = IncrementalDecoder(self.voice.model)

    def _admit(self, room: int) -> list[SentenceJob]:
        """Up to ``room`` waiting jobs whose gate has ended, in arrival order (cancelled ones
        are dropped); the others keep their place. Called with the lock held."""
        joining, kept = [], deque()
        while self._waiting:
            job = self._waiting.popleft()
            if job.cancelled:
                job.ended = True
            elif len(joining) < room and (job.gate is None or job.gate.ended):
                joining.append(job)
            else:
                kept.append(job)
        self._waiting = kept
        return joining

    def _iterate(self, decoder: IncrementalDecoder, joining: list[SentenceJob]) -> None:
        """Admit ``joining``, drop what is cancelled or late, step, and send the audio."""
        for job in joining:
            # A postnet call per sentence per step would cost as much as the step itself.
            job.finisher = MelFinisher(self.voice.model, self.voice.to_log_mel, every=16)
            job.stretch = Stretch(job.speed)
            if self.voice.griffin_lim is not None:
                job.chunks = ChunkVocoder(self.cfg, self.voice.hop_length)
        decoder.join([job.sentence for job in joining])
        self._active += joining
        now = time.monotonic()
        for job in list(self._active):
            late = now > job.deadline
            if job.cancelled or late:
                decoder.leave(job.sentence)
                self._active.remove(job)
                job.ended = True
                self.metrics.cancel("timeout" if late else "disconnect")
                if late:
                    job.sink("timeout", "the request took longer than its time limit")
        decoder.step()
        self._send_audio(self._active)
        for job in [j for j in self._active if j.sentence.length is not None]:
            self._active.remove(job)
            job.ended = True
            job.sink("words", self._words(job))
            job.sink("end", job.samples)

    def _send_audio(self, jobs: list[SentenceJob]) -> None:
        """Newly final frames of ``jobs`` -> audio, each job's chunks in order."""
        pending: list[tuple[SentenceJob, Window]] = []
        for job in jobs:
            assert job.finisher is not None and job.stretch is not None
            done = job.sentence.length is not None
            mels = job.stretch.advance(job.finisher.advance(job.sentence), done)
            if job.chunks is not None:
                job.chunks.push(mels, done)
                pending += [(job, w) for w in job.chunks.windows()]
            else:
                job.whole.append(mels)
                if done:
                    self._vocode_whole(job)
        # One Griffin-Lim call per window length: most chunks have the same length.
        by_length: dict[int, list[int]] = {}
        for k, (_, w) in enumerate(pending):
            by_length.setdefault(w.hi - w.lo, []).append(k)
        wavs: dict[int, np.ndarray] = {}
        assert self.voice.griffin_lim is not None or not pending
        for ks in by_length.values():
            batch = torch.stack([pending[k][1].mels for k in ks])  # (B, T_window, n_mels)
            out = griffin_lim(self.voice.griffin_lim, batch).float().cpu().numpy()
            wavs.update(zip(ks, out, strict=True))
        for k, (job, w) in enumerate(pending):
            assert job.chunks is not None
            self._emit(job, job.chunks.accept(w, wavs[k]))

    def _vocode_whole(self, job: SentenceJob) -> None:
        """A vocoder without chunked streaming (WaveNet): the sentence at once."""
        mels = torch.cat(job.whole)[None]  # (1, T, n_mels)
        wav = self.voice.vocoder(mels, torch.tensor([mels.shape[1]]))[0]
        self._emit(job, wav)

    def _emit(self, job: SentenceJob, wav: np.ndarray) -> None:
        if wav.size:
            job.samples += wav.size
            job.sink("audio", wav)

    def _words(self, job: SentenceJob) -> list[Word]:
        s = self.voice
        symbols = s.frontend.decode(job.sentence.ids)
        words = word_times(job.sentence.alignment().float().cpu().numpy(), job.text, symbols,
                           s.hop_length, s.reduction_factor, s.sample_rate, job.sentence.length)
        return [w.shifted(0.0, 1.0 / job.speed) for w in words]
