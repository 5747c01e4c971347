"""The server's Prometheus metrics, written in the text exposition format (version 0.0.4).

A handful of counters, gauges and histograms, kept here rather than through a client library:
the format is a few lines of text, and the engine thread and the event loop both update them
under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# Latency buckets in seconds: from a first chunk on a fast machine to a long text on a slow one.
BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{v}"'.replace("\n", " ") for k, v in pairs)
    return "{" + inner + "}"


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append(f"{name}_bucket{_labels((*labels, ('le', bound)))} {running}")
        out.append(f"{name}_sum{_labels(labels)} {self.total:.6f}")
        out.append(f"{name}_count{_labels(labels)} {self.n}")
        return out


class Metrics:
    """Counters and histograms keyed by label values; gauges read when scraped."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]):
        self._lock = threading.Lock()
        self.requests: dict[tuple[tuple[str, str], ...], int] = {}
        self.latency: dict[tuple[tuple[str, str], ...], _Histogram] = {}
        self.first_audio = _Histogram()
        self.audio_seconds = 0.0
        self.cancelled: dict[str, int] = {}
        self.gauges = gauges  # name -> (help, read)

    def request(self, endpoint: str, status: int, seconds: float | None) -> None:
        """Count a request; ``seconds`` None for one refused before any work (not timed)."""
        with self._lock:
            key = (("endpoint", endpoint), ("status", str(status)))
            self.requests[key] = self.requests.get(key, 0) + 1
            if seconds is not None:
                self.latency.setdefault((("endpoint", endpoint),), _Histogram()).observe(seconds)

    def answered(self) -> int:
        """Speech requests answered so far, whatever their status."""
        with self._lock:
            return sum(self.requests.values())

    def first_chunk(self, seconds: float) -> None:
        with self._lock:
            self.first_audio.observe(seconds)

    def audio(self, seconds: float) -> None:
        with self._lock:
            self.audio_seconds += seconds

    def cancel(self, reason: str) -> None:
        with self._lock:
            self.cancelled[reason] = self.cancelled.get(reason, 0) + 1

    def render(self) -> str:
        with self._lock:
            return "\n".join(self._lines()) + "\n"

    def _lines(self) -> list[str]:
        out = ["# HELP neurotts_requests_total HTTP requests answered, by endpoint and status.",
               "# TYPE neurotts_requests_total counter"]
        out += [f"neurotts_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items())]
        out += ["# HELP neurotts_request_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE neurotts_request_errors_total counter"]
        out += [f"neurotts_request_errors_total{_labels(k)} {v}"
                for k, v in sorted(self.requests.items()) if int(k[1][1]) >= 400]
        out += ["# HELP neurotts_request_duration_seconds Time from request to its last byte.",
                "# TYPE neurotts_request_duration_seconds histogram"]
        for k, h in sorted(self.latency.items()):
            out += h.lines("neurotts_request_duration_seconds", k)
        out += ["# HELP neurotts_time_to_first_audio_seconds Time from request to its first audio.",
                "# TYPE neurotts_time_to_first_audio_seconds histogram"]
        out += self.first_audio.lines("neurotts_time_to_first_audio_seconds", ())
        out += ["# HELP neurotts_audio_seconds_total Seconds of audio sent.",
                "# TYPE neurotts_audio_seconds_total counter",
                f"neurotts_audio_seconds_total {self.audio_seconds:.3f}",
                "# HELP neurotts_cancelled_total Requests whose work was stopped, by reason.",
                "# TYPE neurotts_cancelled_total counter"]
        out += [f'neurotts_cancelled_total{{reason="{k}"}} {v}' for k, v in sorted(self.cancelled.items())]
        for name, (help_text, read) in self.gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return out
