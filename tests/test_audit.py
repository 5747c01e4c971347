"""``neurotts audit``: measures on known signals, scoring, the files, resuming, and detection of
known defects in a damaged copy of the real LJSpeech sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurotts.audit.config import AuditConfig, Limits
from neurotts.audit.corrupt import KINDS, corrupt_corpus
from neurotts.audit.measures import LevelConfig, clipping_measures, level_measures
from neurotts.audit.run import run as run_audit
from neurotts.audit.scoring import limit_score, robust_z
from neurotts.cli import app
from neurotts.config import load_config
from tests.conftest import SAMPLE, requires_sample, speechlike

runner = CliRunner()
SR = 22050
LEVELS = LevelConfig(frame_ms=20.0, speech_percentile=95.0, noise_percentile=5.0,
                     silence_db=40.0, clip_level=0.98)


def config(root: Path, out: Path, *overrides: str) -> AuditConfig:
    return load_config("audit", AuditConfig, [f"data.root={root}", f"out={out}", *overrides])


def tsv(out: Path) -> list[list[str]]:
    lines = (out / "audit.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tscore\treasons"
    return [ln.split("\t") for ln in lines[1:]]


# ----------------------------------------------------------------------------- measures


def test_silences_pause_and_snr_of_a_known_signal():
    rng = np.random.default_rng(0)
    speech = speechlike(1.0, SR, lead_silence=0.0)
    gap = np.zeros(int(0.8 * SR), dtype=np.float32)
    wav = np.concatenate([np.zeros(int(1.5 * SR)), speech, gap, speech, np.zeros(int(0.3 * SR))])
    m = level_measures(wav.astype(np.float32), SR, LEVELS)
    assert m["leading_silence"] == pytest.approx(1.5, abs=0.04)
    assert m["trailing_silence"] == pytest.approx(0.3, abs=0.04)
    assert m["longest_pause"] == pytest.approx(0.8, abs=0.1)
    # Noise 20 dB under the speech power: the estimate lands near it (the speech level is a
    # high percentile, a little above the mean power).
    power = np.mean(speech.astype(np.float64) ** 2)
    noisy = speech + rng.normal(0, np.sqrt(power / 100), speech.size).astype(np.float32)
    snr = level_measures(noisy, SR, LEVELS)["snr_db"]
    assert 17.0 < snr < 30.0
    # Without the noise the floor is the signal's own quiet troughs, far lower.
    clean = level_measures(speech + rng.normal(0, 1e-4, speech.size).astype(np.float32), SR, LEVELS)
    assert clean["snr_db"] > snr + 10


def test_clipping_and_dc_offset():
    t = np.arange(SR) / SR
    sine = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    clean = clipping_measures(sine, 0.98)
    assert clean["clipped_share"] < 0.001 and abs(clean["dc_offset"]) < 1e-4
    clipped = np.clip(sine * 4, -0.8, 0.8) + 0.05
    m = clipping_measures(clipped.astype(np.float32), 0.98)
    assert m["clipped_share"] > 0.5 and m["longest_clipped_run"] > 20
    assert m["dc_offset"] == pytest.approx(0.05, abs=1e-3)


def test_limit_score_both_directions():
    higher = Limits(warn=0.5, exclude=1.0)
    assert limit_score(0.5, higher) == 0.5 and limit_score(1.0, higher) == 1.0
    assert limit_score(0.0, higher) == 0.0 and limit_score(100.0, higher) == 3.0
    lower = Limits(warn=20.0, exclude=12.0)  # an SNR: lower is worse
    assert limit_score(12.0, lower) == 1.0 and limit_score(40.0, lower) == 0.0
    assert limit_score(16.0, lower) == pytest.approx(0.75)


def test_robust_z_ignores_outliers():
    values = np.array([10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 50.0])
    median, spread, z = robust_z(values)
    assert median == 10.0 and 0.5 < spread < 1.0
    assert z[-1] > 40 and abs(z[0]) < 1e-9


# ----------------------------------------------------------------------------- command


def test_audit_command_on_a_synthetic_corpus(make_corpus, tmp_path):
    texts = {f"S{i:02d}": f"sentence number {i} of the test" for i in range(10)}
    texts["S05"] = texts["S01"]
    root = make_corpus(texts)
    shutil.copy(root / "wavs" / "S01.wav", root / "wavs" / "S05.wav")  # a true duplicate
    shutil.copy(root / "wavs" / "S02.wav", root / "wavs" / "S08.wav")  # same audio, other text
    long_pad = np.concatenate([np.zeros(3 * SR, np.float32), speechlike(1.0, SR, seed=9)])
    sf.write(root / "wavs" / "S07.wav", long_pad, SR, subtype="PCM_16")
    out = tmp_path / "audit"
    result = runner.invoke(app, ["audit", f"data.root={root}", f"out={out}",
                                 "transcript.enabled=false"])
    assert result.exit_code == 0, result.output
    # Printed literally (the CLI's console reads no markup): no style tags in the output.
    assert "audited 10 clips" in result.output and "[/]" not in result.output
    assert " S07: " in result.output and "[red]" not in result.output
    rows = tsv(out)
    assert len(rows) == 10
    top = {r[0]: r for r in rows[:4]}
    assert set(top) == {"S02", "S05", "S07", "S08"}  # S01, the first copy, is kept
    assert "same audio as S01" in top["S05"][2]
    assert "same audio as S02 with another transcript" in top["S08"][2]
    assert "leading silence" in top["S07"][2]
    exclude = (out / "exclude.txt").read_text().splitlines()
    assert exclude[0].startswith("#") and sorted(exclude[1:]) == ["S02", "S05", "S07", "S08"]
    report = json.loads((out / "audit.json").read_text())
    assert {c["id"] for c in report["clips"]} == {f"S{i:02d}" for i in range(10)}
    assert all("snr_db" in c and "scores" in c for c in report["clips"])
    md = (out / "audit.md").read_text()
    assert "| **S07** |" in md and "speaking_rate.png" in md
    assert (out / "speaking_rate.png").stat().st_size > 1000
    assert (out / "audio_measures.png").stat().st_size > 1000


def test_rerun_reuses_finished_clips(make_corpus, tmp_path):
    root = make_corpus({f"S{i:02d}": f"words for clip {i}" for i in range(8)})
    out = tmp_path / "audit"
    cfg = config(root, out, "transcript.enabled=false", "num_workers=2")
    first = run_audit(cfg)
    assert first.reused == 0
    records = json.loads((out / "audit.json").read_text())["clips"]
    # A crash mid-write leaves a torn last line; the rerun must cope with it.
    with open(out / ".progress.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "S03", "ok": tr')
    # One wav changes on disk, one transcript is corrected: only those two are measured again.
    sf.write(root / "wavs" / "S02.wav", speechlike(2.0, SR, seed=42), SR, subtype="PCM_16")
    meta = root / "metadata.csv"
    meta.write_text(meta.read_text().replace("words for clip 6", "other words for clip 6"))
    second = run_audit(cfg)
    assert second.reused == 6
    again = {c["id"]: c for c in json.loads((out / "audit.json").read_text())["clips"]}
    assert again["S02"]["duration"] > 2.0 and again["S06"]["text"].startswith("other words")
    before = {c["id"]: c for c in records}
    assert again["S04"]["audio_hash"] == before["S04"]["audio_hash"]
    assert run_audit(config(root, out, "transcript.enabled=false",
                            "thresholds.leading_silence.warn=0.05")).reused == 8


def test_audit_errors_are_one_line(tmp_path, make_corpus):
    result = runner.invoke(app, ["audit", f"out={tmp_path / 'a'}"])
    assert result.exit_code == 2 and "data.root is not set" in result.output
    result = runner.invoke(app, ["audit", f"data.root={tmp_path / 'nope'}",
                                 f"out={tmp_path / 'a'}"])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = runner.invoke(app, ["audit", "data.root=x", "out=y", "thresholds.snr=3"])
    assert result.exit_code == 2 and "thresholds.snr" in result.output
    for bad, says in (("batch_size=0", "batch_size=0: must be at least 1"),
                      ("num_workers=-2", "num_workers=-2: must be at least 0"),
                      ("transcript.skip_prob=1.5", "transcript.skip_prob=1.5: must be in (0, 1)")):
        result = runner.invoke(app, ["audit", "data.root=x", "out=y", bad])
        assert result.exit_code == 2 and says in result.output, result.output
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.jsonl").write_text("")
    result = runner.invoke(app, ["audit", f"data.root={tmp_path}", f"out={store}"])
    assert result.exit_code == 2 and "is a feature store" in result.output
    root = make_corpus({"A": "one clip"})
    (root / "wavs" / "A.wav").write_bytes(b"RIFF not really a wav")
    result = runner.invoke(app, ["audit", f"data.root={root}", f"out={tmp_path / 'b'}",
                                 "transcript.enabled=false"])
    assert result.exit_code == 1 and "no readable clip" in result.output
    rows = tsv(tmp_path / "b")
    assert rows[0][0] == "A" and "cannot read audio" in rows[0][2]


# ----------------------------------------------------------------------------- detection


def _subset(dst: Path, n: int) -> Path:
    """The ``n`` shortest sample clips as a corpus of their own (keeps the test short)."""
    lines = (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()
    sizes = {ln: (SAMPLE / "wavs" / f"{ln.split('|', 1)[0]}.wav").stat().st_size for ln in lines}
    keep = sorted(lines, key=sizes.__getitem__)[:n]
    (dst / "wavs").mkdir(parents=True)
    for ln in keep:
        uid = ln.split("|", 1)[0]
        shutil.copy(SAMPLE / "wavs" / f"{uid}.wav", dst / "wavs")
    (dst / "metadata.csv").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return dst


@requires_sample
def test_every_kind_of_defect_ranks_at_the_top(tmp_path):
    pytest.importorskip("pocketsphinx")
    clean = _subset(tmp_path / "clean", 18)
    truth = corrupt_corpus(clean, tmp_path / "damaged", per_kind=1, seed=3)
    assert set(truth.values()) == set(KINDS) and len(truth) == 8
    out = tmp_path / "audit"
    # The recogniser is a second opinion (tested below); the ranking must not need it.
    summary = run_audit(config(tmp_path / "damaged", out, "num_workers=2",
                               "transcript.recognise=false"))
    rows = tsv(out)
    rank = {r[0]: k for k, r in enumerate(rows)}
    late = {uid: (kind, rank[uid]) for uid, kind in truth.items() if rank[uid] >= len(truth) + 1}
    assert not late, late
    excluded = set((out / "exclude.txt").read_text().split("\n")[1:]) - {""}
    recall = len(excluded & set(truth)) / len(truth)
    precision = len(excluded & set(truth)) / max(len(excluded), 1)
    assert recall == 1.0 and precision >= 0.85, (precision, recall, excluded ^ set(truth))
    assert summary.excluded == len(excluded)


@requires_sample
def test_recogniser_hears_the_swapped_transcripts_only(tmp_path):
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("jiwer")
    root = _subset(tmp_path / "clean", 4)
    lines = (root / "metadata.csv").read_text(encoding="utf-8").splitlines()
    ids = [ln.split("|", 1)[0] for ln in lines]
    texts = [ln.split("|")[1] for ln in lines]
    texts[0], texts[1] = texts[1], texts[0]
    (root / "metadata.csv").write_text(
        "".join(f"{i}|{t}|{t}\n" for i, t in zip(ids, texts, strict=True)), encoding="utf-8")
    out = tmp_path / "audit"
    run_audit(config(root, out, "num_workers=1"))
    clips = {c["id"]: c for c in json.loads((out / "audit.json").read_text())["clips"]}
    for uid in ids[:2]:
        assert clips[uid]["score"] >= 1.0
        assert clips[uid]["asr_text"] and clips[uid]["transcript_cer"] > 0.5
        assert f"transcript CER {clips[uid]['transcript_cer']:.2f}" in clips[uid]["reasons"]
    for uid in ids[2:]:  # clean clips that warn for nothing are not sent to the recogniser
        assert clips[uid]["score"] < 0.5 and "asr_text" not in clips[uid]
    assert clips[ids[0]]["asr_text"] in (out / "audit.md").read_text()


@requires_sample
def test_word_times_of_the_forced_alignment_follow_the_audio():
    """Word spans from the audit's alignment (the reference of bench/word_times.py): in order,
    inside the clip, and 1 s later when 1 s of silence is put in front of the clip."""
    pytest.importorskip("pocketsphinx")
    from neurotts.audit.transcript import TranscriptChecker
    from neurotts.evaluation.asr import to_asr_pcm
    from neurotts.text.frontend import TextFrontend

    cfg = config(SAMPLE, Path("unused"))
    row = (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()[1].split("|")
    wav, rate = sf.read(SAMPLE / "wavs" / f"{row[0]}.wav", dtype="float32")
    checker = TranscriptChecker(cfg.transcript)
    words = checker.words(TextFrontend(cfg.text).normalize(row[2]))
    spans = checker.word_times(to_asr_pcm(wav, rate), words)
    placed = [s for s in spans if s is not None]
    assert len(placed) >= 0.9 * len(words)
    times = [t for s in placed for t in s]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= wav.size / rate + 0.01
    assert all(end > start for start, end in placed)
    later = checker.word_times(to_asr_pcm(np.concatenate([np.zeros(rate, np.float32), wav]), rate),
                               words)
    shifts = [b[0] - a[0] for a, b in zip(spans, later, strict=True) if a and b]
    assert len(shifts) >= 0.9 * len(placed) and abs(np.median(shifts) - 1.0) <= 0.02, shifts


# ----------------------------------------------------------------------------- --acoustic


@pytest.mark.slow
def test_acoustic_check_flags_the_clip_a_trained_model_cannot_follow(make_corpus, tmp_path):
    texts = {f"S{i:02d}": f"a short sentence, number {i}." for i in range(10)}
    root = make_corpus(texts, seconds=1.2)
    store, run_dir = tmp_path / "store", tmp_path / "tts"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={store}",
                                 "data.split.val_size=1", "data.split.test_size=1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "model=tacotron2", "experiment=tiny",
                                 f"data.features={store}", f"run.dir={run_dir}",
                                 "trainer.max_steps=4", "trainer.val_every=4",
                                 "trainer.checkpoint_every=4"])
    assert result.exit_code == 0, result.output
    # After training, one recording is replaced by loud noise: the model, which has only
    # ever seen the speech-like clips, cannot predict it from its transcript.
    rng = np.random.default_rng(0)
    sf.write(root / "wavs" / "S04.wav", rng.uniform(-0.9, 0.9, int(1.6 * SR)), SR, subtype="PCM_16")
    out = tmp_path / "audit"
    result = runner.invoke(app, ["audit", f"data.root={root}", f"out={out}", "--acoustic",
                                 str(run_dir), "transcript.enabled=false", "device=cpu"])
    assert result.exit_code == 0, result.output
    clips = {c["id"]: c for c in json.loads((out / "audit.json").read_text())["clips"]}
    losses = {uid: c["acoustic_loss"] for uid, c in clips.items()}
    assert max(losses, key=losses.__getitem__) == "S04", losses
    assert clips["S04"]["acoustic_loss_z"] > 3
    for c in clips.values():
        assert c["acoustic_model"].endswith("@4")
        for key in ("focus", "monotonicity", "coverage", "band_mass"):
            assert 0.0 <= c[f"attention_{key}"] <= 1.0
    assert "teacher-forced loss" in (out / "audit.tsv").read_text()
    # One clip's teacher-forced attention, as bench/word_times.py reads it: a distribution
    # over the clip's symbols for each decoder step of its (trimmed) samples.
    from neurotts.audit.acoustic import AcousticChecker

    checker = AcousticChecker(str(run_dir), "cpu")
    pcm, ids, align = checker.alignment(root / "wavs" / "S01.wav", texts["S01"])
    steps = -(-pcm.size // 256 // checker.model.cfg.reduction_factor)
    assert pcm.dtype == np.int16 and align.shape == (steps, len(ids))
    np.testing.assert_allclose(align.sum(axis=1), 1.0, atol=1e-4)


def _scored(records: dict[str, dict]) -> dict[str, dict]:
    from neurotts.audit.scoring import score_clips

    for name, r in records.items():
        r.update(ok=True, sample_rate=SR, channels=1, encoding="PCM_16", audio_hash=name)
    score_clips(records, list(records), config(Path("/corpus"), Path("/out")))
    return records


def test_every_scored_clip_gives_its_reasons():
    """A score under every warning level (0.48 from an SNR just above its warn level) still
    names where it comes from."""
    r = _scored({"low": {"snr_db": 20.3}})["low"]
    assert 0 < r["score"] < 0.5
    assert r["reasons"] == ["SNR 20 dB (under its warning level)"]


def test_noise_is_not_called_cut_off_but_a_cut_clip_is():
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(2 * SR)).astype(np.float32)
    cut = speechlike(1.0, SR)[: int(0.7 * SR)]  # ends mid-speech over a clean floor
    records = _scored({"noise": level_measures(noise, SR, LEVELS),
                       "cut": level_measures(cut, SR, LEVELS)})
    assert records["noise"]["reasons"] == ["SNR 1 dB"]
    assert "end_loudness" not in records["noise"]["scores"]
    assert any("(cut off?)" in reason for reason in records["cut"]["reasons"])
