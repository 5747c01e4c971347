"""Corpus readers: each layout, auto-detection, and bad rows rejected by file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurotts.data.formats import DatasetError, read_corpus
from neurotts.data.formats.tables import three_columns

LJ_ROWS = [
    ("LJ001-0001", "Printing, in the only sense with which we are at present concerned,",
     "Printing, in the only sense with which we are at present concerned,"),
    ("LJ001-0002", "in being comparatively modern.", "in being comparatively modern."),
    ("LJ001-0003", "For although the Chinese took impressions from wood blocks in 1450,",
     "For although the Chinese took impressions from wood blocks in fourteen fifty,"),
]


def touch_audio(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def test_ljspeech_three_columns_detected(tmp_path):
    (tmp_path / "metadata.csv").write_text("".join(f"{a}|{b}|{c}\n" for a, b, c in LJ_ROWS))
    touch_audio(tmp_path / "wavs", [f"{r[0]}.wav" for r in LJ_ROWS])
    corpus = read_corpus(tmp_path)
    assert corpus.format == "ljspeech" and "column 3 restates column 2" in corpus.reading
    assert [r.id for r in corpus.rows] == [r[0] for r in LJ_ROWS]
    assert corpus.rows[2].text == LJ_ROWS[2][1]  # the raw column: we normalise ourselves
    assert corpus.rows[0].audio == tmp_path / "wavs" / "LJ001-0001.wav"
    assert corpus.rows[1].where == "metadata.csv:2" and corpus.rows[0].speaker is None


def test_piper_speaker_column_detected(tmp_path):
    lines = ["a1|anna|Hallo Welt.", "b1|bert|Guten Morgen, wie geht es?", "a2|anna|Noch ein Satz.",
             "b2.wav|bert|Und der letzte."]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    touch_audio(tmp_path / "wav", ["a1.wav", "b1.wav", "a2.flac", "b2.wav"])
    corpus = read_corpus(tmp_path)
    assert corpus.format == "piper" and "speaker labels" in corpus.reading
    assert [(r.id, r.speaker) for r in corpus.rows] == [("a1", "anna"), ("b1", "bert"),
                                                       ("a2", "anna"), ("b2", "bert")]
    assert corpus.rows[2].audio.name == "a2.flac" and corpus.rows[3].audio.name == "b2.wav"
    assert corpus.speakers == ["anna", "bert"]


def test_ambiguous_three_columns_ask_for_the_format(tmp_path):
    lines = ["a|one two|three four", "b|hello world|goodbye moon"]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        read_corpus(tmp_path)
    assert "set data.format=ljspeech or data.format=piper" in str(err.value)
    assert "\n" not in str(err.value)
    # Asked explicitly, each reading is taken.
    assert read_corpus(tmp_path, "piper").rows[0].speaker == "one two"
    assert read_corpus(tmp_path, "ljspeech").rows[0].text == "one two"


def test_two_columns_are_read_as_id_text(tmp_path):
    (tmp_path / "metadata.csv").write_text("a|Hello there.\nb|Second line.\n")
    touch_audio(tmp_path / "wav", ["a.wav", "b.flac"])  # Piper's single-speaker layout
    corpus = read_corpus(tmp_path)
    assert corpus.format == "ljspeech" and [r.text for r in corpus.rows] == ["Hello there.", "Second line."]
    assert [r.audio for r in corpus.rows] == [tmp_path / "wav" / "a.wav", tmp_path / "wav" / "b.flac"]
    assert corpus.reading.startswith("read as ID|text")


def test_three_columns_votes():
    assert three_columns([(1, ["a", "Dr. Who", "Doctor Who"])]) == "ljspeech"
    assert three_columns([(1, ["a", "spk_1", "A long sentence here."])]) == "piper"
    assert three_columns([(1, ["a", "x y", "nothing alike at all"])]) is None


def test_coqui_header(tmp_path):
    (tmp_path / "metadata.csv").write_text(
        "audio_file|text|speaker_name|emotion_name\n"
        "wavs/x1.wav|Bonjour.|marie|neutral\n"
        "wavs/x2.wav||marie|neutral\n"
        "wavs/x3.wav|Salut.|paul\n")
    corpus = read_corpus(tmp_path)
    assert corpus.format == "coqui"
    assert [(r.id, r.speaker, r.audio) for r in corpus.rows] == [("x1", "marie", tmp_path / "wavs/x1.wav")]
    reasons = [j.reason for j in corpus.rejects]
    assert reasons == ["metadata.csv:3: empty transcript", "metadata.csv:4: 3 fields, the header has 4"]


@pytest.mark.parametrize("name", ["list.csv", "list.tsv", "list.jsonl"])
def test_manifest_kinds(tmp_path, name):
    rows = [("clips/a.wav", "First one.", "s1"), ("/abs/b.flac", "Second one.", "s2")]
    if name.endswith(".jsonl"):
        body = "".join(json.dumps({"audio_filepath": a, "text": t, "speaker": s}) + "\n" for a, t, s in rows)
    else:
        sep = "\t" if name.endswith(".tsv") else ","
        body = f"path{sep}Text{sep}speaker\n" + "".join(f"{a}{sep}{t}{sep}{s}\n" for a, t, s in rows)
    (tmp_path / name).write_text(body)
    corpus = read_corpus(tmp_path)  # no metadata.csv: the one table in the folder
    assert corpus.format == "manifest"
    assert [(r.id, r.audio, r.text, r.speaker) for r in corpus.rows] == [
        ("a", tmp_path / "clips/a.wav", "First one.", "s1"), ("b", Path("/abs/b.flac"), "Second one.", "s2")]


def test_manifest_without_text_column_is_one_line(tmp_path):
    (tmp_path / "m.csv").write_text("audio,words\na.wav,hello\n")
    with pytest.raises(DatasetError) as err:
        read_corpus(tmp_path, "manifest", "m.csv")
    assert "m.csv:1: no text column" in str(err.value) and "found audio, words" in str(err.value)


def test_folder_pairs_clips_with_transcripts(tmp_path):
    touch_audio(tmp_path / "spk1", ["a.wav", "b.flac", "c.mp3"])
    touch_audio(tmp_path / "spk2", ["a.ogg"])
    (tmp_path / "spk1" / "a.txt").write_text("First line\nsecond line\n")
    (tmp_path / "spk1" / "b.lab").write_text("Lab text")
    (tmp_path / "spk2" / "a.txt").write_bytes("caf\xe9".encode("latin-1"))
    corpus = read_corpus(tmp_path)
    assert corpus.format == "folder"
    assert [(r.id, r.text) for r in corpus.rows] == [("spk1_a", "First line second line"),
                                                    ("spk1_b", "Lab text")]
    reasons = sorted(j.reason for j in corpus.rejects)
    assert reasons[0] == "spk1/c.mp3: no transcript (c.txt or c.lab)"
    assert reasons[1].startswith("spk2/a.txt:1: text is not valid UTF-8")


def test_folder_without_any_transcript_is_one_line(tmp_path):
    touch_audio(tmp_path, ["a.wav", "b.wav"])
    with pytest.raises(DatasetError) as err:
        read_corpus(tmp_path)
    assert "2 audio file(s) but no transcript beside any" in str(err.value)


def test_bad_rows_are_rejected_by_line_and_good_ones_kept(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(
        b"\xef\xbb\xbfok1|Fine text.|Fine text.\n"
        b"bad\xff|Broken bytes|x\n"
        b"\n"
        b"toomany|a|b|c\n"
        b"ok1|Again.|Again.\n"
        b"empty||\n"
        b"a/b|Slash id.|Slash id.\n"
        b"ok2|More text.|More text.\n")
    corpus = read_corpus(tmp_path, "ljspeech")
    assert [r.id for r in corpus.rows] == ["ok1", "ok2"]
    assert sorted(j.reason for j in corpus.rejects) == sorted([
            "metadata.csv:2: text is not valid UTF-8 (invalid start byte at byte 3)",
            "metadata.csv:4: too many fields (4; expected 3, ID|raw|normalized, or 2, ID|text)",
            "metadata.csv:5: duplicate id (first at line 1)",
            "metadata.csv:6: empty transcript",
            "metadata.csv:7: invalid id 'a/b'"])


def test_empty_dir_and_unknown_format(tmp_path):
    with pytest.raises(DatasetError, match="no corpus here"):
        read_corpus(tmp_path)
    with pytest.raises(DatasetError, match="expected one of auto, ljspeech"):
        read_corpus(tmp_path, "kaldi")


SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs ../shared/data/ljspeech-sample")
@pytest.mark.parametrize("fmt", ["ljspeech", "piper", "coqui", "manifest", "folder"])
def test_sample_relaid_reads_the_same_rows(tmp_path, fmt):
    from tests.layouts import relay

    lj = read_corpus(SAMPLE)
    corpus = read_corpus(relay(SAMPLE, tmp_path / fmt, fmt))
    assert corpus.format == fmt and not corpus.rejects
    assert [(r.id, r.text, r.audio.resolve()) for r in corpus.rows] == [
        (r.id, r.text, r.audio.resolve()) for r in lj.rows]
    assert corpus.speakers == ([] if fmt in ("ljspeech", "folder") else ["lj"])
