"""``neurotts serve`` on loopback: time to first audio, throughput under concurrency, memory.

The voice is an untrained ~2M-parameter Tacotron 2 (encoder 128, attention and decoder LSTMs
256, attention dim 64, prenet 128x2, postnet 128x5, r=2) with Griffin-Lim (32 iterations).
Its stop token is switched off and every sentence runs to a length guard of
``--frames-per-symbol`` mel frames per symbol (6: about LJSpeech's speaking rate), so the
amount of audio per text is fixed and realistic whatever the random weights say.

The server runs as its own process (``neurotts serve --port 0``, 127.0.0.1 only) with
``--threads`` torch threads; the clients are threads of this process. Measured:

* time to first audio (p50, p95 over ``--repeats`` requests) for a one-sentence and a
  five-sentence text, streamed (first PCM byte) and whole (``stream: false``: the answer is
  the first audio);
* throughput, seconds of audio per wall second, with 1, 4 and 16 concurrent clients over the
  same ``--texts`` texts, and the same texts synthesised one after another in this process
  through the synthesis module (the path of ``neurotts synth``, batch 1) as the baseline;
* resident memory of the server process after 10 and after ``--memory-requests`` requests.

Prints one JSON line last, with the targets of issue 22 checked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurotts.serve.voice import (  # noqa: E402
    VocoderConfig,
    load_voice,
    sequential_synthesis,
    untrained_checkpoint,
)

MODEL = ["encoder.embedding_dim=128", "encoder.conv_channels=128", "encoder.lstm_dim=128",
         "decoder.prenet_dims=[128,128]", "decoder.attention_rnn_dim=256",
         "decoder.decoder_rnn_dim=256", "attention.dim=64", "postnet.channels=128",
         "postnet.layers=5", "reduction_factor=2", "inference.stop_threshold=0.999",
         "inference.max_frames_offset=0"]
SENTENCES = [
    "The committee met on a grey morning to read the report.",
    "Nobody in the room expected the numbers to be so clear.",
    "She closed the window and the street noise faded away.",
    "A long train crossed the valley without slowing down.",
    "The old clock in the hall struck nine as they left.",
    "He wrote the answer on a card and passed it along.",
    "Rain had fallen all night, and the river was high.",
    "They walked to the station and waited for the bus.",
    "Every page of the ledger had been signed in blue ink.",
    "The garden behind the house was full of late roses.",
    "A small boat drifted slowly toward the far shore.",
    "The lecture ended with a question nobody could answer.",
    "Light from the lamp fell across the open letter.",
    "The market opened early and the stalls filled fast.",
    "Two witnesses gave the same account of the evening.",
    "The bridge was closed for repairs until the spring.",
]
FIVE = " ".join(SENTENCES[:5])


def post(port: int, body: dict) -> tuple[int, float, float, int]:
    """(status, seconds to the first body byte, seconds to the last, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first, size = None, 0
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        size += len(piece)
        if first is None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    conn.close()
    return resp.status, first if first is not None else total, total, size


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50": round(statistics.median(values), 4),
            "p95": round(values[min(len(values) - 1, round(0.95 * (len(values) - 1)))], 4)}


def first_audio(port: int, repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, text in (("one_sentence", SENTENCES[5]), ("five_sentences", FIVE)):
        streamed = [post(port, {"input": text, "response_format": "pcm"})[1] for _ in range(repeats)]
        whole = [post(port, {"input": text, "response_format": "wav", "stream": False})[2]
                 for _ in range(repeats)]
        out[name] = {"streamed": percentiles(streamed), "whole": percentiles(whole)}
    return out


def concurrent(port: int, texts: list[str], clients: int, failures: list[int]) -> tuple[float, float]:
    """``texts`` spoken by ``clients`` clients at once (each takes the next text when done);
    returns (seconds of audio, wall seconds)."""
    todo = list(reversed(texts))
    lock = threading.Lock()
    audio = [0.0]

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                text = todo.pop()
            status, _, _, size = post(port, {"input": text, "response_format": "pcm"})
            with lock:
                audio[0] += size / 2 / 22050
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return audio[0], time.perf_counter() - t0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and the baseline")
    parser.add_argument("--frames-per-symbol", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=8, help="requests per first-audio measurement")
    parser.add_argument("--texts", type=int, default=16, help="texts per throughput run (<= 16)")
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=1500, help="seconds; the run stops past it")
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    checkpoint = folder / "tts.pt"
    params = untrained_checkpoint(checkpoint, [*MODEL, f"inference.max_frames_per_symbol={args.frames_per_symbol}"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurotts.cli", "serve", "-a", str(checkpoint), "--port", "0",
         "device=cpu", f"threads={args.threads}", "limits.queue_size=64", "limits.max_batch=16",
         "stream.griffin_lim_iters=32"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
        if not found:
            raise SystemExit("the server did not start")
        port = int(found[1])
        result = run(port, proc.pid, args, started, checkpoint)
        result["parameters"] = params
        print(json.dumps(result))
    finally:
        proc.terminate()
        proc.wait(60)


def run(port: int, pid: int, args: argparse.Namespace, started: float, checkpoint: Path) -> dict:
    def check_time() -> None:
        if time.monotonic() - started > args.time_limit:
            raise SystemExit(f"over the time limit of {args.time_limit} s")

    failures: list[int] = []
    post(port, {"input": "Warm up.", "response_format": "pcm"})
    ttfa = first_audio(port, args.repeats)
    check_time()
    texts = SENTENCES[: args.texts]
    throughput = {}
    voice = load_voice("bench", checkpoint, VocoderConfig(path="griffinlim", fold="auto",
                                                          overlap_ms=10.0, fade="adaptive",
                                                          precision="fp32"), "cpu", 32)
    # The baseline before and after the server runs (the machine's load drifts): both reported,
    # their mean compared.
    baseline = [sequential_synthesis(voice, texts, max_chars=200)]
    for clients in (1, 4, 16):
        audio, wall = concurrent(port, texts, clients, failures)
        throughput[f"clients_{clients}"] = round(audio / wall, 3)
        check_time()
    baseline.append(sequential_synthesis(voice, texts, max_chars=200))
    runs = [audio / wall for audio, wall in baseline]
    throughput["sequential_synthesis"] = round(sum(runs) / 2, 3)
    throughput["sequential_synthesis_before_after"] = [round(x, 3) for x in runs]
    check_time()
    short = ["Hi there.", "Yes.", "All right then.", "Good morning."]
    concurrent(port, [short[k % 4] for k in range(10)], 1, failures)
    rss_10 = rss_mib(pid)
    concurrent(port, [short[k % 4] for k in range(args.memory_requests - 10)], 16, failures)
    rss_1000 = rss_mib(pid)
    five = ttfa["five_sentences"]
    return {
        "bench": "serve", "threads": args.threads, "time_to_first_audio_s": ttfa,
        "audio_s_per_wall_s": throughput,
        "rss_mib": {"after_10": round(rss_10, 1), f"after_{args.memory_requests}": round(rss_1000, 1)},
        "failed_requests": len(failures),
        "targets": {
            "five_sentence_first_audio_le_quarter_of_whole":
                five["streamed"]["p50"] <= 0.25 * five["whole"]["p50"],
            "sixteen_clients_ge_2x_sequential":
                throughput["clients_16"] >= 2 * throughput["sequential_synthesis"],
            "no_failed_request": not failures,
            "memory_growth_le_10pct": rss_1000 <= 1.10 * rss_10,
        },
        "wall_s": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    main()
