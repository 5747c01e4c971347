"""Several speakers in one model: the store's speaker table, the models' speaker inputs, the
table in checkpoints, ``synth --speaker``, eval per speaker, serve's ``voice`` and the ONNX
voice (issue 21, part 3). The pitch test on the real sample is the slow one at the end."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from rich.console import Console

from neurotts import checkpoint as ckpt
from neurotts.config import load_config
from neurotts.data.loader import TextMelDataset, collate_text_mel
from neurotts.data.store import FeatureStore, StoreError
from neurotts.models.tacotron2 import Tacotron2, tacotron2_loss
from neurotts.models.wavenet.fold import generate_folded
from neurotts.models.wavenet.generate import generate, generate_naive
from neurotts.models.wavenet.model import WaveNet
from neurotts.models.wavenet.options import GenerateOptions
from neurotts.speakers import SpeakerError, pick_speaker
from neurotts.training.config import load_train_config
from neurotts.training.loop import train
from tests.conftest import SAMPLE, requires_sample
from tests.test_loader import write_store
from tests.test_tacotron2 import ATTENTIONS, TINY, make_config, random_batch
from tests.test_wavenet import teacher_forced_inputs, tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def label_store(root: Path, labels: list[str | None], n: int = 12) -> FeatureStore:
    """``write_store``'s synthetic store with utterance i labelled ``labels[i % len(labels)]``."""
    write_store(root, n=n)
    manifest = root / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["speaker"] = labels[i % len(labels)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return FeatureStore(root)


# ------------------------------------------------------------------------------ store, loader


def test_speaker_table_is_the_sorted_labels_and_one_label_is_one_speaker(tmp_path: Path) -> None:
    store = label_store(tmp_path / "two", ["zoe", "adam", "zoe"])
    assert store.speakers == ["adam", "zoe"]
    assert [store.speaker_id(u) for u in store.utterances[:3]] == [1, 0, 1]
    assert label_store(tmp_path / "one", ["zoe"]).speakers == []
    assert label_store(tmp_path / "none", [None]).speakers == []
    mixed = label_store(tmp_path / "mixed", ["zoe", None])
    with pytest.raises(StoreError, match=r"manifest.jsonl: 6 utterances have no speaker \(first: SYN001\)"):
        _ = mixed.speakers


def test_batches_carry_each_utterance_speaker_id(tmp_path: Path) -> None:
    store = label_store(tmp_path / "s", ["b", "a"])
    data = TextMelDataset(store, store.utterances, store.mel_norm(True))
    batch = collate_text_mel([data[i] for i in range(4)])
    assert batch.speakers.tolist() == [1, 0, 1, 0]
    single = FeatureStore(write_store(tmp_path / "single").root)
    batch = collate_text_mel([TextMelDataset(single, single.utterances, single.mel_norm(True))[0]])
    assert batch.speakers.tolist() == [0]


def test_speaker_names_are_checked_with_one_line() -> None:
    assert pick_speaker(["a", "b"], "b", "model m") == 1
    assert pick_speaker(["a", "b"], None, "model m") is None
    with pytest.raises(SpeakerError, match=r"^--speaker c: model m has no such speaker; its speakers: a, b$"):
        pick_speaker(["a", "b"], "c", "model m")
    with pytest.raises(SpeakerError, match=r"^voice a: model m is a single-speaker model .*leave voice out$"):
        pick_speaker([], "a", "model m", "voice")


# ------------------------------------------------------------------------------ models


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_multi_speaker_tacotron2_forward_loss_and_infer(attention: str) -> None:
    """Shapes and a finite loss with speaker ids, for every attention; the speaker changes
    the output; ids are required by, and refused of, the right models."""
    cfg = make_config(8, [*TINY, f"attention.type={attention}", "speakers.embedding_dim=4"])
    torch.manual_seed(0)
    model = Tacotron2(cfg, 30)
    single_keys = set(model.state_dict())
    multi = Tacotron2(cfg, 30, n_speakers=3)
    multi.load_state_dict(model.state_dict(), strict=False)  # all but the speaker table
    assert set(multi.state_dict()) - single_keys == {
        "speaker_embedding.table.weight", "speaker_embedding.proj.weight",
        "speaker_embedding.proj.bias"}
    text, tl, mels, ml = random_batch([9, 6, 4], [13, 10, 7], 8)
    speakers = torch.tensor([0, 2, 1])
    # The projection starts at zero: a fresh multi-speaker model computes what its
    # single-speaker weights compute, whoever speaks (init_from keeps the base's output).
    torch.manual_seed(1)
    same = multi.eval()(text, tl, mels, ml, speakers=speakers).mel_after
    torch.manual_seed(1)
    base = model.eval()(text, tl, mels, ml).mel_after
    torch.testing.assert_close(same, base)
    multi.train()
    out = multi(text, tl, mels, ml, speakers=speakers)
    assert out.mel_after.shape == (3, 13, 8) and out.stop_logits.shape == (3, 13)
    assert out.alignments.shape == (3, 7, 9)  # ceil(13 / 2) decoder steps
    loss, terms = tacotron2_loss(out, mels, ml, tl, cfg, 0)
    assert torch.isfinite(loss) and set(terms) == {"mel_before", "mel_after", "stop", "guided_attn"}
    loss.backward()
    assert multi.speaker_embedding.proj.weight.grad.abs().sum() > 0
    multi.eval()
    with torch.no_grad():
        multi.speaker_embedding.proj.weight.normal_()
    torch.manual_seed(1)
    a = multi(text, tl, mels, ml, speakers=torch.tensor([0, 0, 0])).mel_after
    torch.manual_seed(1)
    b = multi(text, tl, mels, ml, speakers=torch.tensor([1, 1, 1])).mel_after
    assert (a - b).abs().max() > 1e-3
    inf = multi.infer(text, tl, speakers)
    assert inf.mels.shape[0] == 3
    with pytest.raises(ValueError, match="3 speakers: pass speaker ids"):
        multi(text, tl, mels, ml)
    with pytest.raises(ValueError, match="no speakers, but speaker ids were given"):
        model(text, tl, mels, ml, speakers=speakers)


@pytest.mark.parametrize("mode", ["kernel", "views", "indexed"])
@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_wavenet_global_conditioning_incremental_equals_full(output: str, mode: str) -> None:
    """Every back end takes the speaker (it enters through the upsampled conditioning): each
    recorded step equals the teacher-forced pass with the same speakers, and the speaker
    changes the output."""
    if mode == "kernel":
        from neurotts.models.wavenet import cpu_kernel

        if cpu_kernel.load() is None:
            pytest.skip("no C compiler for the CPU kernel")
    torch.manual_seed(0)
    model = WaveNet(tiny_config(output), n_speakers=3)
    with torch.no_grad():
        model.head[-1].weight.mul_(10.0)
        model.speaker_embedding.proj.weight.normal_()  # a trained speaker's offset
    mels = torch.randn(2, 12, 8)
    lengths = torch.tensor([12, 9])
    speakers = torch.tensor([2, 0])
    gen = generate(model, mels, lengths, GenerateOptions(mode=mode), record=True,
                   generator=torch.Generator().manual_seed(1), speakers=speakers)
    with torch.no_grad():
        inputs = teacher_forced_inputs(model, gen.samples)
        ref = model(inputs, mels, lengths, speakers=speakers)
        other = model(inputs, mels, lengths, speakers=torch.tensor([1, 1]))
    torch.testing.assert_close(gen.outputs, ref, atol=1e-4, rtol=1e-4)
    assert (other - ref).abs().max() > 0.1
    naive = generate_naive(model, mels, lengths, record=True, step_threads=1, speakers=speakers,
                           generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(naive.outputs, gen.outputs, atol=1e-4, rtol=1e-4)


def test_folded_wavenet_gives_each_segment_its_utterance_speaker() -> None:
    """Folded generation of two utterances by two speakers equals folding each alone."""
    torch.manual_seed(0)
    model = WaveNet(tiny_config("mulaw"), n_speakers=2)
    with torch.no_grad():
        model.speaker_embedding.proj.weight.normal_()
    mels = torch.randn(2, 40, 8)
    options = GenerateOptions(temperature=0.0, fold="3", mode="views")
    both = generate_folded(model, mels, None, options, 16000, speakers=torch.tensor([1, 0]))
    for i, sid in enumerate([1, 0]):
        alone = generate_folded(model, mels[i:i + 1], None, options, 16000,
                                speakers=torch.tensor([sid]))
        torch.testing.assert_close(both[i], alone[0], atol=1e-5, rtol=0)
    swapped = generate_folded(model, mels, None, options, 16000, speakers=torch.tensor([0, 1]))
    assert not torch.equal(swapped, both)


# ------------------------------------------------------------------------------ train, checkpoint, synth, eval


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Tacotron 2 trained a few steps on a two-speaker store, and one on a
    single-speaker store: their run folders and stores."""
    root = tmp_path_factory.mktemp("speakers")
    out = {}
    for name, labels in (("multi", ["bob", "ann"]), ("single", [None])):
        store = root / f"store_{name}"
        label_store(store, labels, n=12)
        run = root / f"run_{name}"
        cfg = load_train_config(["experiment=tiny", f"data.features={store}", f"run.dir={run}",
                                 "trainer.max_steps=4", "trainer.val_every=4",
                                 "trainer.checkpoint_every=4", "trainer.media.griffin_lim_iters=0"])
        train(cfg, Console(file=io.StringIO()))
        out[name], out[f"store_{name}"] = run, store
    return out


def test_checkpoint_carries_the_speaker_table(trained: dict[str, Path]) -> None:
    path = ckpt.resolve_checkpoint(trained["multi"])
    assert ckpt.load_checkpoint(path)[ckpt.Key.SPEAKERS] == ["ann", "bob"]
    model = ckpt.load_trained(trained["multi"], "tacotron2")
    assert model.speakers == ["ann", "bob"]
    assert model.model.speaker_embedding.table.weight.shape[0] == 2
    single = ckpt.load_trained(trained["single"], "tacotron2")
    assert single.speakers == [] and not hasattr(single.model, "speaker_embedding")
    assert not any(k.startswith("speaker") for k in single.model.state_dict())
    # A checkpoint written before the table existed reads as single-speaker.
    payload = ckpt.load_checkpoint(ckpt.resolve_checkpoint(trained["single"]))
    del payload[ckpt.Key.SPEAKERS]
    old = trained["single"] / "old.pt"
    ckpt.save_checkpoint(old, payload)
    assert ckpt.load_trained(old, "tacotron2").speakers == []


def test_resume_refuses_another_speaker_table(trained: dict[str, Path], tmp_path: Path) -> None:
    from neurotts.training.errors import TrainingError

    store = tmp_path / "store3"
    label_store(store, ["ann", "bob", "cy"])
    cfg = load_train_config(["experiment=tiny", f"data.features={store}",
                             f"run.dir={trained['multi']}", "trainer.max_steps=6",
                             "trainer.media.griffin_lim_iters=0"])
    with pytest.raises(TrainingError, match="other features \\(symbols, speakers"):
        train(cfg, Console(file=io.StringIO()))


def test_a_single_speaker_base_starts_a_multi_speaker_run(trained: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """``init_from`` a single-speaker run into a two-speaker store: every tensor comes from
    the base but the speaker embedding ("new"); its projection starts at zero, so at step 0
    the model computes what the base computes, whoever speaks."""
    from neurotts.training.init_from import initialise
    from neurotts.training.tasks import build_task

    store = FeatureStore(trained["store_multi"])
    cfg = load_train_config(["experiment=tiny", f"data.features={store.root}",
                             f"run.dir={tmp_path / 'ft'}", f"init_from={trained['single']}",
                             "trainer.max_steps=1", "trainer.media.griffin_lim_iters=0"])
    task = build_task(cfg, store)
    report = initialise(str(cfg.init_from), task.model, "tacotron2", store, True)
    status = {r.name: (r.status, r.reason) for r in report.rows}
    speaker_keys = {"speaker_embedding.table.weight", "speaker_embedding.proj.weight",
                    "speaker_embedding.proj.bias"}
    assert {n for n, (s, _) in status.items() if s == "new"} == speaker_keys
    assert all(status[n][1] == "not in base: keeps its fresh init" for n in speaker_keys)
    # Same symbols: the embedding is "mapped" with every row shared, the rest loaded.
    assert status.pop("encoder.embedding.weight")[0] == "mapped"
    assert report.symbols.new() == [] and report.symbols.removed == ()
    assert {s for n, (s, _) in status.items() if n not in speaker_keys} == {"loaded"}
    base = ckpt.load_trained(trained["single"], "tacotron2").model.eval()
    multi = task.model.eval()
    data = TextMelDataset(store, store.utterances[:3], store.mel_norm(True))
    text, tl, mels, ml, _ = collate_text_mel([data[i] for i in range(3)])
    torch.manual_seed(1)  # the prenet's dropout stays on in eval mode
    want = base(text, tl, mels, ml).mel_after
    for speaker in range(len(store.speakers)):
        ids = torch.full((3,), speaker, dtype=torch.long)
        torch.manual_seed(1)
        torch.testing.assert_close(multi(text, tl, mels, ml, speakers=ids).mel_after, want)
    # The run (as `neurotts train` runs it): the table says so, in the folder and checkpoint.
    from tests.test_training import run

    _, out = run(cfg)
    assert "new" in out and "speaker_embedding" in out
    tsv = (tmp_path / "ft" / "init_from.tsv").read_text().splitlines()
    rows = {line.split("\t")[1]: line.split("\t")[3] for line in tsv[1:]
            if line.startswith("tensor\t")}
    assert {n for n, s in rows.items() if s == "new"} == speaker_keys
    saved = ckpt.load_checkpoint(tmp_path / "ft" / "checkpoints" / "step_00000001.pt")
    assert saved[ckpt.Key.SPEAKERS] == ["ann", "bob"]
    assert saved["init_from"]["tensors"] == {"loaded": len(status) - 3, "mapped": 1, "new": 3}


def neurotts(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "neurotts.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_synth_speaker_errors_are_one_line(trained: dict[str, Path], tmp_path: Path) -> None:
    wrong = neurotts("synth", "Hello.", "-a", str(trained["multi"]), "-o", str(tmp_path / "a.wav"),
                     "--speaker", "carl")
    assert wrong.returncode != 0
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and "--speaker carl:" in lines[0] and "its speakers: ann, bob" in lines[0]
    single = neurotts("synth", "Hello.", "-a", str(trained["single"]), "-o",
                      str(tmp_path / "b.wav"), "--speaker", "ann")
    lines = single.stderr.strip().splitlines()
    assert single.returncode != 0 and len(lines) == 1
    assert "is a single-speaker model" in lines[0] and "leave --speaker out" in lines[0]
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


def test_synth_speaks_as_the_named_speaker_or_the_first(trained: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Same seed, different speaker: different audio; no --speaker: the first speaker (ann),
    with a note."""
    wavs = {}
    for who in ("ann", "bob", None):
        out = tmp_path / f"{who}.wav"
        args = ["synth", "Hello there.", "-a", str(trained["multi"]), "-o", str(out), "--seed", "3"]
        proc = neurotts(*args, *(["--speaker", who] if who else []))
        assert proc.returncode == 0, proc.stderr
        if who is None:
            assert "note: no --speaker: speaking as ann" in proc.stdout + proc.stderr
        wavs[who] = sf.read(out)[0]
    assert np.array_equal(wavs[None], wavs["ann"])
    n = min(wavs["ann"].size, wavs["bob"].size)
    assert not np.allclose(wavs["ann"][:n], wavs["bob"][:n])


def test_eval_reports_per_speaker(trained: dict[str, Path], tmp_path: Path) -> None:
    from neurotts.evaluation.config import EvalConfig
    from neurotts.evaluation.run import run as evaluate

    cfg = load_config("eval", EvalConfig, [f"acoustic={trained['multi']}",
                                           f"data.features={trained['store_multi']}",
                                           f"out={tmp_path / 'eval'}", "split=train",
                                           "asr=false", "stop_unaligned=false", "device=cpu",
                                           "plots=0", "limit=5"])
    report = evaluate(cfg, Console(file=io.StringIO()))
    store = FeatureStore(trained["store_multi"])
    expected = {}
    for u in store.split("train")[:5]:
        expected[u.speaker] = expected.get(u.speaker, 0) + 1
    assert {k: v["n_utterances"] for k, v in report["speakers"].items()} == expected
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["summary"]["speakers"].keys() == expected.keys()
    assert all(r["speaker"] == store[r["id"]].speaker for r in saved["utterances"])
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "| speaker | n | failed |" in md and "| ann |" in md and "| bob |" in md


# ------------------------------------------------------------------------------ serve


def test_serve_voice_is_a_speaker(tmp_path: Path) -> None:
    from neurotts.serve.voice import untrained_checkpoint
    from tests.serve_support import TINY as SERVE_TINY
    from tests.serve_support import ThreadServer, request, serve_config

    path = tmp_path / "multi.pt"
    untrained_checkpoint(path, SERVE_TINY, speakers=["zed", "amy"])
    server = ThreadServer(serve_config(path, "seed=0"))
    try:
        voices = request(server.port, "GET", "/api/voices").json()["voices"]
        assert [v["name"] for v in voices] == ["amy", "zed"]
        assert [v["default"] for v in voices] == [True, False]
        bad = request(server.port, "POST", "/v1/audio/speech",
                      {"input": "Hi there.", "voice": "bob", "stream": False})
        assert bad.status == 422 and "amy, zed" in bad.json()["error"]["message"]
        for voice in ("zed", "neurotts"):
            ok = request(server.port, "POST", "/v1/audio/speech",
                         {"input": "Hi there.", "voice": voice, "stream": False})
            assert ok.status == 200 and len(ok.body) > 1000
        assert request(server.port, "GET", "/api/tts?text=Hi&voice=amy").status == 200
        assert request(server.port, "GET", "/api/tts?text=Hi&voice=x").status == 422
    finally:
        server.stop()


def test_streamed_decoding_uses_each_sentence_speaker(tmp_path: Path) -> None:
    """The server's incremental decoder, sentences of two speakers in one batch, gives each
    what ``infer`` gives it alone with its speaker (same seed, same dropout draws)."""
    from neurotts.serve.stream import IncrementalDecoder, Sentence
    from neurotts.serve.voice import untrained_checkpoint
    from neurotts.synthesis.engine import AcousticModel
    from tests.serve_support import TINY as SERVE_TINY

    path = tmp_path / "multi.pt"
    untrained_checkpoint(path, SERVE_TINY, speakers=["amy", "zed"])
    acoustic = AcousticModel.load(path, torch.device("cpu"))
    ids = [int(i) for i in acoustic.frontend.symbols.to_ids(list("hello"))] + [1]
    frames = {}
    for sid in (0, 1):
        torch.manual_seed(5)
        decoder = IncrementalDecoder(acoustic.model)
        sentence = Sentence(ids, sid)
        decoder.join([sentence])
        while sentence.length is None:
            decoder.step()
        frames[sid] = sentence.frames[: sentence.length]
        torch.manual_seed(5)
        with pytest.warns(RuntimeWarning, match="max decoder steps"):  # untrained: no stop
            alone = acoustic.model.infer(torch.tensor([ids]), torch.tensor([len(ids)]),
                                         torch.tensor([sid]))
        assert int(alone.mel_lengths[0]) == sentence.length
        torch.testing.assert_close(sentence.alignment(), alone.alignments[0], atol=1e-5,
                                   rtol=1e-5)
    assert (frames[0] - frames[1]).abs().max() > 1e-3


# ------------------------------------------------------------------------------ ONNX


def test_onnx_voice_takes_a_speaker(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from neurotts.export.config import ExportConfig
    from neurotts.export.run import run as export
    from neurotts.runtime.synth import Synthesizer
    from neurotts.serve.voice import untrained_checkpoint
    from tests.serve_support import TINY as SERVE_TINY

    path = tmp_path / "multi.pt"
    untrained_checkpoint(path, SERVE_TINY,
                         speakers=["amy", "zed"])
    cfg = load_config("export", ExportConfig, [f"acoustic={path}", f"out={tmp_path / 'voice'}"])
    export(cfg, Console(file=io.StringIO()))  # the parity check runs sentences of both speakers
    doc = json.loads((tmp_path / "voice" / "voice.json").read_text())
    assert doc["speakers"] == ["amy", "zed"]
    synth = Synthesizer(tmp_path / "voice")
    amy = synth.speak("Hello.", seed=1, speaker="amy").wav
    assert np.array_equal(synth.speak("Hello.", seed=1).wav, amy)  # no speaker: the first
    zed = synth.speak("Hello.", seed=1, speaker="zed").wav
    n = min(amy.size, zed.size)
    assert not np.allclose(amy[:n], zed[:n])
    with pytest.raises(SpeakerError, match="has no such speaker; its speakers: amy, zed"):
        synth.speak("Hello.", speaker="bob")


# ------------------------------------------------------------------------------ the real sample


@pytest.mark.slow
@requires_sample
def test_two_speakers_speak_with_their_own_voice(tmp_path: Path) -> None:
    """bench/speakers.py's corpus cut down (the 21 clips of at most 3 s per speaker, the second
    speaker 4 semitones up) and 200 steps (about 2 minutes of one idle core): fed the same
    recorded lines (teacher forcing), the model speaking as ``lj_up4`` puts its spectrum at
    least 3 semitones above its ``lj`` output. With the speaker id ignored the shift would be
    0: it was 0.0 at step 50 (the projection starts at zero), 4.2-5.5 from step 100 to 300
    (the recordings' mels: 4.2). The pitch of free-running synthesis is the bench's figure
    (README, "Several speakers")."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import speakers as bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert SAMPLE.is_dir()
    info = bench.train_two_speakers(tmp_path, clips=30, max_seconds=3.0, steps=200, extra=[])
    assert info["clips_per_speaker"] >= 15, info
    shift = bench.teacher_forced_shift(tmp_path / "run", tmp_path / "store")
    assert shift["training_data_mel_shift"] == pytest.approx(4.0, abs=0.5), shift
    assert 3.0 <= shift["teacher_forced_shift"] <= 8.0, shift
