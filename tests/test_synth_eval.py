"""``neurotts synth`` and ``neurotts eval`` end to end, on tiny checkpoints trained here."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from neurotts.cli import app, hydra_quote
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
    assert [w.name for w in wavs] == ["001.wav", "003.wav"]  # file numbers are line numbers
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
    # The texts are read before any model loads: a bad texts file is named even when the
    # acoustic model would fail too, and nothing is written.
    result = invoke("eval", "--acoustic", str(tmp_path / "no-run"), f"texts={tmp_path / 'none.txt'}",
                    f"out={tmp_path / 'r2'}")
    assert result.exit_code == 2 and "none.txt: cannot read" in result.output
    assert not (tmp_path / "r2").exists()


@requires_sample
def test_acoustic_metrics_of_a_resynthesis(runs):
    """The eval metrics on real speech vs its Griffin-Lim resynthesis: finite and small."""
    import numpy as np

    from neurotts.data.store import FeatureStore
    from neurotts.evaluation.run import acoustic_metrics
    from neurotts.vocoders import GriffinLimModule

    store = FeatureStore(runs["store"])
    u = store.split("test")[0]
    ref = store.audio_float(u.id)
    mel = torch.from_numpy(store.mel(u.id))[None]
    syn = GriffinLimModule(store.audio, n_iter=32)(mel)[0].numpy()
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


def test_eval_shows_awkward_paths_literally(runs, tmp_path):
    """Quotes, commas, = and rich-markup-like brackets in run folders and the report folder."""
    first, second = tmp_path / "it's a run, [odd]=[red]name", tmp_path / "b[/x]c"
    shutil.copytree(runs["tts"], first)
    shutil.copytree(runs["tts"], second)
    out = tmp_path / "o[x]"
    result = invoke("eval", "--acoustic", str(first), "--acoustic", str(second), "texts=long",
                    f"out={hydra_quote(str(out))}", "asr=false", "limit=1")
    assert result.exit_code == 0, result.output
    assert f"eval 01-{first.name} ({first})" in result.output
    assert f"eval 02-{second.name} ({second})" in result.output
    names = [m["name"] for m in json.loads((out / "comparison.json").read_text())["models"]]
    assert names == [f"01-{first.name}", f"02-{second.name}"]


# ------------------------------------------------------------------- hostile input (issues 14, 15)


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: chmod works unless we are root, who can write
    anywhere except on read-only mounts such as /proc/sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):
        return Path("/proc/sys")
    pytest.skip("no read-only folder available to root here")


@pytest.mark.parametrize("case", ["mp3", "existing_folder", "parent_is_file", "read_only", "empty"])
def test_synth_checks_the_output_before_any_model_work(tmp_path, case):
    """The acoustic model does not exist: the error is about -o, so -o was checked first."""
    if case == "mp3":
        out = str(tmp_path / "out.mp3")
    elif case == "existing_folder":
        (tmp_path / "x.wav").mkdir()
        out = str(tmp_path / "x.wav")
    elif case == "parent_is_file":
        (tmp_path / "notes").write_text("a file", encoding="utf-8")
        out = str(tmp_path / "notes" / "sub" / "x.wav")
    elif case == "read_only":
        out = str(read_only_folder(tmp_path) / "new" / "x.wav")
    else:
        out = ""
    result = invoke("synth", "Fine text.", "--acoustic", str(tmp_path / "no-such-run"), "-o", out)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"error: -o {out}:" if out else "error: -o is empty"), line
    assert "checkpoint" not in line
    if case == "mp3":
        assert "only .wav" in line and not (tmp_path / "out.mp3").exists()


def test_synth_output_names_files_and_folders(runs, tmp_path):
    tts = str(runs["tts"])
    lines = tmp_path / "in.txt"
    lines.write_text("One.\n\n   \nFour.\n", encoding="utf-8")
    cases = [  # (arguments, files expected)
        (["Hello.", "-o", str(tmp_path / "a")], [tmp_path / "a" / "001.wav"]),
        (["--input", str(lines), "-o", str(tmp_path / "b.wav")],
         [tmp_path / "b_001.wav", tmp_path / "b_004.wav"]),
        (["Hello.", "-o", f"{tmp_path / 'c.wav'}/"], [tmp_path / "c.wav" / "001.wav"]),
        (["--input", str(lines), "-o", str(tmp_path / "v1.2")],
         [tmp_path / "v1.2" / "001.wav", tmp_path / "v1.2" / "004.wav"]),
    ]
    (tmp_path / "v1.2").mkdir()  # an existing folder whose name has a dot
    for args, expected in cases:
        result = invoke("synth", *args, "--acoustic", tts)
        assert result.exit_code == 0, result.output
        assert all(sf.info(str(p)).frames > 0 for p in expected), (args, result.output)
    assert not (tmp_path / "b.wav").exists()


def test_synth_failing_line_costs_only_that_line(runs, tmp_path):
    lines = tmp_path / "in.txt"
    lines.write_text("First line.\n...\n\nFourth line.\n", encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("synth", "--input", str(lines), "--acoustic", str(runs["tts"]), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert f"error: --input {lines}:2: no speakable symbol" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["001.wav", "004.wav"]
    last = result.output.strip().splitlines()[-1]
    assert last == f"error: --input {lines}: 1 of 3 line(s) failed (line 2); 2 file(s) written"


def test_synth_shows_bracketed_paths_literally(runs, tmp_path):
    tts = str(runs["tts"])
    lines = tmp_path / "in.txt"
    lines.write_text("One.\nTwo.\nThree.\n", encoding="utf-8")
    folder = tmp_path / "p" / "r[/q]"
    result = invoke("synth", "--input", str(lines), "--acoustic", tts, "-o", f"{folder}/")
    assert result.exit_code == 0, result.output
    for name in ("001.wav", "002.wav", "003.wav"):
        assert f"wrote {folder / name} (" in result.output and (folder / name).is_file()
    wav = tmp_path / "p" / "[red]z.wav"
    result = invoke("synth", "Hello.", "--acoustic", tts, "-o", str(wav))
    assert result.exit_code == 0 and f"wrote {wav} (" in result.output, result.output
    bad = tmp_path / "p" / "[x]a[/x].mp3"
    result = invoke("synth", "Hello.", "--acoustic", tts, "-o", str(bad))
    assert result.exit_code == 2 and str(bad) in one_error_line(result)
    missing = tmp_path / "runs[/x]" / "[red]a"
    result = invoke("synth", "Hello.", "--acoustic", str(missing), "-o", str(tmp_path / "y.wav"))
    assert result.exit_code == 2 and str(missing) in one_error_line(result)


def test_synth_interrupted_keeps_the_files_done(runs, tmp_path):
    """A real SIGINT to a real synth process: every file written before it stays whole."""
    lines = tmp_path / "many.txt"
    lines.write_text("".join(f"Line number {i} of the input.\n" for i in range(300)), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurotts.cli", "synth", "--input", str(lines), "--acoustic",
         str(runs["tts"]), "-o", f"{out}/", "--device", "cpu", "batch_size=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "001.wav").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no file written in 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    wavs = sorted(out.glob("*.wav"))
    assert 1 <= len(wavs) < 300 and "interrupted:" in stderr
    for wav in wavs:  # each one complete: readable to its last frame
        data, sr = sf.read(wav)
        assert sr == 22050 and data.size == sf.info(str(wav)).frames > 0


def test_synth_seed_gives_the_same_audio(runs, tmp_path):
    """Prenet dropout and WaveNet sampling are both seeded: same seed, same bytes."""

    def speak(name: str, seed: int) -> bytes:
        wav = tmp_path / f"{name}.wav"
        result = invoke("synth", "A short test sentence.", "--acoustic", str(runs["tts"]),
                        "--vocoder", str(runs["voc"]), "-o", str(wav), "--seed", str(seed),
                        "--device", "cpu")
        assert result.exit_code == 0, result.output
        return wav.read_bytes()

    first, again, other = speak("a", 7), speak("b", 7), speak("c", 8)
    assert first == again
    assert first != other


def test_chunk_batches_are_bounded(runs):
    """However long an input, the models never see more than batch_size pieces at once, and an
    input is handed back as soon as its last piece is done."""
    from neurotts.synthesis.engine import AcousticModel, encode, synthesize
    from neurotts.vocoders import load_vocoder

    device = torch.device("cpu")
    acoustic = AcousticModel.load(runs["tts"], device)
    vocoder = load_vocoder("griffinlim", acoustic.audio, device)
    long_text = " ".join(f"Sentence number {i} is here." for i in range(7))
    texts = ["Short one.", long_text, "Another short one."]
    inputs = [encode(acoustic.frontend, t, max_chars=30) for t in texts]
    assert [len(e.ids) for e in inputs] == [1, 7, 1]
    acoustic_batches: list[int] = []
    vocoder_batches: list[int] = []
    hooks = [
        acoustic.model.encoder.register_forward_hook(
            lambda m, args, out: acoustic_batches.append(out.shape[0])),
        vocoder.module.register_forward_hook(lambda m, args, out: vocoder_batches.append(out.shape[0])),
    ]
    try:
        batches = [[(i, utt) for i, utt in done]
                   for done, _ in synthesize(inputs, acoustic, vocoder, device, batch_size=2, pause_s=0.1)]
    finally:
        for hook in hooks:
            hook.remove()
    assert acoustic_batches == vocoder_batches == [2, 2, 2, 2, 1]
    assert [[i for i, _ in b] for b in batches] == [[0], [], [], [1], [2]]
    long_utt = batches[3][0][1]
    assert len(long_utt.pieces) == 7 and long_utt.wav.size >= 6 * int(0.1 * 22050)


@pytest.mark.parametrize("command,option", [
    ("synth", "batch_size=0"), ("synth", "max_chars=0"), ("synth", "pause=-1"),
    ("synth", "vocoder.temperature=-0.5"), ("synth", "vocoder.temperature=inf"),
    ("synth", "pause=61"),
    ("synth", "seed=-1"), ("eval", "limit=-1"),
    ("eval", "limit=0"), ("eval", "batch_size=0"), ("eval", "plots=-1"), ("eval", "seed=-3"),
])
def test_nonsensical_numbers_are_one_line_errors(tmp_path, command, option):
    """Checked at start-up: the acoustic model does not even exist."""
    missing = str(tmp_path / "no-such-run")
    if command == "synth":
        args = ["synth", "Text.", "--acoustic", missing, "-o", str(tmp_path / "x.wav"), option]
    else:
        args = ["eval", "--acoustic", missing, "texts=long", f"out={tmp_path / 'r'}", option]
    result = invoke(*args)
    assert result.exit_code == 2
    assert option.split("=")[0] in one_error_line(result)


def test_eval_single_acoustic_labels_and_progress(runs, tmp_path):
    """acoustic=RUN (one value, as --cfg suggests); the table labels means and corpus rates and
    says why a value is n/a; the progress lines give rate and ETA."""
    out = tmp_path / "r"
    result = invoke("eval", f"acoustic={runs['tts']}", "texts=long", f"out={out}", "asr=false",
                    "limit=1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^eval: 1/1 utterances, [\d.]+ utt/s, elapsed \d+:\d\d, ETA 0:00$",
                     result.output, re.M), result.output
    for text in ("mean per utterance", "corpus rate", "ASR WER synthesis", "n/a (asr=false)"):
        assert text in result.output, text
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["not_available"]["wer_synth"] == "asr=false"
    assert summary["not_available"]["mcd_db"] == "no reference audio with texts=long"
    assert "| MCD (dB) | n/a (no reference audio with texts=long) |" in (out / "report.md").read_text()


def test_eval_texts_file_names_a_bad_line(runs, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("Fine.\n\n?!\n", encoding="utf-8")
    result = invoke("eval", "--acoustic", str(runs["tts"]), f"texts={texts}",
                    f"out={tmp_path / 'r'}", "asr=false")
    assert result.exit_code == 2
    assert f"texts={texts}:3: no speakable symbol" in one_error_line(result)
    assert not (tmp_path / "r" / "report.json").exists()


# ------------------------------------------------------------------ issue 25: no input stalls


def with_stop_threshold(runs, name: str, threshold: float) -> Path:
    """A copy of the tiny Tacotron 2 whose stop token fires at ``threshold``: 1e-6 stops on the
    first decoder step (a model that has not learnt to go on), 0.999999 never (one that has
    not learnt to stop, running every item to its length guard)."""
    from neurotts.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

    path = runs["tts"].parent / f"{name}.pt"
    if not path.exists():
        payload = load_checkpoint(resolve_checkpoint(runs["tts"]))
        payload["config"]["model"]["inference"]["stop_threshold"] = threshold
        save_checkpoint(path, payload)
    return path


def thirty_lines(tmp_path: Path) -> Path:
    """The issue's input: 30 short lines, line 7 being 4,000 letters without a space."""
    lines = [f"Line number {i} is short." for i in range(1, 31)]
    lines[6] = "".join("abcdefghijklmnopqrstuvwxyz"[(i * 7) % 26] for i in range(4000))
    path = tmp_path / "thirty.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unbroken_long_line_fails_alone_and_others_are_written(runs, tmp_path):
    """A 4,000-letter token is refused by its line number before any synthesis (it cannot be
    cut at a space within max_symbols); the 29 other lines are written. With a model that
    never stops, every piece still ends at a guard bounded by max_symbols."""
    never = with_stop_threshold(runs, "never-stops", 0.999999)
    path = thirty_lines(tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = invoke("synth", "--input", str(path), "-a", str(never), "-o", f"{out}/", "--device",
                    "cpu", "batch_size=8")
    assert result.exit_code == 1, result.output
    assert (f"error: --input {path}:7: a run of 4000 symbols with no space (over "
            "max_symbols=300)") in result.output
    assert len(list(out.glob("*.wav"))) == 29 and not (out / "007.wav").exists()
    assert result.output.strip().splitlines()[-1].endswith("1 of 30 line(s) failed (line 7); "
                                                           "29 file(s) written")
    assert time.monotonic() - t0 < 240


def test_pieces_are_capped_in_symbols(runs):
    """max_symbols cuts a piece at its last space within the limit, even with max_chars=None
    (each input whole); each part ends with EOS; a run longer than the cap with no space is a
    SynthesisError."""
    from neurotts.synthesis.engine import AcousticModel, SynthesisError, encode

    acoustic = AcousticModel.load(runs["tts"], torch.device("cpu"))
    fe = acoustic.frontend
    text = " ".join(f"word{'s' * (i % 5)}" for i in range(200))
    whole = encode(fe, text, max_chars=None)
    capped = encode(fe, text, max_chars=None, max_symbols=50)
    assert len(whole.ids) == 1 and len(whole.ids[0]) > 1000
    assert len(capped.ids) > 20 and all(2 <= len(ids) <= 50 for ids in capped.ids)
    assert all(ids[-1] == fe.symbols.eos_id for ids in capped.ids)
    space = fe.symbols.to_ids([" "])[0]
    # Nothing lost: each cut turns a space into the EOS that ends the part before it.
    assert sum(len(i) for i in capped.ids) == len(whole.ids[0])
    assert all(ids[0] != space and ids[-2] != space for ids in capped.ids)
    with pytest.raises(SynthesisError, match="a run of 60 symbols with no space"):
        encode(fe, "ok " + "x" * 60 + " ok", max_chars=None, max_symbols=50)


def test_synth_sigterm_says_what_was_written(runs, tmp_path):
    """A real SIGTERM to a real synth process: one line naming how many lines were done and
    the files written, exit 143, and every file written is complete."""
    never = with_stop_threshold(runs, "never-stops", 0.999999)
    lines = tmp_path / "many.txt"
    lines.write_text("".join(f"Line number {i} of the input.\n" for i in range(200)), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurotts.cli", "synth", "--input", str(lines), "--acoustic",
         str(never), "-o", f"{out}/", "--device", "cpu", "batch_size=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "001.wav").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no file written in 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    wavs = sorted(out.glob("*.wav"))
    assert 1 <= len(wavs) < 200 and not list(out.glob("*.part"))
    stopped = [ln for ln in stderr.splitlines() if "stopped by SIGTERM" in ln]
    assert len(stopped) == 1, stderr
    assert re.fullmatch(rf"interrupted: stopped by SIGTERM after {len(wavs)} of 200 line\(s\); "
                        r"written: .*", stopped[0]), stopped[0]
    assert str(wavs[0]) in stopped[0]
    assert "Traceback" not in stderr
    for wav in wavs:
        data, sr = sf.read(wav)
        assert sr == 22050 and data.size == sf.info(str(wav)).frames > 0


def test_synth_progress_line_for_several_lines(runs, tmp_path):
    lines = tmp_path / "in.txt"
    lines.write_text("One.\nTwo.\nThree.\n", encoding="utf-8")
    result = invoke("synth", "--input", str(lines), "-a", str(runs["tts"]), "-o",
                    str(tmp_path / "o/"), "batch_size=2")
    assert result.exit_code == 0, result.output
    progress = re.findall(r"^synth: (\d)/3 lines, [\d.]+ lines/s, elapsed \d+:\d\d, ETA \S+$",
                          result.output, re.M)
    assert progress == ["2", "3"], result.output
    single = invoke("synth", "One.", "-a", str(runs["tts"]), "-o", str(tmp_path / "one.wav"))
    assert single.exit_code == 0 and "synth: " not in single.output


def test_text_beginning_with_a_dash(runs, tmp_path):
    """'-5°C' is text for `text` and `synth`; text that looks like an option gets a hint with
    the -- form, which works; --input lines beginning with '-' are text."""
    result = invoke("text", "-5°C")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "minus five degrees Celsius"
    result = invoke("text", "-hello")
    assert result.exit_code == 2 and "text that begins with '-' goes after --" in result.output
    assert "neurotts text -- \"-hello\"" in " ".join(result.output.replace("│", " ").split())
    result = invoke("text", "--", "-hello")
    assert result.exit_code == 0 and result.output.splitlines()[0] == "-hello"
    wav = tmp_path / "cold.wav"
    result = invoke("synth", "-5 degrees outside.", "-a", str(runs["tts"]), "-o", str(wav),
                    "--seed", "3")
    assert result.exit_code == 0 and sf.info(str(wav)).frames > 0, result.output
    lines = tmp_path / "dash.txt"
    lines.write_text("-5 degrees.\n- a list item\n--force\n", encoding="utf-8")
    result = invoke("synth", "-i", str(lines), "-a", str(runs["tts"]), "-o", str(tmp_path / "d/"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "d").glob("*.wav"))) == 3


def test_existing_output_is_not_replaced_without_force(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tts = str(runs["tts"])
    assert invoke("synth", "Hello.", "-a", tts).exit_code == 0
    before = (tmp_path / "out.wav").read_bytes()
    result = invoke("synth", "Something else entirely.", "-a", str(tmp_path / "no-such-run"))
    assert result.exit_code == 2
    assert one_error_line(result) == ("error: -o out.wav: out.wav exists already; --force "
                                      "replaces it, or name another output with -o")
    assert (tmp_path / "out.wav").read_bytes() == before
    result = invoke("synth", "Something else entirely.", "-a", tts, "--force")
    assert result.exit_code == 0 and (tmp_path / "out.wav").read_bytes() != before
    lines = tmp_path / "in.txt"
    lines.write_text("One.\nTwo.\n", encoding="utf-8")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "002.wav").write_bytes(b"mine")
    result = invoke("synth", "-i", str(lines), "-a", tts, "-o", "w/")
    assert result.exit_code == 2 and "w/002.wav exists already" in one_error_line(result)
    assert (tmp_path / "w" / "002.wav").read_bytes() == b"mine"


def test_synth_warns_about_short_audio_and_unsayable_characters(runs, tmp_path):
    at_once = with_stop_threshold(runs, "stops-at-once", 1e-6)
    lines = tmp_path / "in.txt"
    lines.write_text("Fine.\nA smile 😀 here.\n", encoding="utf-8")
    result = invoke("synth", "-i", str(lines), "-a", str(at_once), "-o", str(tmp_path / "o/"))
    assert result.exit_code == 0, result.output
    assert (f"warning: --input {lines}:2: dropped characters not in the 'characters' symbol "
            "set: '😀' (U+1F600 GRINNING FACE)") in result.output
    assert ("warning: 2 of 2 file(s) are (line 1, 2) under 0.1 s long: the model stops at once"
            in result.output), result.output
    result = invoke("synth", "Fine.", "-a", str(at_once), "-o", str(tmp_path / "one.wav"))
    assert "warning: the audio is under 0.1 s long" in result.output


def test_eval_does_not_measure_max_steps_failures_and_stops_early(runs, tmp_path):
    """A model that never stops: every utterance hits the guard. The recogniser never runs on
    that audio, eval stops after the first batch with one line, and the report leads with the
    failure count."""
    from neurotts.evaluation import run as eval_run

    never = with_stop_threshold(runs, "never-stops", 0.999999)
    texts = tmp_path / "t.txt"
    texts.write_text("".join(f"Sentence number {i} is here.\n" for i in range(20)), encoding="utf-8")
    out = tmp_path / "r"
    result = invoke("eval", "-a", str(never), f"texts={texts}", f"out={out}", "asr=false",
                    "batch_size=8")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: stopped after 8 of 20 utterances: 8 failed (max_steps 8); "
                           "the model has not aligned yet"), last
    assert "failed: 8 of 8 utterances (max_steps 8)" in result.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["utterances"]) == 8
    assert all(r["metrics_note"] == "not measured: hit max decoder steps"
               for r in report["utterances"])
    assert (out / "report.md").read_text().splitlines()[4].startswith(
        "**failed: 8 of 8 utterances (max_steps 8)**")
    assert "(incl. 8 failed)" in result.output  # attention means are over failed items
    result = invoke("eval", "-a", str(never), f"texts={texts}", f"out={tmp_path / 'all'}",
                    "asr=false", "stop_unaligned=false", "limit=9")
    assert result.exit_code == 0 and "failed: 9 of 9 utterances" in result.output

    class Recogniser:  # counts what it is asked to transcribe
        calls = 0

        def transcribe(self, wav, sr):
            Recogniser.calls += 1
            return "x"

    asr = eval_run.Recognition(False)
    asr.recognizer = Recogniser()
    row = asr.add("some words here", None, None, 22050)
    assert Recogniser.calls == 0 and row["wer_synth"] == 1.0 and row["asr_synth"] == ""
