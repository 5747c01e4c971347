"""``neurotts export``: ONNX graphs that reproduce torch for every attention type, and the
one-line errors of the export and of the runtime on a bad voice folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from neurotts.cli import app  # noqa: E402
from neurotts.config import load_config  # noqa: E402
from neurotts.export.config import ExportConfig  # noqa: E402
from neurotts.export.reference import infer_with_masks  # noqa: E402
from neurotts.export.run import check_parity, load_acoustic, run  # noqa: E402
from neurotts.runtime.__main__ import main as runtime_main  # noqa: E402
from neurotts.runtime.acoustic import Acoustic  # noqa: E402
from neurotts.runtime.voice import read_voice  # noqa: E402
from tests.export_helpers import SEED, TEXTS, encode, make_checkpoint, masks_for  # noqa: E402

runner = CliRunner()
pytestmark = pytest.mark.slow  # three exports and their torch references, ~2 minutes on 2 cores
ATTENTION = ("location", "dca", "multihead")


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """attention type -> (checkpoint, exported voice folder), exported through ``run``."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for attention in ATTENTION:
        checkpoint = make_checkpoint(root, attention)
        cfg = load_config("export", ExportConfig, [f"acoustic={checkpoint}", f"out={root / attention}"])
        out[attention] = (checkpoint, run(cfg, Console(stderr=True)))
    return out


@pytest.mark.parametrize("attention", ATTENTION)
def test_graphs_reproduce_torch_on_the_same_masks(voices, attention):
    checkpoint, folder = voices[attention]
    model = load_acoustic(str(checkpoint)).model
    parity = check_parity(folder, model, encode(TEXTS), SEED)
    print(f"{attention}: mel max abs {parity.mel_max_abs:.2e}, lengths {parity.lengths}")
    assert parity.same_stop
    assert parity.mel_max_abs <= 1e-4
    # The batch exercises the stop token: items end on different frames, none at the guard.
    assert not any(parity.hit_max) and len(set(parity.lengths)) > 1
    # Another batch size and text length than the graphs were traced with.
    single = check_parity(folder, model, encode(TEXTS[1:2]), SEED + 1)
    assert single.same_stop and single.mel_max_abs <= 1e-4


@pytest.mark.parametrize("attention", ["location", "dca"])
def test_length_guard_matches_torch(voices, attention):
    """A threshold no probability passes: every item runs to its own guard, in both."""
    checkpoint, folder = voices[attention]
    model = load_acoustic(str(checkpoint)).model
    model.inference_cfg.stop_threshold = 2.0
    acoustic = Acoustic(read_voice(folder))
    acoustic.settings = replace(acoustic.settings, stop_threshold=2.0)
    ids = encode(TEXTS)
    masks = masks_for(model, len(ids))
    ours = acoustic.decode(ids, masks)
    with pytest.warns(RuntimeWarning, match="max decoder steps"):
        theirs = infer_with_masks(model, ids, masks)
    assert ours.hit_max.all() and theirs.hit_max.all()
    assert ours.lengths.tolist() == theirs.mel_lengths.tolist()
    assert len(set(ours.lengths.tolist())) == len(ids)  # the guard scales with the text
    for i, n in enumerate(ours.lengths):
        assert np.abs(ours.mels[i, :n] - theirs.mels[i, :n].numpy()).max() <= 1e-4


def test_voice_file_describes_the_voice(voices):
    checkpoint, folder = voices["multihead"]
    doc = json.loads((folder / "voice.json").read_text())
    assert doc["format"] == "neurotts-voice" and doc["version"] == 1
    assert doc["acoustic"]["attention"] == "multihead" and doc["acoustic"]["reduction_factor"] == 2
    assert doc["audio"]["sample_rate"] == 22050 and len(doc["mel_norm"]["mean"]) == 80
    assert doc["speakers"] is None and doc["text"]["symbols"][0] == "_"
    assert doc["text"]["symbol_set"] == "characters" and doc["text"]["language"] is None
    voice_ids = {json.loads((voices[a][1] / "voice.json").read_text())["voice_id"] for a in ATTENTION}
    assert len(voice_ids) == len(ATTENTION)


def test_cli_export_then_runtime_speaks(voices, tmp_path):
    checkpoint, _ = voices["location"]
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "voice"),
                                 "check.enabled=false"])
    assert result.exit_code == 0, result.output
    wavs = []
    for name in ("a.wav", "b.wav"):
        code = runtime_main([str(tmp_path / "voice"), "Hello there. How are you today?",
                             "-o", str(tmp_path / name), "--seed", "3"])
        assert code == 0
        wavs.append((tmp_path / name).read_bytes())
    assert wavs[0] == wavs[1] and len(wavs[0]) > 44  # a seed gives the same audio


def test_runtime_speaks_without_torch(voices, tmp_path):
    """A fresh interpreter speaks with the runtime's CLI and has loaded no torch (nor onnx)."""
    code = ("import sys\n"
            "from neurotts.runtime.__main__ import main\n"
            "status = main(sys.argv[1:])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio', 'onnx'))\n"
            "print(bad)\n"
            "sys.exit(status or (1 if bad else 0))\n")
    done = subprocess.run([sys.executable, "-c", code, str(voices["dca"][1]),
                           "One sentence. And another one.", "-o", str(tmp_path / "x.wav")],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[]" and (tmp_path / "x.wav").stat().st_size > 44


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def copy_of(voices, tmp_path):
    def make(attention: str) -> Path:
        return Path(shutil.copytree(voices[attention][1], tmp_path / attention))
    return make


def test_runtime_refuses_a_folder_missing_a_graph(copy_of, tmp_path, capsys):
    folder = copy_of("location")
    (folder / "postnet.onnx").unlink()
    assert runtime_main([str(folder), "Hi.", "-o", str(tmp_path / "x.wav")]) == 2
    assert "missing graph postnet.onnx" in one_line(capsys)


def test_runtime_refuses_another_format_version(copy_of, tmp_path, capsys):
    folder = copy_of("location")
    doc = json.loads((folder / "voice.json").read_text())
    (folder / "voice.json").write_text(json.dumps({**doc, "version": 2}))
    assert runtime_main([str(folder), "Hi.", "-o", str(tmp_path / "x.wav")]) == 2
    assert "voice format version 2" in one_line(capsys)


def test_runtime_refuses_graphs_of_different_voices(copy_of, voices, tmp_path, capsys):
    folder = copy_of("location")
    shutil.copy(voices["dca"][1] / "encoder.onnx", folder / "encoder.onnx")
    assert runtime_main([str(folder), "Hi.", "-o", str(tmp_path / "x.wav")]) == 2
    assert "graphs of different exports mixed" in one_line(capsys)


def test_export_errors_are_one_line(voices, tmp_path):
    checkpoint, _ = voices["location"]
    cases = [([str(tmp_path / "nope"), "--out", str(tmp_path / "v")], "no such checkpoint"),
             ([str(checkpoint), "-v", str(tmp_path), "--out", str(tmp_path / "v")],
              "only griffinlim is exported")]
    for args, message in cases:
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_runtime_refuses_a_damaged_graph(copy_of, tmp_path, capsys):
    folder = copy_of("dca")
    (folder / "decoder_step.onnx").write_bytes(b"not a graph")
    assert runtime_main([str(folder), "Hi.", "-o", str(tmp_path / "x.wav")]) == 2
    assert "decoder_step.onnx: unreadable graph" in one_line(capsys)
