"""``neurotts synth --timestamps``: NAME.vtt and NAME.json beside each wav, on a real
(untrained, fixed-length) checkpoint through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurotts.cli import app
from tests.serve_support import tiny_checkpoint

runner = CliRunner()
FIRST = "First comes a short sentence."
SECOND = "Then another one follows it, with several more words in it."
CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    # Its stop token never fires: every piece runs to the length guard, so a piece's length
    # depends on its symbols only and the same sentence alone has the same length.
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def synth(checkpoint: Path, text: str, out: Path, *extra: str) -> None:
    result = runner.invoke(app, ["synth", text, "-a", str(checkpoint), "-o", str(out),
                                 "device=cpu", "max_chars=40", "pause=0.5", *extra])
    assert result.exit_code == 0, result.output


def read_vtt(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue of a WebVTT file, checking its layout."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n"):].strip("\n").split("\n\n"):
        timing, cue = block.split("\n")
        m = CUE.fullmatch(timing)
        assert m, timing
        v = [int(x) for x in m.groups()]
        cues.append((v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000,
                     v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000, cue))
    return cues


def test_timestamps_beside_the_wav_across_pieces_and_pauses(checkpoint, tmp_path):
    out = tmp_path / "both.wav"
    synth(checkpoint, f"{FIRST} {SECOND}", out, "--timestamps")
    wav, sr = sf.read(out)
    duration = wav.size / sr
    words = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [w["word"] for w in words] == f"{FIRST} {SECOND}".split()
    assert set(words[0]) == {"word", "start", "end"}
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= duration + 1e-3
    # The WebVTT file says the same, one cue per word (a zero-length word gets 1 ms).
    cues = read_vtt(out.with_suffix(".vtt"))
    assert [c[2] for c in cues] == [w["word"] for w in words]
    for (start, end, _), w in zip(cues, words, strict=True):
        assert start == pytest.approx(w["start"], abs=1e-3)
        assert end == pytest.approx(max(w["end"], w["start"] + 0.001), abs=1e-3)
    # The text was split in two pieces: the second piece's words come after the first piece's
    # audio and the pause, i.e. the offsets are added.
    alone = tmp_path / "first.wav"
    synth(checkpoint, FIRST, alone)
    first_s = sf.info(alone).frames / sr
    other = tmp_path / "second.wav"
    synth(checkpoint, SECOND, other)
    assert wav.size == sf.info(alone).frames + int(0.5 * sr) + sf.info(other).frames
    n_first = len(FIRST.split())
    assert all(w["end"] <= first_s + 1e-3 for w in words[:n_first])
    assert words[n_first]["start"] >= first_s + 0.5 - 1e-3
    assert not (tmp_path / "first.json").exists()  # only with --timestamps


def test_existing_timestamp_files_need_force(checkpoint, tmp_path):
    out = tmp_path / "a.wav"
    out.with_suffix(".vtt").write_text("mine")
    result = runner.invoke(app, ["synth", FIRST, "-a", str(checkpoint), "-o", str(out),
                                 "device=cpu", "--timestamps"])
    assert result.exit_code != 0 and "a.vtt exists already" in result.output
    assert out.with_suffix(".vtt").read_text() == "mine" and not out.exists()
    synth(checkpoint, FIRST, out, "--timestamps", "--force")
    assert read_vtt(out.with_suffix(".vtt"))[0][2] == "First"


def test_input_file_gets_timestamps_per_line(checkpoint, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{FIRST}\n\n{SECOND}\n", encoding="utf-8")
    result = runner.invoke(app, ["synth", "--input", str(lines), "-a", str(checkpoint),
                                 "-o", str(tmp_path / "out/"), "device=cpu", "--timestamps"])
    assert result.exit_code == 0, result.output
    for name, text in (("001", FIRST), ("003", SECOND)):
        words = json.loads((tmp_path / "out" / f"{name}.json").read_text(encoding="utf-8"))
        assert [w["word"] for w in words] == text.split()
        assert words[-1]["end"] <= sf.info(tmp_path / "out" / f"{name}.wav").duration + 1e-3
