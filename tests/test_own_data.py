"""Your own voice in your own language: every corpus format and IPA languages through the chain.

- The LJSpeech sample re-laid as each format prepares to the same features (mels equal).
- A 48 kHz stereo flac corpus is resampled and downmixed, and the summary says so.
- A short corpus in German, Spanish and French, spoken at test time by eSpeak NG (the library
  the espeakng-loader wheel bundles), goes prepare (text=ipa) -> train (tiny) -> synth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurotts.audio import resample
from neurotts.cli import app
from neurotts.data.store import FeatureStore
from tests.conftest import SAMPLE, requires_sample
from tests.layouts import lj_rows, relay

runner = CliRunner()
pytestmark = pytest.mark.slow
N_CLIPS = 8
SIZES = ["data.split.val_size=1", "data.split.test_size=1"]


def prepare(root: Path, out: Path, *extra: str) -> str:
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES, *extra])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def lj_store(tmp_path_factory) -> Path:
    root = relay(SAMPLE, tmp_path_factory.mktemp("lj") / "corpus", "ljspeech", N_CLIPS)
    out = root.parent / "store"
    prepare(root, out)
    return out


@requires_sample
@pytest.mark.parametrize("fmt", ["piper", "coqui", "manifest", "folder"])
def test_each_format_gives_the_ljspeech_features(lj_store, tmp_path, fmt):
    root = relay(SAMPLE, tmp_path / "corpus", fmt, N_CLIPS)
    out = tmp_path / "store"
    output = prepare(root, out)
    assert f"read as {'a ' if fmt in ('manifest', 'folder') else ''}" in output
    ref, got = FeatureStore(lj_store), FeatureStore(out)
    assert [u.id for u in got.utterances] == [u.id for u in ref.utterances]
    for u in ref.utterances:
        assert got[u.id].ids == u.ids and got[u.id].split == u.split
        np.testing.assert_array_equal(got.mel(u.id), ref.mel(u.id))
    speakers = {u.speaker for u in got.utterances}
    assert speakers == ({None} if fmt == "folder" else {"lj"})
    if fmt != "folder":
        assert "speakers: 1 (lj)" in output


@requires_sample
def test_48k_stereo_flac_corpus_is_converted(lj_store, tmp_path):
    root = tmp_path / "flac"
    (root / "wavs").mkdir(parents=True)
    rows = lj_rows(SAMPLE, N_CLIPS)
    for rid, _ in rows:
        wav, sr = sf.read(SAMPLE / "wavs" / f"{rid}.wav", dtype="float32")
        up = resample(wav, sr, 48000)
        sf.write(root / "wavs" / f"{rid}.flac", np.stack([up, up], axis=1), 48000, subtype="PCM_24")
    (root / "metadata.csv").write_text("".join(f"{r}|{t}|{t}\n" for r, t in rows), encoding="utf-8")
    out = tmp_path / "store"
    output = prepare(root, out)
    assert f"audio: {N_CLIPS} of {N_CLIPS} clips converted to 22.05 kHz mono: {N_CLIPS} from flac 48 kHz stereo" in output
    ref, got = FeatureStore(lj_store), FeatureStore(out)
    for u in ref.utterances:
        a, b = ref.mel(u.id), got.mel(u.id)
        n = min(len(a), len(b))
        assert abs(len(a) - len(b)) <= 2  # trimming may move by a hop after resampling twice
        # Band-limited resampling there and back changes the log-mel by little where it is loud.
        loud = a[:n] > a[:n].max() - 6
        assert np.median(np.abs(a[:n][loud] - b[:n][loud])) < 0.1


def test_mixed_rates_and_formats_are_one_summary_line(make_corpus, tmp_path):
    root = make_corpus({f"M{k}": "A short clip of speech." for k in range(6)}, seconds=0.6)
    wav, sr = sf.read(root / "wavs" / "M0.wav", dtype="float32")
    (root / "wavs" / "M1.wav").unlink()
    sf.write(root / "wavs" / "M1.ogg", resample(wav, sr, 16000), 16000, format="OGG", subtype="VORBIS")
    sf.write(root / "wavs" / "M2.mp3", np.stack([wav, wav], 1), sr, format="MP3", subtype="MPEG_LAYER_III")
    (root / "wavs" / "M2.wav").unlink()
    output = prepare(root, tmp_path / "store")
    line = next(ln for ln in output.splitlines() if "converted" in ln)
    assert "2 of 6 clips converted to 22.05 kHz mono" in line
    assert "1 from ogg 16 kHz mono" in line and "1 from mp3 22.05 kHz stereo" in line


def test_a_store_made_before_text_language_still_resumes(make_corpus, tmp_path):
    root = make_corpus({f"R{k}": "Some words here." for k in range(4)}, seconds=0.5)
    out = tmp_path / "store"
    prepare(root, out)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("  language: null\n", ""))
    assert "language" not in config.read_text()
    assert "4 already done" in prepare(root, out)


def test_folder_without_transcripts_is_one_line(tmp_path):
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.wav", np.zeros(2205, np.float32), 22050)
    result = runner.invoke(app, ["prepare", f"data.root={tmp_path / 'clips'}", f"out={tmp_path / 's'}"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "no transcript beside any" in result.output


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict[str, Path]:
    from neurotts.data.spoken import write_spoken_corpus

    base = tmp_path_factory.mktemp("spoken")
    return {lang: write_spoken_corpus(base / lang, lang) for lang in ("de", "es", "fr")}


@pytest.mark.parametrize("lang", ["de", "es", "fr"])
def test_ipa_language_prepare_train_synth(spoken, tmp_path, lang):
    out = tmp_path / "store"
    output = prepare(spoken[lang], out, "text=ipa", f"text.language={lang}")
    store = FeatureStore(out)
    assert store.text.symbol_set == "ipa" and store.text.language == lang
    assert len(store.utterances) == 12
    symbols = json.loads((out / "symbols.json").read_text(encoding="utf-8"))["symbols"]
    used = {s for u in store.utterances for s in store_symbols(store, u.ids)}
    assert set(symbols[3:]) == used - {"~", " "}  # the table is the corpus's own, nothing more
    assert "ˈ" in symbols and not (out / "oov.tsv").exists()
    assert not any(c.isdigit() for u in store.utterances for c in u.normalized)  # numbers read out
    assert "read as ID|text (LJSpeech's and Piper's single-speaker layout)" in output
    run = tmp_path / "tts"
    result = runner.invoke(app, ["train", "model=tacotron2", "experiment=tiny", f"data.features={out}",
                                 f"run.dir={run}", "trainer.max_steps=3", "trainer.val_every=3",
                                 "trainer.checkpoint_every=3", "model.inference.max_frames_per_symbol=1.5",
                                 "model.inference.max_frames_offset=8"])
    assert result.exit_code == 0, result.output
    wav = tmp_path / "out.wav"
    sentence = {"de": "Guten Morgen, 2 Kinder.", "es": "Buenos días, 2 niños.",
                "fr": "Bonjour, 2 enfants."}[lang]
    result = runner.invoke(app, ["synth", sentence, "--acoustic", str(run), "-o", str(wav), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data, sr = sf.read(wav)
    assert sr == 22050 and data.size > 0
    result = runner.invoke(app, ["eval", "--acoustic", str(run), "--vocoder", "griffinlim",
                                 f"data.features={out}", f"out={tmp_path / 'report'}", "limit=1",
                                 "device=cpu"])
    assert result.exit_code == 0, result.output
    assert f"ASR skipped: the recogniser's model is English (text.language={lang})" in result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["summary"]["n_utterances"] == 1
    # An exported voice carries the language: the torch-free runtime phonemises like synth.
    pytest.importorskip("onnxruntime")
    from neurotts.runtime.__main__ import main as runtime_main

    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "voice"),
                                 "check.enabled=false"])
    assert result.exit_code == 0, result.output
    voice = json.loads((tmp_path / "voice" / "voice.json").read_text())
    assert voice["text"]["symbol_set"] == "ipa" and voice["text"]["language"] == lang
    assert runtime_main([str(tmp_path / "voice"), sentence, "-o", str(tmp_path / "rt.wav")]) == 0
    assert sf.info(str(tmp_path / "rt.wav")).frames > 0


def store_symbols(store: FeatureStore, ids: list[int]) -> list[str]:
    return [store.symbols[i] for i in ids]


def test_unknown_language_is_one_line(spoken, tmp_path):
    result = runner.invoke(app, ["prepare", f"data.root={spoken['de']}", f"out={tmp_path / 's'}",
                                 "text=ipa", "text.language=xx"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "unknown language 'xx'; eSpeak NG speaks: af," in result.output


def test_audit_reads_other_formats_and_skips_the_english_transcript_check(spoken, tmp_path):
    result = runner.invoke(app, ["audit", f"data.root={spoken['es']}", f"out={tmp_path / 'a'}",
                                 "text=ipa", "text.language=es", "num_workers=1"])
    assert result.exit_code == 0, result.output
    skipped = [ln for ln in result.output.splitlines() if "transcript check skipped" in ln]
    assert skipped == ["transcript check skipped: the recogniser's model is English (text.language=es)"]
    records = [json.loads(ln) for ln in (tmp_path / "a" / ".progress.jsonl").read_text().splitlines()]
    assert {r["id"] for r in records} == {f"es-{k:04d}" for k in range(1, 13)}
    assert all(r["ok"] and r["n_symbols"] > 5 and r["where"].startswith("metadata.csv:") for r in records)
