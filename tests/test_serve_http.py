"""``neurotts serve`` over real HTTP on loopback: endpoints, streaming, errors, limits,
concurrent clients, disconnects and SIGTERM."""

from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import socket
import threading
import time

import pytest
import soundfile as sf

from tests.serve_support import (
    ThreadServer,
    request,
    serve_config,
    start_process,
    tiny_checkpoint,
    wav_samples,
)

SPEECH = "/v1/audio/speech"
FIVE = ("The first sentence is here. A second one follows it. Then comes the third. "
        "The fourth is next. And the fifth ends the text.")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(checkpoint):
    srv = ThreadServer(serve_config(checkpoint, "threads=1", "limits.max_input_chars=600"))
    yield srv
    srv.stop()


def metric(port: int, name: str) -> float:
    """The value of one metric line (``name`` with its labels) in /metrics."""
    text = request(port, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_health_voices_page_and_metrics(server):
    port = server.port
    assert request(port, "GET", "/health").json()["status"] == "ok"
    voices = request(port, "GET", "/api/voices").json()["voices"]
    assert voices == [{"name": "neurotts", "sample_rate": 22050, "vocoder": "griffinlim",
                       "streaming": "chunks"}]
    page = request(port, "GET", "/")
    assert page.status == 200 and b"/v1/audio/speech" in page.body
    text = request(port, "GET", "/metrics").body.decode()
    for name in ("neurotts_requests_total", "neurotts_request_duration_seconds",
                 "neurotts_queue_depth", "neurotts_audio_seconds_total",
                 "neurotts_request_errors_total", "neurotts_time_to_first_audio_seconds"):
        assert f"# TYPE {name} " in text


def test_speech_streams_before_the_text_is_done(server):
    answer = request(server.port, "POST", SPEECH, {"input": FIVE, "voice": "neurotts"})
    assert answer.status == 200 and answer.headers["content-type"] == "audio/wav"
    assert answer.headers["transfer-encoding"] == "chunked"
    rate, samples = wav_samples(answer.body)
    assert rate == 22050 and samples.size > 5 * 22050 * 0.25  # five sentences and four pauses
    # The first audio arrived well before the last: sentences and chunks left as they were made.
    first_audio = next(t for t, size in answer.arrivals if size > 44)
    assert len(answer.arrivals) > 10 and first_audio < 0.5 * answer.arrivals[-1][0]
    assert metric(server.port, "neurotts_audio_seconds_total") > 0


def test_formats_and_whole_answers(server):
    port = server.port
    pcm = request(port, "POST", SPEECH, {"input": "Raw samples.", "response_format": "pcm"})
    assert pcm.headers["content-type"] == "audio/pcm" and pcm.headers["x-sample-rate"] == "22050"
    assert len(pcm.body) % 2 == 0 and len(pcm.body) > 0
    for fmt, name in (("flac", "FLAC"), ("mp3", "MP3"), ("ogg", "OGG"), ("wav", "WAV")):
        answer = request(port, "POST", SPEECH, {"input": "Encoded whole.", "response_format": fmt,
                                                "stream": False})
        assert answer.status == 200 and "content-length" in answer.headers
        info = sf.info(io.BytesIO(answer.body))
        assert info.format == name and info.samplerate == 22050 and info.frames > 1000
    tts = request(port, "GET", "/api/tts?text=Hello%20world.")
    data, rate = sf.read(io.BytesIO(tts.body))
    assert tts.headers["content-type"] == "audio/wav" and rate == 22050 and data.size > 1000
    posted = request(port, "POST", "/api/tts", raw=b"Posted text.")
    assert posted.status == 200 and sf.info(io.BytesIO(posted.body)).frames > 1000


def test_speed_changes_the_length(server):
    def seconds(speed: float) -> float:
        body = request(server.port, "POST", SPEECH, {"input": "Just one sentence here.",
                                                     "response_format": "pcm", "speed": speed}).body
        return len(body) / 2 / 22050

    # The untrained model always runs to its length guard: the same frames every time.
    assert seconds(2.0) == pytest.approx(seconds(1.0) / 2, rel=0.02)


def test_sse_carries_audio_words_and_webvtt(server):
    answer = request(server.port, "POST", SPEECH, {"input": "Hello there. How are you?",
                                                   "response_format": "pcm", "stream_format": "sse"})
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in answer.body.decode().split("\n\n") if line]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and "speech.audio.words" in kinds
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    done = events[-1]
    assert done["duration"] == pytest.approx(len(audio) / 2 / 22050, abs=1e-3)
    words = done["words"]
    assert [w["word"] for w in words] == ["Hello", "there.", "How", "are", "you?"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["end"] <= done["duration"] for w in words)
    assert words[2]["start"] >= 0.25  # the second sentence starts after the first and the pause
    assert done["vtt"].startswith("WEBVTT\n\n") and "--> " in done["vtt"]


BAD = [
    (b"{nope", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"voice": "neurotts"}).encode(), 422, "input"),
    (json.dumps({"input": "   "}).encode(), 422, "input"),
    (json.dumps({"input": "Hi.", "voice": "alloy"}).encode(), 422, "voice"),
    (json.dumps({"input": "Hi.", "speed": 9}).encode(), 422, "speed"),
    (json.dumps({"input": "Hi.", "speed": True}).encode(), 422, "speed"),
    (json.dumps({"input": "Hi.", "response_format": "aac"}).encode(), 422, "response_format"),
    (json.dumps({"input": "Hi.", "stream": "yes"}).encode(), 422, "stream"),
    (json.dumps({"input": "Hi.", "colour": "red"}).encode(), 422, "unknown field"),
    (json.dumps({"input": "{HH AH0}"}).encode(), 422, "input"),
    (json.dumps({"input": "x" * 601}).encode(), 413, "at most 600"),
]


