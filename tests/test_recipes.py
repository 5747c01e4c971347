"""The demo chain (shortened) and the recipe script's plumbing, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurotts.data.toy import make_toy_corpus, render

ROOT = Path(__file__).resolve().parents[1]


def env_with_neurotts() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_toy_corpus_is_ljspeech_layout(tmp_path):
    root = make_toy_corpus(tmp_path / "toy", n_utterances=5)
    rows = (root / "metadata.csv").read_text().splitlines()
    assert len(rows) == 5 and all(len(r.split("|")) == 3 for r in rows)
    for row in rows:
        info = sf.info(root / "wavs" / f"{row.split('|')[0]}.wav")
        assert info.samplerate == 22050 and info.channels == 1 and info.frames > 22050 * 0.3


def test_toy_speech_depends_on_the_text():
    a, b = render("ee ee", 22050, 0), render("oo oo", 22050, 0)
    assert a.size == b.size  # same number of letters and pauses
    spec_a = np.abs(np.fft.rfft(a))
    spec_b = np.abs(np.fft.rfft(b))
    # 'e' has its second formant near 1.8 kHz, 'o' near 0.8 kHz
    hz = np.fft.rfftfreq(a.size, 1 / 22050)
    band = lambda s, lo, hi: s[(hz > lo) & (hz < hi)].sum()  # noqa: E731
    assert band(spec_a, 1600, 2100) > 2 * band(spec_b, 1600, 2100)
    assert band(spec_b, 700, 950) > band(spec_a, 700, 950)


@pytest.mark.slow
def test_shortened_demo_chain(tmp_path):
    """`make demo` with a handful of steps on the self-made corpus: every artefact appears."""
    env = env_with_neurotts() | {
        "DEMO_DIR": str(tmp_path / "demo"), "DEMO_TTS_STEPS": "10", "DEMO_VOC_STEPS": "10",
        "DEMO_EVAL": "2", "DEMO_CORPUS": "toy", "DEMO_TOY_UTTERANCES": "30",
    }
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "demo.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    demo = tmp_path / "demo"
    assert sorted(p.name for p in (demo / "wavs" / "griffinlim").glob("*.wav")) == ["001.wav", "002.wav"]
    assert (demo / "wavs" / "wavenet" / "001.wav").is_file()
    assert list((demo / "tacotron2" / "tensorboard").glob("events.out.tfevents.*"))
    report = json.loads((demo / "eval" / "report.json").read_text())["summary"]
    assert report["n_utterances"] == 2 and "rtf" in report and report["asr"]
    assert "eval report:" in proc.stdout
    assert proc.stdout.startswith("neurotts demo: tiny models") and "not make a voice" in proc.stdout


def test_recipe_script_parses_its_options():
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "ljspeech" / "run.sh"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--stop-stage" in proc.stdout
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "ljspeech" / "run.sh"), "--bogus"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


def test_recipe_download_and_prepare_stages(tmp_path):
    """The download and prepare commands of the recipe's stages 0-1, against a local server."""
    from tests.test_download import ArchiveServer, build_archive, sha

    corpus = make_toy_corpus(tmp_path / "src" / "LJSpeech-1.1", n_utterances=12)
    payload = build_archive(corpus)
    env = env_with_neurotts()
    with ArchiveServer(payload) as srv:
        # The recipe takes the official URL from the config; point it at the local server.
        cfg_dir = tmp_path / "cfg" / "data"
        cfg_dir.mkdir(parents=True)
        text = (ROOT / "configs" / "data" / "ljspeech.yaml").read_text()
        text = text.replace("https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2", srv.url)
        text = text.replace("val_size: 100", "val_size: 2").replace("test_size: 500", "test_size: 2")
        text = "\n".join(ln if not ln.startswith("sha256:") else f"sha256: {sha(payload)}"
                         for ln in text.splitlines())
        # A data option of the user's own, selected with data=local.
        (cfg_dir / "local.yaml").write_text(text)
        for args in (["download", "data=local", f"data.download_dir={tmp_path / 'data'}"],
                     ["prepare", "data=local", f"data.root={tmp_path / 'data' / 'LJSpeech-1.1'}",
                      f"out={tmp_path / 'features'}"]):
            proc = subprocess.run(["neurotts", *args, "--config-dir", str(tmp_path / "cfg")],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "features" / "manifest.jsonl").read_text().splitlines()) == 12
