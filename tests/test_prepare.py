"""``neurotts prepare`` on synthetic corpora: outputs, splits, resume, and every bad-input case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.config import ConfigError, PrepareConfig, SplitAutoConfig, SplitConfig, load_config
from neurotts.data import prepare
from neurotts.data.splits import assign_splits
from neurotts.data.store import FeatureStore
from tests.conftest import speechlike

runner = CliRunner()
TEXTS = {f"T{i:03d}": f"Sentence number {i} is spoken here." for i in range(12)}
SIZES = ["data.split.val_size=2", "data.split.test_size=2", "num_workers=1"]
UNSIZED = ["data.split.val_size=null", "data.split.test_size=null"]
AUTO = SplitAutoConfig(val_max=100, test_max=500, val_fraction=0.05, test_fraction=0.1)


def config(root: Path, out: Path, *extra: str) -> PrepareConfig:
    return load_config("prepare", PrepareConfig, [f"data.root={root}", f"out={out}", *SIZES, *extra])


def rejects(out: Path) -> dict[str, str]:
    lines = (out / "rejects.tsv").read_text().splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines)


def test_store_contents(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    out = tmp_path / "store"
    summary = prepare.run(config(root, out))
    assert summary.kept == 12 and summary.rejected == 0
    store = FeatureStore(out)
    assert {u.split for u in store.utterances} == {"train", "val", "test"}
    assert len(store.split("val")) == 2 and len(store.split("test")) == 2
    hop = store.audio.hop_length
    for u in store.utterances:
        mel, wav = store.mel(u.id), store.audio_float(u.id)
        assert mel.shape == (u.n_frames, store.audio.n_mels) and mel.dtype == np.float32
        assert wav.size == u.n_samples == u.n_frames * hop
        assert u.ids[-1] == store.symbols.index(store.symbols[u.ids[-1]])
        assert "twelve" in u.normalized or "number" in u.normalized
    assert store.mel_mean.shape == (store.audio.n_mels,) and (store.mel_std > 0).all()
    assert (out / "config.yaml").is_file() and (out / "symbols.json").is_file()
    assert not list(out.rglob("*.part"))


def test_hash_split_is_stable_and_order_free():
    ids = [f"LJ{i:04d}" for i in range(50)]
    cfg = SplitConfig(method="hash", val_size=5, test_size=7, auto=AUTO)
    a = assign_splits(ids, cfg)
    b = assign_splits(list(reversed(ids)), cfg)
    assert a == b
    assert sum(v == "val" for v in a.values()) == 5 and sum(v == "test" for v in a.values()) == 7
    # the split follows the id's own hash, so a different list of ids keeps the same ranking
    c = assign_splits(ids + [f"X{i}" for i in range(50)], cfg)
    assert [i for i in ids if c[i] != "train"] == [i for i in ids if c[i] != "train" and a[i] != "train"]
    with pytest.raises(ConfigError, match="leave no training data"):
        assign_splits(ids[:10], cfg)


def test_split_from_id_lists(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    ids = sorted(TEXTS)
    for name, chunk in {"train": ids[:8], "val": ids[8:10], "test": ids[10:11]}.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(chunk) + "\n")
    out = tmp_path / "store"
    prepare.run(config(root, out, "data.split.method=lists", *UNSIZED,
                       *(f"data.split.{s}_list={tmp_path / s}.txt" for s in ("train", "val", "test"))))
    store = FeatureStore(out)
    assert [u.id for u in store.split("val")] == ids[8:10]
    assert [u.id for u in store.split("test")] == ids[10:11]
    assert "none of the split lists" in rejects(out)[ids[11]]


def write_bad_corpus(make_corpus) -> Path:
    """A corpus with one instance of every kind of bad input, plus good items to keep."""
    root = make_corpus(TEXTS, seconds=0.8)
    wavs = root / "wavs"
    sf.write(wavs / "STEREO.wav", np.stack([speechlike(0.8, 44100)] * 2, 1), 44100, subtype="PCM_24")
    sf.write(wavs / "LOWRATE.wav", speechlike(0.8, 16000), 16000, subtype="PCM_U8")
    sf.write(wavs / "FLOATWAV.wav", speechlike(0.8, 22050), 22050, subtype="FLOAT")
    sf.write(wavs / "TOOLONG.wav", speechlike(3.0, 22050, lead_silence=0.0), 22050)
    (wavs / "ZERO.wav").write_bytes(b"")
    (wavs / "CORRUPT.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + os.urandom(200))
    good = (wavs / "T000.wav").read_bytes()
    (wavs / "TRUNC.wav").write_bytes(good[:40])
    for uid in ("DUP", "EMPTY", "NOTUTF8", "UNSPEAKABLE"):
        (wavs / f"{uid}.wav").write_bytes(good)
    extra = [
        b"STEREO|A stereo clip at forty-four kilohertz.|x",
        b"LOWRATE|An eight-bit clip at sixteen kilohertz.|x",
        b"FLOATWAV|A float clip.|x",
        b"MISSING|This row has no wav file.|x",
        b"ZERO|A zero-length file.|x",
        b"CORRUPT|A corrupt file.|x",
        b"TRUNC|A truncated file.|x",
        b"TOOLONG|A clip over the maximum duration.|x",
        b"FEWFIELDS",
        b"DUP|First copy of a duplicate id.|x",
        b"DUP|Second copy of a duplicate id.|x",
        b"EMPTY||",
        b"NOTUTF8|Caf\xe9 latin-1 text.|x",
        b"UNSPEAKABLE|?! ... \xe2\x80\x94 ()|x",
    ]
    with open(root / "metadata.csv", "ab") as f:
        f.write(b"\n".join(extra) + b"\n")
    return root


EXPECTED_REJECTS = {
    "MISSING": "not found", "ZERO": "ZERO.wav", "CORRUPT": "CORRUPT.wav", "TRUNC": "TRUNC.wav",
    "TOOLONG": "max_duration", "FEWFIELDS": "too few fields", "DUP": "duplicate id",
    "EMPTY": "empty transcript", "NOTUTF8": "not valid UTF-8", "UNSPEAKABLE": "metadata.csv:",
}


def test_bad_input_is_reported_and_good_input_kept(make_corpus, tmp_path):
    root = write_bad_corpus(make_corpus)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES,
                                 "audio.max_duration=2.0"])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    kept = {u.id for u in store.utterances}
    assert kept == set(TEXTS) | {"STEREO", "LOWRATE", "FLOATWAV", "DUP"}
    got = rejects(out)
    assert set(got) == set(EXPECTED_REJECTS)
    for uid, needle in EXPECTED_REJECTS.items():
        assert needle in got[uid], (uid, got[uid])
    assert "first at line" in got["DUP"]
    # converted items carry the target rate and the frame/sample contract
    for uid in ("STEREO", "LOWRATE", "FLOATWAV"):
        u = store[uid]
        assert u.n_samples == u.n_frames * store.audio.hop_length
        # 0.8 s of sound plus at most its 0.4 s of padding (8-bit's noise floor is not trimmed)
        assert 0.75 < u.n_samples / 22050 < 1.25
    assert "rejected" in result.output and "10 rejected" in result.output


def test_strict_mode_fails_but_writes(make_corpus, tmp_path):
    root = write_bad_corpus(make_corpus)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES, "strict=true"])
    assert result.exit_code == 1
    assert "strict=true" in result.output
    assert (out / "manifest.jsonl").is_file() and (out / "rejects.tsv").is_file()


def test_nothing_usable_exits_nonzero(tmp_path):
    root = tmp_path / "c"
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text("A|missing wav one.|x\nB|missing wav two.|x\nC|three.|x\n")
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={tmp_path / 's'}",
                                 "data.split.val_size=0", "data.split.test_size=0"])
    assert result.exit_code == 1
    assert "no usable utterances" in result.output


def test_rerun_is_a_noop_and_resume_after_interrupt(make_corpus, tmp_path, monkeypatch):
    root = make_corpus(TEXTS)
    out = tmp_path / "store"
    cfg = config(root, out)
    # Interrupt the first run after 5 items, as Ctrl-C would.
    real, calls = prepare._process, {"n": 0}

    def flaky(item):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(item)

    monkeypatch.setattr(prepare, "_process", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare.run(cfg)
    assert not (out / "manifest.jsonl").exists()
    # A torn journal line (crash mid-write) and a stray temp file must not break the resume.
    with open(out / prepare.JOURNAL, "a") as f:
        f.write('{"id": "T0')
    (out / "mels" / "T011.npy.part").write_bytes(b"half")
    monkeypatch.setattr(prepare, "_process", real)
    summary = prepare.run(cfg)
    assert summary.kept == 12 and summary.skipped == 5
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    again = prepare.run(cfg)
    assert again.skipped == 12 and again.kept == 12
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}


def test_refuses_to_mix_settings(make_corpus, tmp_path):
    root = make_corpus(dict(list(TEXTS.items())[:6]))
    out = tmp_path / "store"
    prepare.run(config(root, out))
    with pytest.raises(ConfigError, match="other audio settings"):
        prepare.run(config(root, out, "audio.n_mels=40"))


def test_parallel_equals_serial(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    prepare.run(config(root, tmp_path / "a"))
    prepare.run(config(root, tmp_path / "b", "num_workers=2"))
    a, b = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    assert [json.dumps(u.__dict__) for u in a.utterances] == [json.dumps(u.__dict__) for u in b.utterances]
    for u in a.utterances:
        np.testing.assert_array_equal(a.mel(u.id), b.mel(u.id))


def test_missing_root_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["prepare", f"data.root={tmp_path / 'nope'}", f"out={tmp_path / 's'}"])
    assert result.exit_code == 2
    assert "no such directory" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["prepare", f"out={tmp_path / 's'}"])
    assert result.exit_code == 2 and "data.root" in result.output
