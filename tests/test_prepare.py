"""``neurotts prepare`` on synthetic corpora: outputs, splits, resume, and every bad-input case."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.config import ConfigError, load_config
from neurotts.data import prepare
from neurotts.data.config import PrepareConfig, SplitAutoConfig, SplitConfig
from neurotts.data.splits import assign_splits, split_note, split_sizes
from neurotts.data.store import JOURNAL, FeatureStore
from tests.conftest import SAMPLE, speechlike
from tests.conftest import TEXTS as SHARED_TEXTS

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
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
    with open(out / JOURNAL, "a") as f:
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


# -- splits: sizes, the standard LJSpeech split ------------------------------------------------


def unsized(**kw) -> SplitConfig:
    return SplitConfig(method="hash", val_size=kw.get("val"), test_size=kw.get("test"), auto=AUTO)


@pytest.mark.parametrize(
    ("n", "val", "test"),
    [(1, 0, 0), (2, 1, 0), (3, 1, 1), (12, 1, 1), (385, 19, 38), (13100, 100, 500)],
)
def test_unset_split_sizes_scale_with_the_corpus(n, val, test):
    assert split_sizes(n, unsized()) == (val, test)


def test_explicit_split_sizes_are_honoured_or_refused():
    assert split_sizes(385, unsized(val=100, test=200)) == (100, 200)
    assert split_sizes(10, unsized(val=8)) == (8, 1)  # the unset one gives way
    assert split_sizes(10, unsized(test=6)) == (1, 6)
    with pytest.raises(ConfigError, match=r"val 8 \+ test 6\) leave no training data from 14"):
        split_sizes(14, unsized(val=8, test=6))


def test_standard_split_needs_no_files_and_rejects_sizes(make_corpus, tmp_path):
    # LJ001-0110 is a standard val id, LJ001-0015 a standard test id; the others train.
    ids = ["LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0015", "LJ001-0110"]
    root = make_corpus({i: f"Sentence {k} of the corpus." for k, i in enumerate(ids)})
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", "num_workers=1",
                                 "data.split.method=standard"])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    assert [u.id for u in store.split("val")] == ["LJ001-0110"]
    assert [u.id for u in store.split("test")] == ["LJ001-0015"]
    assert len(store.split("train")) == 3
    assert "standard split: 1 of its 100 val and 1 of its 500 test ids" in result.output
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={tmp_path / 's2'}",
                                 "data.split.method=standard", "data.split.val_size=3"])
    assert result.exit_code == 2
    assert "data.split.val_size=3 applies to method=hash only" in result.output


def test_standard_split_on_a_corpus_without_its_ids_is_one_line(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={tmp_path / 's'}",
                                 "num_workers=1", "data.split.method=standard"])
    assert result.exit_code == 2
    assert "none of LJSpeech-1.1's 100 standard val ids" in result.output
    assert "data.split.method=hash" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(not (SHARED_TEXTS / "split_val.txt").is_file(),
                    reason=f"LJSpeech texts not found at {SHARED_TEXTS}")
def test_standard_split_equals_the_common_lists():
    lines = (SHARED_TEXTS / "metadata.csv").read_text(encoding="utf-8").splitlines()
    ids = [ln.split("|", 1)[0] for ln in lines]
    splits = assign_splits(ids, SplitConfig(method="standard", val_size=None, test_size=None,
                                            auto=AUTO))
    for name in ("train", "val", "test"):
        expected = (SHARED_TEXTS / f"split_{name}.txt").read_text().split()
        got = [i for i in ids if splits[i] == name]
        assert len(got) == len(expected) and set(got) == set(expected), name
    # The package keeps only the 600 val/test ids, in a form of its own, not the lists.
    from neurotts.data.splits import STANDARD_SPLIT_FILE, standard_split

    assert len(standard_split()) == 600
    assert STANDARD_SPLIT_FILE.stat().st_size < 5000


@pytest.mark.skipif(not (SAMPLE / "metadata.csv").is_file(), reason=f"no sample at {SAMPLE}")
def test_standard_split_on_the_385_clip_sample_keeps_the_listed_ids_it_has():
    ids = [ln.split("|", 1)[0] for ln in (SAMPLE / "metadata.csv").read_text().splitlines()]
    cfg = SplitConfig(method="standard", val_size=None, test_size=None, auto=AUTO)
    splits = assign_splits(ids, cfg)
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 366, "val": 3, "test": 16}
    assert "3 of its 100 val and 16 of its 500 test ids" in split_note(splits, cfg)


def test_split_is_drawn_from_usable_clips_so_sizes_are_met(make_corpus, tmp_path):
    """`make demo` asked for val 8 / test 6 and got 4 / 5: the split was drawn before clips
    over audio.max_duration were rejected. Here long clips rank among the first by hash."""
    root = make_corpus(TEXTS)
    for i in range(6):  # 3 s clips, over the 2 s limit below
        sf.write(root / "wavs" / f"LONG{i}.wav", speechlike(3.0, 22050, seed=50 + i), 22050)
    with open(root / "metadata.csv", "a") as f:
        f.write("".join(f"LONG{i}|A clip that is too long.|x\n" for i in range(6)))
    ranked = sorted([*TEXTS, *(f"LONG{i}" for i in range(6))],
                    key=lambda i: hashlib.sha1(i.encode()).hexdigest())
    assert any(i.startswith("LONG") for i in ranked[:5])  # the old order would have lost some
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", "num_workers=1",
                                 "data.split.val_size=3", "data.split.test_size=2",
                                 "audio.max_duration=2.0"])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    assert (len(store.split("val")), len(store.split("test"))) == (3, 2)
    assert len(store.split("train")) == 7 and set(rejects(out)) == {f"LONG{i}" for i in range(6)}


def test_small_corpus_needs_no_split_overrides(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", "num_workers=1"])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    assert (len(store.split("train")), len(store.split("val")), len(store.split("test"))) == (10, 1, 1)
    assert "split sizes scaled to 12 usable utterances: val 1, test 1" in result.output
    # An explicit request that cannot be met is one line, before any audio work.
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={tmp_path / 's2'}",
                                 "data.split.val_size=100", "data.split.test_size=500"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "val 100 + test 500) leave no training data from 12" in result.output
    assert not (tmp_path / "s2" / "mels").exists()


# -- data.exclude --------------------------------------------------------------------------------


def test_exclude_file_leaves_ids_out(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    with open(root / "metadata.csv", "a") as f:
        f.write("T003|A duplicate row of an excluded id.|x\n")
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# from neurotts audit\nT003  # transcript CER 0.62\n\nT007\nNOPE-1\n")
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES,
                                 f"data.exclude={exclude}"])
    assert result.exit_code == 0, result.output
    assert {u.id for u in FeatureStore(out).utterances} == set(TEXTS) - {"T003", "T007"}
    assert rejects(out) == {}  # excluded, not rejected (the duplicate row included)
    assert "0 rejected, 2 excluded" in result.output
    assert "data.exclude: 1 listed id(s) are not in the corpus: NOPE-1" in result.output


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "data.exclude={path}: no such file"),
     ("T001\nT002 0.93 silence\n", "{path}:2: expected one id per line, found 'T002 0.93 silence'")],
)
def test_bad_exclude_file_is_one_line(make_corpus, tmp_path, content, needle):
    root = make_corpus(dict(list(TEXTS.items())[:4]))
    path = tmp_path / "exclude.txt"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={tmp_path / 's'}",
                                 f"data.exclude={path}"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: " + needle.format(path=path)


# -- metadata.csv: BOM, field counts, nothing usable, text failures -----------------------------


def test_bom_is_stripped_and_bad_field_counts_are_rejected_by_line(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    meta = root / "metadata.csv"
    lines = meta.read_text(encoding="utf-8").splitlines()
    lines[3] = "T003|four|fields|here"
    lines[5] = "T005"
    meta.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES])
    assert result.exit_code == 0, result.output
    assert "T000" in {u.id for u in FeatureStore(out).utterances}  # the row after the BOM
    got = rejects(out)
    assert got == {
        "T003": "metadata.csv:4: too many fields (4; expected 3, ID|raw|normalized, or 2, ID|text)",
        "T005": "metadata.csv:6: too few fields (1; expected 3, ID|raw|normalized, or 2, ID|text)",
    }


def test_no_usable_row_says_why(make_corpus, tmp_path):
    root = make_corpus(dict(list(TEXTS.items())[:3]))
    (root / "metadata.csv").write_text("".join(f"{i}|a|b|c\n" for i in list(TEXTS)[:3]))
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}"])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: no usable utterances in {root / 'metadata.csv'}: 3 rejected")
    assert "metadata.csv:1: too many fields (4;" in line and "leave no training data" not in line
    assert len(rejects(out)) == 3


def test_a_row_whose_text_fails_costs_only_that_row(make_corpus, tmp_path, monkeypatch):
    rows = dict(TEXTS)
    rows["BIG"] = "There are 1000000000000000000000000000000000000000 stars."  # past inflect
    rows["BRACE"] = "An {HH AH0 unbalanced brace."
    rows["BUG"] = "A text that meets a broken rule."
    root = make_corpus(rows)
    from neurotts.text import frontend

    real = frontend.normalize

    def breaks_on_bug(text: str) -> str:  # a rule with a bug that raises on one text
        if "broken rule" in text:
            raise RuntimeError("rule failed")
        return real(text)

    monkeypatch.setattr(frontend, "normalize", breaks_on_bug)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    assert "one zero zero" in store["BIG"].normalized
    got = rejects(out)
    assert set(got) == {"BRACE", "BUG"}
    assert got["BRACE"].startswith("metadata.csv:14: unbalanced brace")
    assert got["BUG"] == "metadata.csv:15: text could not be normalised (RuntimeError: rule failed)"


# -- text=arpabet: words CMUdict lacks, dropped characters --------------------------------------


def test_arpabet_prepare_reports_oov_words_and_dropped_characters(make_corpus, tmp_path):
    rows = {"A1": "The zorblat met a zorblat.", "A2": "A florp # and a zorblat.",
            "A3": "Plain words only.", "A4": "Nothing odd here.", "A5": "Still nothing odd."}
    root = make_corpus(rows)
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "neurotts.cli", "prepare", f"data.root={root}",
                           f"out={out}", "text=arpabet", "num_workers=1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Each unknown word is said with its letter-to-sound guess, listed beside it.
    assert (out / "oov.tsv").read_text().splitlines() == [
        "word\tcount\texample_id\tsaid_as", "zorblat\t3\tA1\tZ AO1 R B L AE0 T",
        "florp\t1\tA2\tF L AO1 R P"]
    assert (f"CMUdict lacks 2 word(s) (4 occurrence(s)), pronounced by letter-to-sound: "
            f"see {out / 'oov.tsv'}") in proc.stderr
    warning = [ln for ln in proc.stderr.splitlines() if "dropped characters" in ln]
    assert warning == ["  warning: dropped characters not in the 'arpabet' symbol set: '#' "
                       "(in 1 row(s); first metadata.csv:2, A2)"]
    assert "TextWarning" not in proc.stderr and ".py:" not in proc.stderr


def test_audio_rejects_name_their_metadata_line(make_corpus, tmp_path):
    """Missing, zero-byte and non-audio wavs are rejected with their metadata.csv line; a
    zero-byte file is called empty."""
    root = write_bad_corpus(make_corpus)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES,
                                 "audio.max_duration=2.0"])
    assert result.exit_code == 0, result.output
    lines = {row.split("|", 1)[0]: n for n, row in enumerate(
        (root / "metadata.csv").read_bytes().decode("utf-8", "replace").splitlines(), start=1)}
    got = rejects(out)
    for uid in ("MISSING", "ZERO", "CORRUPT", "TRUNC", "TOOLONG"):
        assert got[uid].startswith(f"metadata.csv:{lines[uid]}: "), (uid, got[uid])
    assert got["ZERO"].endswith("ZERO.wav: empty file (0 bytes)")
    assert "Format not recognised" not in got["ZERO"]
    assert got["MISSING"].endswith("MISSING.wav: file not found")


def test_a_very_short_clip_is_kept_with_a_warning(make_corpus, tmp_path):
    root = make_corpus(TEXTS)
    sf.write(root / "wavs" / "BLIP.wav", speechlike(0.05, 22050, lead_silence=0.0), 22050)
    with open(root / "metadata.csv", "a") as f:
        f.write("BLIP|Sixteen letters.|x\n")
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", *SIZES])
    assert result.exit_code == 0, result.output
    assert "BLIP" in {u.id for u in FeatureStore(out).utterances}
    assert (f"warning: 1 clip(s) kept under 0.5 s (the audit excludes them); first "
            f"metadata.csv:{len(TEXTS) + 1}, BLIP: ") in result.output
    assert "for 16 characters of text" in result.output


@pytest.mark.parametrize("sizes,needle", [
    (["data.split.val_size=400"], "(val 400 + test unset, scaled to 0) leave no training data "
                                  "from 12 rows of metadata.csv"),
    (["data.split.val_size=6", "data.split.test_size=6"],
     "(val 6 + test 6) leave no training data from 12 rows of metadata.csv"),
])
def test_split_sizes_are_checked_against_the_rows_before_audio(make_corpus, tmp_path, sizes, needle):
    root = make_corpus(TEXTS)
    out = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={root}", f"out={out}", "num_workers=1",
                                 *UNSIZED, *sizes])
    assert result.exit_code == 2
    assert needle in result.output, result.output
    assert not (out / "mels").exists() or not list((out / "mels").iterdir())
