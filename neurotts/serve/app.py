"""The HTTP side of ``neurotts serve``: a Starlette app over one :class:`Engine`.

Endpoints::

    POST /v1/audio/speech   OpenAI-compatible: {"input", "voice", "model", "response_format":
                            wav|pcm|flac|mp3|ogg, "speed", "stream", "stream_format": audio|sse}
    GET|POST /api/tts       Coqui/MaryTTS style: ?text=... (or a text/plain body), ?voice= -> WAV
    GET  /api/voices        the voices served: the server's voice, or, for a multi-speaker
                            model, one per speaker (``voice`` = a speaker's name; a request
                            without one, or with the server's voice name, gets the first)
    GET  /health            liveness and load
    GET  /metrics           Prometheus text
    GET  /                  a page to type text, hear it while it streams and download it

wav and pcm stream as the audio is made (a WAV header whose sizes say "unknown", then 16-bit
PCM); flac, mp3 and ogg are encoded once the text is done. ``stream_format=sse`` sends the same
bytes base64-encoded as ``speech.audio.delta`` events, each sentence's word timings as a
``speech.audio.words`` event, and a closing ``speech.audio.done`` with all words and WebVTT.

Every error is one line of JSON, ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from neurotts.serve.batcher import Engine, SentenceJob
from neurotts.serve.config import ServeConfig
from neurotts.serve.metrics import Metrics
from neurotts.serve.stream import Sentence
from neurotts.serve.voice import ServedVoice, SynthesisError, Word, to_json, to_webvtt

log = logging.getLogger("neurotts.serve")
PAGE = Path(__file__).with_name("static") / "index.html"

# response_format -> (media type, soundfile format and subtype; None: raw PCM)
FORMATS: dict[str, tuple[str, tuple[str, str] | None]] = {
    "wav": ("audio/wav", ("WAV", "PCM_16")),
    "pcm": ("audio/pcm", None),
    "flac": ("audio/flac", ("FLAC", "PCM_16")),
    "mp3": ("audio/mpeg", ("MP3", "MPEG_LAYER_III")),
    "ogg": ("audio/ogg", ("OGG", "VORBIS")),
}
STREAMED = ("wav", "pcm")
FIELDS = ("model", "input", "voice", "response_format", "speed", "stream", "stream_format")


class ApiError(Exception):
    """A request the server refuses: its status, a one-line message and extra headers."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def error_response(status: int, message: str, kind: str,
                   headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}})
    return Response(body + "\n", status, headers=headers, media_type="application/json")


@dataclass
class SpeechRequest:
    text: str
    response_format: str = "wav"
    speed: float = 1.0
    stream: bool = True
    stream_format: str = "audio"
    speaker: int | None = None  # id in a multi-speaker model's table; None: one speaker


def pick_voice(voice: object, cfg: ServeConfig, speakers: list[str]) -> int | None:
    """The speaker id a request's ``voice`` asks for (the model's speaker table ``speakers``,
    [] for a single-speaker model, where only the server's voice name is accepted). For a
    multi-speaker model the server's voice name, or no voice, is the first speaker (the
    table is sorted), as ``synth`` without ``--speaker``."""
    if not speakers:
        if voice != cfg.voice:
            raise ApiError(422, f"voice={json.dumps(voice)}: this server speaks with {cfg.voice!r}")
        return None
    if voice == cfg.voice:
        return 0
    if not isinstance(voice, str) or voice not in speakers:
        raise ApiError(422, f"voice={json.dumps(voice)}: choose one of the model's speakers "
                            f"({', '.join(speakers)}; {cfg.voice!r} is {speakers[0]})")
    return speakers.index(voice)


