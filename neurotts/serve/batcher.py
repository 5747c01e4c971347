"""The engine: one thread owns the model and decodes every request's sentences together, a
second one vocodes what it decodes.

Requests hand in :class:`SentenceJob` s; the engine admits waiting jobs into the decoder's batch
between steps (up to ``max_batch`` sentences at once), so a new request starts within one
decoder step instead of waiting for the running ones. After each step, every sentence's newly
final frames go through the postnet and the speed change, are cut into chunks, and the chunks
are handed to the :class:`Vocoding` thread, which runs Griffin-Lim on everything handed in
since its last round (chunks of the same length as one batch) and gives the audio to each
job's ``sink`` in order. Decoding and vocoding thus overlap on two cores; the decoder waits
when more than ``backlog`` chunks are still to vocode, so a busy server does not decode far
ahead of its audio. A cancelled job (client gone) or one past its deadline leaves the batch at
the next step, and its chunks not yet vocoded are dropped.
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
from neurotts.serve.voice import ServedVoice, Word, word_times

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


@dataclass(eq=False)
class _Task:
    """Work for the vocoding thread, in the job's order: a chunk, a whole sentence, or the
    job's end (its words, then "end", once its audio is out)."""

    job: SentenceJob
    window: Window | None = None  # a chunk for Griffin-Lim
    whole: torch.Tensor | None = None  # (T, n_mels) log-mels for a whole-sentence vocoder
    words: list[Word] | None = None  # the job's end


class Vocoding:
    """The thread that turns decoded log-mels into audio for the engine."""

    def __init__(self, voice: ServedVoice, backlog: int):
        self.voice, self.backlog = voice, backlog
        self._tasks: list[_Task] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="neurotts-vocoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Vocode what was handed in, then end the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()

    def put(self, tasks: list[_Task]) -> None:
        if tasks:
            with self._cv:
                self._tasks += tasks
                self._cv.notify_all()

    def wait_for_room(self) -> None:
        """Block while more than ``backlog`` chunks wait (the decoder is ahead of the audio)."""
        with self._cv:
            while sum(t.window is not None for t in self._tasks) > self.backlog:
                self._cv.wait()

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._tasks and not self._stop:
                        self._cv.wait()
                    if not self._tasks:
                        return
                    tasks, self._tasks = self._tasks, []
                    self._cv.notify_all()  # room for the decoder
                try:
                    self._vocode([t for t in tasks if not t.job.cancelled])
                except Exception as exc:  # a failure costs these jobs, not the server
                    log.exception("vocoding failed")
                    for job in {t.job for t in tasks}:
                        job.cancelled = True  # its later chunks are dropped
                        job.sink("error", f"synthesis failed ({type(exc).__name__})")

    def _vocode(self, tasks: list[_Task]) -> None:
        """``tasks`` in order; one Griffin-Lim call per chunk length (most are alike)."""
        by_length: dict[int, list[_Task]] = {}
        for t in tasks:
            if t.window is not None:
                by_length.setdefault(t.window.hi - t.window.lo, []).append(t)
        wavs: dict[int, np.ndarray] = {}
        for group in by_length.values():
            assert self.voice.griffin_lim is not None
            batch = torch.stack([t.window.mels for t in group if t.window is not None])
            out = self.voice.griffin_lim.unnormalised(batch).float().cpu().numpy()  # (B, samples)
            wavs.update((id(t), wav) for t, wav in zip(group, out, strict=True))
        for t in tasks:
            job = t.job
            if t.window is not None:
                assert job.chunks is not None
                self._emit(job, job.chunks.accept(t.window, wavs[id(t)]))
            elif t.whole is not None:  # a vocoder without chunked streaming (WaveNet)
                mels = t.whole[None]  # (1, T, n_mels)
                speaker = self.voice.speaker_name(job.sentence.speaker)
                self._emit(job, self.voice.vocoder(mels, torch.tensor([mels.shape[1]]), [speaker])[0])
            else:
                job.sink("words", t.words)
                job.sink("end", job.samples)

    @staticmethod
    def _emit(job: SentenceJob, wav: np.ndarray) -> None:
        if wav.size:
            job.samples += wav.size
            job.sink("audio", wav)


class Engine:
    """The decoding thread, its queue of waiting sentences, and its vocoding thread."""

    def __init__(self, voice: ServedVoice, stream: StreamConfig, max_batch: int, metrics: Metrics):
        self.voice, self.cfg, self.max_batch, self.metrics = voice, stream, max_batch, metrics
        self._waiting: deque[SentenceJob] = deque()
        self._active: list[SentenceJob] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="neurotts-engine", daemon=True)
        # Two chunks per sentence of a full batch may wait: enough that the vocoder always
        # has a batch in hand, few enough that a new request's first chunk is not queued
        # behind seconds of other requests' audio.
        self.vocoding = Vocoding(voice, backlog=2 * max_batch)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return len(self._active)

    def start(self) -> None:
        self.vocoding.start()
        self._thread.start()

    def stop(self) -> None:
        """Finish the jobs in hand, then end the threads."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join()
        self.vocoding.stop()

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
                    self.vocoding.wait_for_room()
                    self._iterate(decoder, [j for j in joining if not j.cancelled])
                except Exception as exc:  # a failure costs the jobs in hand, not the server
                    log.exception("engine step failed")
                    for job in self._active:
                        job.cancelled = True  # its chunks still to vocode are dropped
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
        """Admit ``joining``, drop what is cancelled or late, step, and hand on the frames."""
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
                    job.cancelled = True  # its chunks still to vocode are dropped
                    job.sink("timeout", "the request took longer than its time limit")
        decoder.step()
        tasks = self._tasks(self._active)
        for job in [j for j in self._active if j.sentence.length is not None]:
            self._active.remove(job)
            job.ended = True
            tasks.append(_Task(job, words=self._words(job)))
        self.vocoding.put(tasks)

    def _tasks(self, jobs: list[SentenceJob]) -> list[_Task]:
        """Newly final frames of ``jobs`` -> the chunks (or whole sentences) to vocode."""
        tasks: list[_Task] = []
        for job in jobs:
            assert job.finisher is not None and job.stretch is not None
            done = job.sentence.length is not None
            mels = job.stretch.advance(job.finisher.advance(job.sentence), done)
            if job.chunks is not None:
                job.chunks.push(mels, done)
                tasks += [_Task(job, window=w) for w in job.chunks.windows()]
            else:
                job.whole.append(mels)
                if done:
                    tasks.append(_Task(job, whole=torch.cat(job.whole)))
        return tasks

    def _words(self, job: SentenceJob) -> list[Word]:
        s = self.voice
        symbols = s.frontend.decode(job.sentence.ids)
        words = word_times(job.sentence.alignment().float().cpu().numpy(), job.text, symbols,
                           s.hop_length, s.reduction_factor, s.sample_rate, job.sentence.length)
        return [w.shifted(0.0, 1.0 / job.speed) for w in words]
