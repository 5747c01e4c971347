"""``neurotts synth`` and ``neurotts eval`` end to end, on tiny checkpoints trained here."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.data.toy import make_toy_corpus
from tests.conftest import SAMPLE, requires_sample

runner = CliRunner()
pytestmark = pytest.mark.slow

# Untrained-ish models rarely emit a stop token: keep the length guard short so the tests
# synthesise seconds, not minutes, of audio.
SHORT_GUARD = ["model.inference.max_frames_per_symbol=1.5", "model.inference.max_frames_offset=8"]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 12-clip store, a tiny Tacotron 2 and a tiny WaveNet trained a few steps on it."""
    root = tmp_path_factory.mktemp("e2e")
    if (SAMPLE / "metadata.csv").is_file():
        corpus = root / "corpus"
        (corpus / "wavs").mkdir(parents=True)
        rows = (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()[:12]
        for row in rows:
            uid = row.split("|", 1)[0]
            shutil.copy(SAMPLE / "wavs" / f"{uid}.wav", corpus / "wavs")
        (corpus / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    else:  # no LJSpeech sample beside the checkout: the project's own synthetic corpus
        corpus = make_toy_corpus(root / "corpus", n_utterances=12)
    store = root / "store"
    result = invoke("prepare", f"data.root={corpus}", f"out={store}", "data.split.val_size=2",
                    "data.split.test_size=2")
    assert result.exit_code == 0, result.output
    out = {"store": store, "tts": root / "tts", "voc": root / "voc", "tts_dca": root / "tts_dca"}
    result = invoke("train", "model=tacotron2", "experiment=tiny", f"data.features={store}",
                    f"run.dir={out['tts']}", "trainer.max_steps=6", "trainer.val_every=6",
                    "trainer.checkpoint_every=6", *SHORT_GUARD)
    assert result.exit_code == 0, result.output
    result = invoke("train", "model=tacotron2", "experiment=tiny", f"data.features={store}",
                    f"run.dir={out['tts_dca']}", "trainer.max_steps=4", "trainer.val_every=4",
                    "trainer.checkpoint_every=4", "model.attention.type=dca", *SHORT_GUARD)
    assert result.exit_code == 0, result.output
    result = invoke("train", "model=wavenet", "experiment=tiny", f"data.features={store}",
                    f"run.dir={out['voc']}", "trainer.max_steps=6", "trainer.val_every=6",
                    "trainer.checkpoint_every=6")
    assert result.exit_code == 0, result.output
    return out


def test_synth_griffinlim_writes_a_wav(runs, tmp_path):
    wav = tmp_path / "hello.wav"
    result = invoke("synth", "Hello there. A second sentence follows.", "--acoustic", str(runs["tts"]),
                    "-o", str(wav), "--device", "cpu")
    assert result.exit_code == 0, result.output
    data, sr = sf.read(wav)
    assert sr == 22050 and data.ndim == 1 and data.size > 0
    assert "real-time factor" in result.output and str(wav) in result.output


def test_synth_wavenet_and_input_file(runs, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("First line.\n\nSecond line here.\n", encoding="utf-8")
    result = invoke("synth", "--input", str(lines), "--acoustic", str(runs["tts"]),
                    "--vocoder", str(runs["voc"]), "-o", str(tmp_path / "out"), "batch_size=2")
    assert result.exit_code == 0, result.output
    wavs = sorted((tmp_path / "out").glob("*.wav"))
    assert [w.name for w in wavs] == ["001.wav", "002.wav"]
    for w in wavs:
        info = sf.info(w)
        assert info.samplerate == 22050 and info.frames > 0


def test_long_input_is_split_and_joined(runs, tmp_path):
    text = " ".join(f"Sentence number {i} is here." for i in range(6))
    wav = tmp_path / "long.wav"
    result = invoke("synth", text, "--acoustic", str(runs["tts"]), "-o", str(wav), "max_chars=40")
    assert result.exit_code == 0, result.output
    whole = tmp_path / "whole.wav"
    result = invoke("synth", text, "--acoustic", str(runs["tts"]), "-o", str(whole), "max_chars=null")
    assert result.exit_code == 0, result.output
    # six pieces, each with its own length guard, joined by pauses: longer than one guard
    assert sf.info(wav).frames > sf.info(whole).frames


def wrong_audio_vocoder(runs, tmp_path) -> Path:
    """A copy of the vocoder checkpoint that claims another hop length."""
    ckpt = sorted((runs["voc"] / "checkpoints").glob("step_*.pt"))[-1]
    payload = torch.load(ckpt, weights_only=True)
    payload["audio"]["hop_length"] = 300
    bad = tmp_path / "bad_voc.pt"
    torch.save(payload, bad)
    return bad


@pytest.mark.parametrize("case", ["empty", "unspeakable", "unreadable", "wrong_kind",
                                  "mismatch", "no_acoustic", "bad_device"])
def test_synth_bad_input_is_one_line(runs, tmp_path, case):
    acoustic, vocoder, args = str(runs["tts"]), "griffinlim", ["Fine text."]
    if case == "empty":
        args = ["   "]
    elif case == "unspeakable":
        args = ["?! ... \u2014 ()"]
    elif case == "unreadable":
        args = ["--input", str(tmp_path / "missing.txt")]
    elif case == "wrong_kind":
        acoustic = str(runs["voc"])
    elif case == "mismatch":
        vocoder = str(wrong_audio_vocoder(runs, tmp_path))
    elif case == "no_acoustic":
        acoustic = ""
    elif case == "bad_device":
        args += ["--device", "tpu:7"]
    result = invoke("synth", *args, "--acoustic", acoustic, "--vocoder", vocoder,
                    "-o", str(tmp_path / "x.wav"))
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert not (tmp_path / "x.wav").exists()


def test_synth_warns_about_unknown_characters(runs, tmp_path):
    result = invoke("synth", "Hello <world> ^_^", "--acoustic", str(runs["tts"]), "-o",
                    str(tmp_path / "w.wav"))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output


def test_eval_on_the_test_split(runs, tmp_path):
    out = tmp_path / "report"
    result = invoke("eval", "--acoustic", str(runs["tts"]), "--vocoder", "griffinlim",
                    f"data.features={runs['store']}", f"out={out}", "limit=2", "device=cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert summary["n_utterances"] == 2 and len(report["utterances"]) == 2
    for key in ("focus", "monotonicity", "coverage", "wer_synth", "cer_synth", "wer_reference",
                "cer_reference"):
        assert summary["mean"][key] is not None, key
    for row in report["utterances"]:
        # a barely trained model may stop after a frame; then the note must say why
        for key in ("mcd_db", "log_f0_rmse_cents", "vuv_error", "duration_ratio"):
            assert key in row
        assert math.isfinite(row["mcd_db"]) or row["metrics_note"]
    assert set(summary["failures"]) == {"max_steps", "early_stop", "skip", "repeat"}
    assert summary["rtf"]["total"] > 0
    if (SAMPLE / "metadata.csv").is_file():
        assert summary["asr"]["reference"]["wer"] < 1.0  # real speech is recognised
    assert (out / "report.md").read_text().startswith("# neurotts eval")
    assert (out / "alignments.png").is_file() and list(out.glob("mel_*.png"))
    assert len(list((out / "wavs").glob("*.wav"))) == 2


def test_eval_long_form_passages(runs, tmp_path):
    out = tmp_path / "long"
    result = invoke("eval", "--acoustic", str(runs["tts"]), "texts=long", f"out={out}",
                    "asr=false", "limit=2")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["texts"] == "long" and summary["n_utterances"] == 2
    assert summary["mean"]["mcd_db"] is None  # no recordings for these
    assert summary["attention"] in ("location", "dca", "multihead")


def test_eval_errors(runs, tmp_path):
    result = invoke("eval", "--acoustic", str(runs["tts"]), f"out={tmp_path / 'r'}")
    assert result.exit_code == 2 and "data.features" in result.output
    result = invoke("eval", "--acoustic", str(runs["tts"]), f"texts={tmp_path / 'none.txt'}",
                    f"out={tmp_path / 'r'}")
    assert result.exit_code == 2 and "cannot read" in result.output


@requires_sample
def test_acoustic_metrics_of_a_resynthesis(runs):
    """The eval metrics on real speech vs its Griffin-Lim resynthesis: finite and small."""
    import numpy as np

    from neurotts.data.store import FeatureStore
    from neurotts.evaluation.run import acoustic_metrics
    from neurotts.vocoders import GriffinLimVocoder

    store = FeatureStore(runs["store"])
    u = store.split("test")[0]
    ref = store.audio_float(u.id)
    syn = GriffinLimVocoder(store.audio, n_iter=32)(torch.from_numpy(store.mel(u.id))[None])[0].numpy()
    row = acoustic_metrics(ref, syn.astype(np.float32), store.audio.sample_rate)
    assert "metrics_note" not in row
    assert 0 <= row["mcd_db"] < 3.0 and abs(row["duration_ratio"] - 1) < 0.05
    assert row["vuv_error"] < 0.2 and row["log_f0_rmse_cents"] < 150


def test_eval_compares_attention_types_on_long_passages(runs, tmp_path):
    out = tmp_path / "cmp"
    result = invoke("eval", "--acoustic", str(runs["tts"]), "--acoustic", str(runs["tts_dca"]),
                    "texts=long", f"out={out}", "asr=false", "limit=2")
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "comparison.json").read_text())
    models = comparison["models"]
    assert [m["attention"] for m in models] == ["location", "dca"]
    for m in models:
        assert m["n_utterances"] == 2
        assert set(m["failures"]) == {"max_steps", "early_stop", "skip", "repeat"}
        assert 0 <= m["failed_utterances"] <= 2
        assert (out / m["name"] / "report.json").is_file()
    table = (out / "comparison.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| 0")]
    assert len(rows) == 2 and "| location |" in rows[0] and "| dca |" in rows[1]


def test_eval_quotes_awkward_paths(runs, tmp_path):
    odd = tmp_path / "it's a run, [odd]=name"
    shutil.copytree(runs["tts"], odd)
    result = invoke("eval", "--acoustic", str(odd), "texts=long", f"out={tmp_path / 'o'}",
                    "asr=false", "limit=1")
    assert result.exit_code == 0, result.output