def _choice(body: dict, key: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(key, default)
    if value not in choices:
        raise ApiError(422, f"{key}={json.dumps(value)}: choose one of {', '.join(choices)}")
    return value


def parse_speech(body: object, cfg: ServeConfig, speakers: list[str] | None = None
                 ) -> SpeechRequest:
    """The checked fields of a /v1/audio/speech body (``model`` is accepted and not used:
    the server speaks with the one model it loaded; ``speakers``: its speaker table)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "input: give the text to speak as a non-empty string")
    speaker = pick_voice(body.get("voice", cfg.voice), cfg, speakers or [])
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise ApiError(422, f"speed={json.dumps(speed)}: give a number from 0.25 to 4.0")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise ApiError(422, f"stream={json.dumps(stream)}: give true or false")
    return SpeechRequest(text, _choice(body, "response_format", tuple(FORMATS), "wav"),
                         float(speed), stream,
                         _choice(body, "stream_format", ("audio", "sse"), "audio"), speaker)


def pcm16(wav: np.ndarray) -> bytes:
    """float samples -> 16-bit little-endian PCM (clipped: streamed audio is not normalised)."""
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte PCM WAV header whose RIFF and data sizes are 0xFFFFFFFF: the length is not
    known while streaming, and readers take the data to run to the end of the stream."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


def encode_whole(wav: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    spec = FORMATS[fmt][1]
    if spec is None:
        return pcm16(wav)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, format=spec[0], subtype=spec[1])
    return buffer.getvalue()


class Speech:
    """One request's sentences in the engine, and their events in the request's order."""

    def __init__(self, server: Server, pieces: list[str], ids: list[list[int]], speed: float,
                 speaker: int | None = None):
        loop = asyncio.get_running_loop()
        self.server = server
        self.queues: list[asyncio.Queue] = [asyncio.Queue() for _ in pieces]
        deadline = time.monotonic() + server.cfg.limits.request_timeout_s
        self.jobs = [
            SentenceJob(Sentence(x, speaker), piece, speed, deadline,
                        lambda kind, payload, q=q: loop.call_soon_threadsafe(q.put_nowait, (kind, payload)))
            for piece, x, q in zip(pieces, ids, self.queues, strict=True)]
        # At most `ahead` sentences of one request decode at once: the first sentence's audio
        # is not slowed by work on sentences that will only play after it.
        ahead = server.cfg.limits.sentences_per_request
        for k in range(ahead, len(self.jobs)):
            self.jobs[k].gate = self.jobs[k - ahead]
        self.words: list[Word] = []
        self.samples = 0
        self.finished = False
        server.engine.submit(self.jobs)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancelled = True

    async def audio(self, request: Request) -> AsyncIterator[np.ndarray]:
        """Float samples in order (pauses between sentences); collects the words. Raises
        :class:`ApiError` 504 at the time limit; stops early when the client is gone."""
        sr = self.server.voice.sample_rate
        pause = np.zeros(int(self.server.cfg.pause * sr), dtype=np.float32)
        for i, queue in enumerate(self.queues):
            if i and pause.size:
                self.samples += pause.size
                yield pause
            while True:
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), timeout=0.5)
                except asyncio.TimeoutError:  # (not TimeoutError: they differ before 3.11)
                    if await request.is_disconnected():
                        return
                    continue
                if kind == "audio":
                    self.samples += payload.size
                    yield payload
                elif kind == "words":
                    start = (self.samples - self.jobs[i].samples) / sr
                    self.words += [w.shifted(start) for w in payload]
                elif kind == "end":
                    break
                elif kind == "timeout":
                    raise ApiError(504, payload, "timeout")
                else:
                    raise ApiError(500, payload, "server_error")
        self.finished = True


class Server:
    """The state the routes share: config, voice, engine, metrics, requests in flight."""

    def __init__(self, cfg: ServeConfig, voice: ServedVoice):
        self.cfg, self.voice = cfg, voice
        self.in_flight = 0
        self.metrics = Metrics({
            "neurotts_queue_depth": ("Sentences waiting to join the decoder batch.",
                                     lambda: self.engine.waiting),
            "neurotts_batch_size": ("Sentences in the decoder batch.", lambda: self.engine.active),
            "neurotts_requests_in_flight": ("Requests being answered.", lambda: self.in_flight),
        })
        self.engine = Engine(voice, cfg.stream, cfg.limits.max_batch, self.metrics)

    def admit(self, text: str) -> tuple[list[str], list[list[int]]]:
        """Checks a text against the limits and the queue; its pieces and their ids."""
        limit = self.cfg.limits.max_input_chars
        if len(text) > limit:
            raise ApiError(413, f"input is {len(text)} characters; this server takes at most {limit}")
        if self.in_flight >= self.cfg.limits.queue_size:
            raise ApiError(503, f"the server is busy ({self.in_flight} requests in hand); retry later",
                           "overloaded", {"Retry-After": str(self.retry_after())})
        try:
            encoded = self.voice.encode(text, self.cfg.max_chars, self.cfg.max_symbols)
        except SynthesisError as exc:
            raise ApiError(422, f"input: {exc}") from None
        return encoded.pieces, encoded.ids

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the mean request time so far (at least 1)."""
        hists = self.metrics.latency.values()
        n = sum(h.n for h in hists)
        return max(1, math.ceil(sum(h.total for h in hists) / n)) if n else 1


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _server(request: Request) -> Server:
    return request.app.state.server


async def speech(request: Request) -> Response:
    server = _server(request)
    raw = await read_body(request, 4 * server.cfg.limits.max_input_chars + 4096)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None
    req = parse_speech(body, server.cfg, server.voice.speakers)
    return await respond(request, server, req, "/v1/audio/speech")


async def tts(request: Request) -> Response:
    """Coqui TTS / MaryTTS style: ``?text=`` (GET or POST) or a text/plain POST body; WAV."""
    server = _server(request)
    text = request.query_params.get("text")
    if text is None and request.method == "POST":
        raw = await read_body(request, 4 * server.cfg.limits.max_input_chars + 4096)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8 text") from None
    if text is None or not text.strip():
        raise ApiError(422, "text: give the text to speak (?text=... or a text/plain body)")
    speaker = pick_voice(request.query_params.get("voice", server.cfg.voice), server.cfg,
                         server.voice.speakers)
    return await respond(request, server, SpeechRequest(text, stream=False, speaker=speaker),
                         "/api/tts")


async def respond(request: Request, server: Server, req: SpeechRequest, endpoint: str) -> Response:
    """Run ``req`` and answer it: streamed, as server-sent events, or whole."""
    pieces, ids = server.admit(req.text)
    started = time.perf_counter()
    server.in_flight += 1
    speech_ = Speech(server, pieces, ids, req.speed, req.speaker)
    sr = server.voice.sample_rate
    audio = speech_.audio(request)
    try:
        first = await anext(audio, None)  # errors before any audio are still proper responses
    except BaseException:
        speech_.cancel()
        server.in_flight -= 1
        raise
    server.metrics.first_chunk(time.perf_counter() - started)
    whole = not req.stream or req.response_format not in STREAMED
    if whole and req.stream_format == "audio":
        try:
            parts = [] if first is None else [first] + [a async for a in audio]
        finally:
            speech_.cancel()
            server.in_flight -= 1
        wav = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if not speech_.finished:  # the client left: nobody reads this answer
            server.metrics.request(endpoint, 499, time.perf_counter() - started)
            return Response(status_code=499)
        server.metrics.audio(wav.size / sr)
        server.metrics.request(endpoint, 200, time.perf_counter() - started)
        return Response(encode_whole(wav, sr, req.response_format),
                        media_type=FORMATS[req.response_format][0],
                        headers={"X-Sample-Rate": str(sr)})
    chunks = _byte_chunks(first, audio, req, sr, whole)
    if req.stream_format == "sse":
        chunks = _events(chunks, speech_)
        media = "text/event-stream"
    else:
        media = FORMATS[req.response_format][0]
    return StreamingResponse(_finish(chunks, server, speech_, endpoint, started), media_type=media,
                             headers={"X-Sample-Rate": str(sr), "Cache-Control": "no-store"})


async def _byte_chunks(first: np.ndarray | None, audio: AsyncIterator[np.ndarray],
                       req: SpeechRequest, sr: int, whole: bool) -> AsyncIterator[bytes]:
    """The response's bytes as they are made (whole formats: one piece at the end)."""
    if whole:
        parts = [] if first is None else [first] + [a async for a in audio]
        yield encode_whole(np.concatenate(parts) if parts else np.zeros(0, np.float32), sr,
                           req.response_format)
        return
    if req.response_format == "wav":
        yield streaming_wav_header(sr)
    if first is not None:
        yield pcm16(first)
    async for wav in audio:
        yield pcm16(wav)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _events(chunks: AsyncIterator[bytes], speech_: Speech) -> AsyncIterator[bytes]:
    """Bytes as OpenAI-style server-sent events, with word timings as they become known."""
    sent = 0
    async for data in chunks:
        yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
        if len(speech_.words) > sent:
            yield _sse({"type": "speech.audio.words", "words": to_json(speech_.words[sent:])})
            sent = len(speech_.words)
    sr = speech_.server.voice.sample_rate
    yield _sse({"type": "speech.audio.done", "duration": round(speech_.samples / sr, 3),
                "words": to_json(speech_.words), "vtt": to_webvtt(speech_.words)})


async def _finish(chunks: AsyncIterator[bytes], server: Server, speech_: Speech, endpoint: str,
                  started: float) -> AsyncIterator[bytes]:
    """Stream ``chunks``; however it ends (done, client gone, time limit), stop the work and
    count the request. Past the first byte an error can only cut the stream short."""
    status = 200
    try:
        async for data in chunks:
            yield data
    except ApiError as exc:
        status = exc.status
        log.warning("stream cut: %s", exc.message)
    finally:
        speech_.cancel()
        server.in_flight -= 1
        if not speech_.finished and status == 200:
            status = 499  # the client went away
        server.metrics.audio(speech_.samples / server.voice.sample_rate)
        server.metrics.request(endpoint, status, time.perf_counter() - started)


async def voices(request: Request) -> Response:
    server = _server(request)
    v = server.voice
    names = v.speakers or [server.cfg.voice]
    body = {"voices": [{"name": name, "sample_rate": v.sample_rate,
                        "vocoder": server.cfg.vocoder.path,
                        "streaming": "chunks" if v.griffin_lim is not None else "sentences",
                        **({"speaker": True, "default": i == 0} if v.speakers else {})}
                       for i, name in enumerate(names)]}
    return Response(json.dumps(body), media_type="application/json")


async def health(request: Request) -> Response:
    server = _server(request)
    body = {"status": "ok", "in_flight": server.in_flight, "waiting": server.engine.waiting,
            "batch": server.engine.active}
    return Response(json.dumps(body), media_type="application/json")


async def metrics(request: Request) -> Response:
    return PlainTextResponse(_server(request).metrics.render(),
                             media_type="text/plain; version=0.0.4")


async def page(request: Request) -> Response:
    return Response(PAGE.read_bytes(), media_type="text/html; charset=utf-8")


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    path = request.url.path
    if path in ("/v1/audio/speech", "/api/tts"):
        _server(request).metrics.request(path, exc.status, None)
    return error_response(exc.status, exc.message, exc.kind, exc.headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, "invalid_request_error", exc.headers)


async def on_crash(request: Request, exc: Exception) -> Response:
    log.error("request failed", exc_info=exc)  # the traceback stays in the server's log
    return error_response(500, f"internal error ({type(exc).__name__})", "server_error")


def build_app(server: Server) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.engine.start()
        yield
        server.engine.stop()

    routes = [
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/api/tts", tts, methods=["GET", "POST"]),
        Route("/api/voices", voices, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/", page, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash})
    app.state.server = server
    return app