@pytest.mark.parametrize(("raw", "status", "words"), BAD)
def test_bad_requests_are_one_line_json(server, raw, status, words):
    answer = request(server.port, "POST", SPEECH, raw=raw)
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.body.count(b"\n") == 1 and answer.body.endswith(b"\n")
    error = answer.json()["error"]
    assert error["code"] == status and words in error["message"]
    assert "Traceback" not in error["message"] and "<" not in error["message"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404), ("GET", SPEECH, 405), ("DELETE", "/api/tts", 405),
    ("GET", "/api/tts", 422), ("GET", "/api/tts?text=%20", 422)])
def test_bad_routes_are_one_line_json(server, method, path, status):
    answer = request(server.port, method, path)
    assert answer.status == status and answer.body.count(b"\n") == 1
    assert answer.json()["error"]["code"] == status


def test_concurrent_clients_share_one_batch(server):
    """Eight clients at once: all answered in full, and the engine decoded their sentences
    together (the batch held more than one sentence)."""
    names = ["alpha", "bravo", "delta", "gamma", "omega", "sigma", "kappa", "theta"]
    texts = [f"Client {name} says a sentence. And another one." for name in names]
    answers: dict[int, object] = {}
    sizes: list[float] = []
    stop = threading.Event()

    def client(k: int) -> None:
        answers[k] = request(server.port, "POST", SPEECH, {"input": texts[k], "response_format": "pcm"})

    def watch() -> None:
        while not stop.is_set():
            sizes.append(server.server.engine.active)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert all(answers[k].status == 200 for k in range(8))
    # Same-length texts through an untrained model run to the same guard: equal lengths.
    lengths = {len(answers[k].body) for k in range(8)}
    assert len(lengths) == 1 and lengths.pop() > 0
    assert max(sizes) > 2


def test_client_that_disconnects_stops_its_work(server):
    before = metric(server.port, 'neurotts_cancelled_total{reason="disconnect"}')
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"input": FIVE * 3}).encode()
    sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
    deadline = time.monotonic() + 20
    while server.server.in_flight or server.server.engine.active or server.server.engine.waiting:
        assert time.monotonic() < deadline, "the gone client's work went on"
        time.sleep(0.05)
    assert metric(server.port, 'neurotts_cancelled_total{reason="disconnect"}') > before


def test_full_queue_is_503_and_time_limit_is_504(checkpoint):
    srv = ThreadServer(serve_config(checkpoint, "threads=1", "limits.queue_size=1",
                                    "limits.request_timeout_s=3.0"))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", SPEECH, json.dumps({"input": FIVE * 30}),
                     {"Content-Type": "application/json"})
        held = conn.getresponse()  # streaming; not read on: the request stays in flight
        assert held.status == 200
        refused = request(srv.port, "POST", SPEECH, {"input": "One too many."})
        assert refused.status == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "overloaded"
        rest = held.read()  # the stream is cut at the time limit: it ends early, cleanly
        conn.close()
        assert len(rest) > 44
        # Non-streamed, the time limit before the answer is a 504.
        late = request(srv.port, "POST", SPEECH, {"input": FIVE * 30, "stream": False})
        assert late.status == 504 and late.json()["error"]["type"] == "timeout"
        assert metric(srv.port, 'neurotts_cancelled_total{reason="timeout"}') >= 2
        assert metric(srv.port, 'neurotts_requests_total{endpoint="/v1/audio/speech",status="504"}') == 2
    finally:
        srv.stop()


def test_sigterm_drains_requests_in_flight(checkpoint):
    proc, port = start_process(checkpoint)
    try:
        text = {"input": FIVE * 2, "response_format": "pcm"}
        whole = request(port, "POST", SPEECH, text)
        results: list = []
        client = threading.Thread(target=lambda: results.append(request(port, "POST", SPEECH, text)))
        client.start()
        deadline = time.monotonic() + 20
        while request(port, "GET", "/health").json()["in_flight"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        client.join(60)
        assert proc.wait(60) == 128 + signal.SIGTERM
        # The request in flight got all its audio; the server then stopped listening.
        assert results[0].status == 200 and len(results[0].body) == len(whole.body)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert "stopped by SIGTERM after answering every request in flight (2 speech requests answered)" in (
            proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_errors_are_one_line(checkpoint, tmp_path):
    from typer.testing import CliRunner

    from neurotts.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--cfg"])
    assert result.exit_code == 0 and "acoustic: ???" in result.stdout
    cases = [
        (["serve"], "set it with --acoustic RUN"),
        (["serve", "-a", str(tmp_path / "missing")], "no such checkpoint or run folder"),
        (["serve", "-a", str(checkpoint), "-v", "grifinlim", "device=cpu"], "did you mean griffinlim"),
        (["serve", "-a", str(checkpoint), "stream.crossfade_frames=9", "device=cpu"], "at most"),
        (["serve", "-a", str(checkpoint), "--port", "70000"], "port"),
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        cases.append((["serve", "-a", str(checkpoint), "--port", str(taken.getsockname()[1]),
                       "device=cpu"], "cannot listen on 127.0.0.1"))
        for args, words in cases:
            result = runner.invoke(app, args)
            lines = [ln for ln in result.output.splitlines() if ln.strip()]
            assert result.exit_code == 2 and len(lines) == 1, result.output
            assert lines[0].startswith("error:") and words in lines[0], result.output
