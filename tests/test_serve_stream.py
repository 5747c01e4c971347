"""The server's streaming synthesis without HTTP: incremental decoding equals ``infer``,
chunked Griffin-Lim stays close to whole-utterance Griffin-Lim, and word timings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from neurotts.serve.stream import (
    ChunkVocoder,
    IncrementalDecoder,
    MelFinisher,
    Sentence,
    StreamConfig,
    Stretch,
    postnet_radius,
)
from neurotts.serve.voice import VocoderConfig, load_voice
from neurotts.synthesis.timestamps import Word, to_json, to_webvtt, word_times
from tests.serve_support import tiny_checkpoint


def voice_at(folder, extra=()):
    vocoder = VocoderConfig(path="griffinlim", fold="auto", overlap_ms=10.0, fade="adaptive",
                            precision="fp32")
    return load_voice("v", tiny_checkpoint(folder, extra), vocoder, "cpu", 16)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return voice_at(tmp_path_factory.mktemp("voice"))


def infer(model, ids: list[int]):
    """``Tacotron2.infer`` of one sentence and its decoder frames (before the postnet)."""
    text, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the length guard: expected here
        return model.infer(text, lengths)


def stream_one(voice, ids: list[int], every: int = 1) -> tuple[Sentence, torch.Tensor, list[int]]:
    """Decode one sentence with the incremental decoder; log-mels as they became final, and
    how many became final after each step."""
    dec, s = IncrementalDecoder(voice.model), Sentence(ids)
    dec.join([s])
    finisher = MelFinisher(voice.model, voice.to_log_mel, every)
    parts, counts = [], []
    while s.length is None:
        dec.step()
        parts.append(finisher.advance(s))
        counts.append(parts[-1].shape[0])
    return s, torch.cat(parts), counts


@pytest.mark.parametrize("attention", ["location", "dca"])
def test_incremental_decoding_equals_infer(tmp_path, attention):
    voice = voice_at(tmp_path, (f"attention.type={attention}",))
    ids = voice.encode("Speak this sentence, then stop.", 200).ids[0]
    with torch.inference_mode():
        torch.manual_seed(7)
        ref = infer(voice.model, ids)
        torch.manual_seed(7)
        memory = voice.model.encoder(torch.tensor([ids]), torch.tensor([len(ids)]))
        frames, align, _, _ = voice.model._decode_free(
            memory, torch.ones(1, len(ids), dtype=torch.bool), torch.tensor([len(ids)]))
        torch.manual_seed(7)
        s, mels, counts = stream_one(voice, ids)
    n = int(ref.mel_lengths[0])
    assert s.length == n
    # The decoder's frames and alignment: the same arithmetic in the same order, bit for bit.
    assert torch.equal(s.frames[:n], frames[0, :n])
    assert torch.equal(s.alignment(), align[0])
    # Postnet windows vs one pass over the sentence: the same values up to float rounding.
    torch.testing.assert_close(mels, voice.to_log_mel(ref.mels[0, :n]), atol=1e-5, rtol=1e-5)
    # Streaming, not all at the end: frames became final while decoding went on.
    radius = postnet_radius(voice.model)
    assert sum(counts[:-1]) == (s.steps - 1) * voice.reduction_factor - radius > 0
    assert counts[0] == 0 and max(counts[:-1]) == voice.reduction_factor
    # In runs of at least 8 frames (fewer postnet calls): the same mels.
    with torch.inference_mode():
        torch.manual_seed(7)
        _, runs, counts = stream_one(voice, ids, every=8)
    torch.testing.assert_close(runs, mels, atol=1e-5, rtol=1e-5)
    assert all(c == 0 or c >= 8 for c in counts[:-1]) and sum(c > 0 for c in counts) > 2


def test_sentences_join_and_leave_between_steps(voice):
    """With the prenet's dropout off (its draws depend on the batch), a sentence that joins a
    running batch, or shares it with a shorter one that leaves, gets its solo frames."""
    model = voice.model
    old = model.decoder.prenet.dropout
    model.decoder.prenet.dropout = 0.0
    try:
        texts = ["A long first sentence that keeps going for a while.", "Short one.",
                 "A third joins later on."]
        ids = [voice.encode(t, 200).ids[0] for t in texts]
        with torch.inference_mode():
            solo = [infer(model, x) for x in ids]
            dec = IncrementalDecoder(model)
            sentences = [Sentence(x) for x in ids]
            dec.join(sentences[:2])
            for _ in range(5):
                dec.step()
            dec.join(sentences[2:])
            assert len(dec.items) == 3
            while dec.items:
                dec.step()
        assert sentences[1].length < sentences[0].length  # the short one left first
        for s, ref in zip(sentences, solo, strict=True):
            n = int(ref.mel_lengths[0])
            assert s.length == n
            finisher = MelFinisher(model, voice.to_log_mel)
            torch.testing.assert_close(finisher.advance(s), voice.to_log_mel(ref.mels[0, :n]),
                                       atol=1e-4, rtol=1e-4)
    finally:
        model.decoder.prenet.dropout = old


def spectrum(wav: np.ndarray) -> torch.Tensor:
    return torch.stft(torch.from_numpy(wav), 1024, 256, window=torch.hann_window(1024),
                      return_complex=True).abs()


def chunked(voice, mels: torch.Tensor, cfg: StreamConfig, pieces: int) -> np.ndarray:
    """Vocode ``mels`` through a ChunkVocoder fed in ``pieces`` parts, as decoding would."""
    cv = ChunkVocoder(cfg, voice.hop_length)
    out = []
    bounds = np.linspace(0, mels.shape[0], pieces + 1).astype(int)
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        cv.push(mels[a:b], k == pieces - 1)
        for w in cv.windows():
            out.append(cv.accept(w, voice.griffin_lim.unnormalised(w.mels[None])[0].numpy()))
    return np.concatenate(out)


def test_streamed_audio_is_close_to_whole_utterance_audio(voice):
    """Tolerance: spectral convergence ||S_stream - S_whole|| / ||S_whole|| <= 0.15 and mean
    log-spectral difference <= 1 dB, with the shipped chunking (first 16, then 96 frames,
    8 context, 2 cross-fade)."""
    ids = voice.encode("A sentence long enough for several chunks of audio, surely, since it goes "
                       "on and on for quite a while longer.", 200).ids[0]
    with torch.inference_mode():
        torch.manual_seed(1)
        ref = infer(voice.model, ids)
        n = int(ref.mel_lengths[0])
        mels = voice.to_log_mel(ref.mels[0, :n])
        whole = voice.griffin_lim.unnormalised(mels[None])[0].numpy()
        cfg = StreamConfig(16, 96, 8, 2, 16)
        streamed = chunked(voice, mels, cfg, pieces=7)
    assert streamed.shape == whole.shape == (n * voice.hop_length,)
    a, b = spectrum(streamed), spectrum(whole)
    convergence = float(torch.linalg.norm(a - b) / torch.linalg.norm(b))
    log_diff = float((20 * torch.log10((a + 1e-5) / (b + 1e-5))).abs().mean())
    print(f"spectral convergence {convergence:.3f}, mean log-spectral difference {log_diff:.2f} dB")
    assert convergence <= 0.15 and log_diff <= 1.0, (convergence, log_diff)
    # Without context or cross-fade the joins are audible: the measure does see chunking.
    bare = chunked(voice, mels, StreamConfig(16, 96, 0, 0, 16), pieces=7)
    assert float(torch.linalg.norm(spectrum(bare) - b) / torch.linalg.norm(b)) > convergence


def test_stretch_streams_like_whole():
    torch.manual_seed(0)
    mels = torch.randn(50, 4)
    assert torch.equal(Stretch(1.0).advance(mels, True), mels)
    for speed in (0.5, 1.5, 2.0):
        whole = Stretch(speed).advance(mels, True)
        assert whole.shape[0] == int(np.ceil(50 / speed))
        s = Stretch(speed)
        parts = [s.advance(mels[a:a + 7], a + 7 >= 50) for a in range(0, 50, 7)]
        torch.testing.assert_close(torch.cat(parts), whole)


def test_word_times_from_a_constructed_alignment():
    # "hi you." + EOS: symbols h i _ y o u . ~ ; 10 decoder steps, r=2, hop 256 at 22.05 kHz.
    symbols = ["h", "i", " ", "y", "o", "u", ".", "~"]
    path = [0, 0, 1, 1, 2, 3, 4, 0, 5, 6]  # step 7 glances back: the path stays monotonic
    alignment = np.full((10, 8), 0.01)
    alignment[np.arange(10), path] = 1.0
    step = 2 * 256 / 22050
    words = word_times(alignment, "hi you.", symbols, 256, 2, 22050, n_frames=19)
    assert [w.word for w in words] == ["hi", "you."]
    assert words[0].start == 0.0 and words[0].end == pytest.approx(4 * step)
    assert words[1].start == pytest.approx(5 * step)
    assert words[1].end == pytest.approx(19 * 256 / 22050)
    # A word attention skipped gets zero length where the path passed it.
    skipped = np.full((4, 8), 0.01)
    skipped[np.arange(4), [0, 1, 7, 7]] = 1.0  # straight from "hi" to the end symbol
    words = word_times(skipped, "hi you.", symbols, 256, 2, 22050)
    assert words[1].start == words[1].end == pytest.approx(2 * step)
    # Word names come from the symbols when the text's words do not match them.
    assert [w.word for w in word_times(alignment, "hi", symbols, 256, 2, 22050)] == ["hi", "you."]
    with pytest.raises(ValueError):
        word_times(alignment[:, :5], "hi you.", symbols, 256, 2, 22050)


def test_webvtt_and_json():
    assert to_json([Word("a", 0.12345, 1 / 3)]) == [{"word": "a", "start": 0.123, "end": 0.333}]
    vtt = to_webvtt([Word("a&b", 0.0, 0.5), Word("c", 61.25, 3723.5)])
    assert vtt == ("WEBVTT\n\n00:00:00.000 --> 00:00:00.500\na&amp;b\n\n"
                   "00:01:01.250 --> 01:02:03.500\nc\n\n")


def run_engine(voice, texts: list[str]) -> list[list[tuple[str, object]]]:
    """``texts`` (one sentence each) through an :class:`Engine`; each job's events."""
    import threading
    import time

    from neurotts.serve.batcher import Engine, SentenceJob
    from neurotts.serve.metrics import Metrics

    engine = Engine(voice, StreamConfig(16, 64, 8, 2, 16), 4, Metrics({}))
    events: list[list[tuple[str, object]]] = [[] for _ in texts]
    done = threading.Semaphore(0)

    def sink(k: int):
        def put(kind: str, payload: object) -> None:
            events[k].append((kind, payload))
            if kind in ("end", "error", "timeout"):
                done.release()
        return put

    jobs = [SentenceJob(Sentence(voice.encode(t, 200).ids[0]), t, 1.0, time.monotonic() + 60, sink(k))
            for k, t in enumerate(texts)]
    engine.start()
    engine.submit(jobs)
    for _ in texts:
        assert done.acquire(timeout=60)
    engine.stop()
    return events


def test_engine_streams_chunks_or_whole_sentences(voice):
    import dataclasses

    texts = ["First of three.", "The second sentence is longer than that.", "Third."]
    for chunked, v in ((True, voice), (False, dataclasses.replace(voice, griffin_lim=None))):
        events = run_engine(v, texts)
        for evs in events:
            kinds = [k for k, _ in evs]
            assert kinds[-2:] == ["words", "end"] and set(kinds[:-2]) == {"audio"}
            audio = [p for k, p in evs if k == "audio"]
            assert sum(a.size for a in audio) == evs[-1][1]
            # Griffin-Lim: several chunks per sentence; a whole-sentence vocoder (WaveNet's
            # path, stood in for by the whole-utterance Griffin-Lim here): one.
            assert (len(audio) > 1) if chunked else (len(audio) == 1)


def test_serving_does_not_import_training():
    from tests.test_architecture import loaded_after_import, under

    loaded = loaded_after_import("neurotts.serve.app", "neurotts.serve.run")
    assert "neurotts.serve.batcher" in loaded  # the check itself ran
    assert under(loaded, "neurotts.training") == set()
    # Everything outside neurotts.serve comes in through its one adapter module.
    import ast
    from pathlib import Path

    import neurotts.serve

    for path in Path(neurotts.serve.__file__).parent.glob("*.py"):
        if path.name == "voice.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neurotts."):
                assert node.module.startswith(("neurotts.serve", "neurotts.config",
                                               "neurotts.errors")), (path.name, node.module)


def test_a_run_past_max_symbols_is_refused_and_long_text_is_capped(tmp_path) -> None:
    """The server encodes with synth's symbol cap: an unbroken run cannot become one piece
    whose decoder stalls the shared batch, and long text is cut into bounded pieces."""
    from neurotts.serve.voice import SynthesisError

    voice = voice_at(tmp_path, ())
    with pytest.raises(SynthesisError, match="max_symbols"):
        voice.encode("x" * 400, 200, 300)
    encoded = voice.encode(" ".join(["word"] * 120), 1000, 60)
    assert len(encoded.ids) > 1 and max(len(ids) for ids in encoded.ids) <= 60
