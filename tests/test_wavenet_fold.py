"""Folded WaveNet generation (neurotts/models/wavenet/fold.py): plans, joins, back ends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.seams import fade_report, seam_report
from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.fold import (
    Segment,
    choose_folds,
    crossfade,
    fold_plans,
    generate_folded,
    generate_segments,
    join,
    max_folds,
    overlaps,
    plan_segments,
)
from neurotts.models.wavenet.generate import generate
from neurotts.models.wavenet.model import WaveNet, context_frames
from neurotts.models.wavenet.options import GenerateOptions, parse_fold
from tests.test_wavenet import tiny_model

HOP = 16  # tiny_config's hop_length
SR = 1000  # the tiny model's sample rate here: one sample per ms, so overlap_ms counts samples
needs_kernel = pytest.mark.skipif(cpu_kernel.load() is None, reason="no C compiler for the kernel")


def seeded(seed: int = 7, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def mel_batch(lengths: list[int], seed: int = 0, scale: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random mels ``(B, max(lengths), 8)`` with junk in the padding (it must not matter)."""
    torch.manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), 8) * scale, torch.tensor(lengths)


def lively_model(output: str) -> WaveNet:
    """A tiny model whose argmax (temperature 0) output keeps changing: with default weights
    it settles on one class within a few samples, and equal constants prove nothing. A strong
    input embedding (and mels scaled by 5 in the callers) keeps the feedback and the
    conditioning in play: about half of all consecutive samples differ."""
    model = tiny_model(output)
    with torch.no_grad():
        model.input.weight.mul_(10.0)
    return model


@pytest.mark.parametrize("output", ["mulaw", "mol"])
@pytest.mark.parametrize("fold", [1, "off"])
def test_one_segment_equals_unfolded_exactly(output: str, fold: int | str) -> None:
    model = tiny_model(output)
    mels, lengths = mel_batch([23, 9, 17])
    expected = generate(model, mels, lengths, generator=seeded()).audio
    folded = generate_folded(model, mels, lengths, GenerateOptions(fold=str(fold), overlap_ms=8),
                             SR, generator=seeded())
    assert torch.equal(folded, expected)


@pytest.mark.parametrize("n_frames", [1, 2, 3, 7, 8, 37, 101])
@pytest.mark.parametrize("folds", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("overlap", [0, 5, 16, 40])
def test_plan_tiles_the_utterance(n_frames: int, folds: int, overlap: int) -> None:
    warmup, right = 3, 2
    plan = plan_segments(0, n_frames, folds, warmup, overlap, HOP, right)
    assert len(plan) == min(folds, max_folds(n_frames, overlap, HOP))
    assert plan[0].keep == 0 and plan[-1].stop == n_frames and plan[-1].tail == 0
    least = max(1, math.ceil(overlap / HOP))
    for prev, seg in zip(plan, plan[1:], strict=False):
        assert seg.keep == prev.stop  # parts are contiguous: no gap, no sample twice
        assert prev.tail == overlap
        assert seg.stop - seg.keep >= least  # a fade never reaches the next join
        assert seg.keep - seg.start == min(warmup, seg.keep)
        # The mel slice reaches past the tail by the conditioning's context, inside the clip.
        assert prev.slice_stop == min(n_frames, prev.stop + math.ceil(overlap / HOP) + right)
    if n_frames >= len(plan) * (warmup + 2 * least):
        # With room to move the joins, generated lengths are balanced to within two frames
        # (the first segment has no warm-up and the last no tail: they keep more frames).
        lengths = [s.samples(HOP) for s in plan]
        assert max(lengths) - min(lengths) <= 2 * HOP + overlap


@pytest.mark.parametrize("fade", ["linear", "adaptive"])
@pytest.mark.parametrize(("n_frames", "folds", "overlap"),
                         [(1, 4, 8), (3, 9, 0), (5, 2, 16), (31, 4, 8), (37, 5, 40), (64, 64, 0)])
def test_join_puts_every_sample_in_its_place_once(fade: str, n_frames: int, folds: int,
                                                  overlap: int) -> None:
    """Each segment's 'audio' is the absolute position of every sample it generated, so the
    joined signal must be 0, 1, 2, ... exactly where a seam fades between two equal values."""
    plans = [plan_segments(i, n, folds, 3, overlap, HOP, 2) for i, n in enumerate([n_frames, 2])]
    segments = [s for plan in plans for s in plan]
    width = max(s.samples(HOP) for s in segments)
    audio = torch.stack([s.start * HOP + torch.arange(width, dtype=torch.float64)
                         for s in segments])
    joined = join(audio, segments, [n_frames, 2], HOP, fade)  # (2, n_frames * hop)
    assert joined.shape == (2, max(n_frames, 2) * HOP)
    torch.testing.assert_close(joined[0, : n_frames * HOP],
                               torch.arange(n_frames * HOP, dtype=torch.float64))
    assert not joined[0, n_frames * HOP:].any()
    assert torch.equal(joined[1, : 2 * HOP], torch.arange(2 * HOP, dtype=torch.float64))
    assert not joined[1, 2 * HOP:].any()


@pytest.mark.parametrize("fold", [2, 3, 100, "auto"])
@pytest.mark.parametrize("lengths", [[37], [1, 2, 5], [40, 13, 1, 26]])
def test_output_length_is_frames_times_hop(fold: int | str, lengths: list[int]) -> None:
    model = tiny_model("mulaw")
    mels, lens = mel_batch(lengths)
    audio = generate_folded(model, mels, lens, GenerateOptions(fold=str(fold), overlap_ms=8), SR,
                            generator=seeded())
    assert audio.shape == (len(lengths), max(lengths) * HOP)
    for row, n in zip(audio, lengths, strict=True):
        assert not row[n * HOP:].any()
        # mu-law never decodes to exactly 0.0 here (64 classes: no zero level), so a sample
        # left unwritten by the join would show up as a zero.
        assert row[: n * HOP].ne(0).all()


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_utterances_folded_together_equal_each_alone(output: str) -> None:
    """With the noise out of the way (temperature 0: argmax), an utterance's folded audio
    does not depend on which others share its batch."""
    model = lively_model(output)
    lengths = [41, 12, 27, 3]
    mels, lens = mel_batch(lengths, scale=5.0)
    together = generate_folded(model, mels, lens,
                               GenerateOptions(fold="4", overlap_ms=8, temperature=0.0), SR)
    for i, n in enumerate(lengths):
        alone = generate_folded(model, mels[i:i + 1, :n], lens[i:i + 1],
                                GenerateOptions(fold="4", overlap_ms=8, temperature=0.0), SR)
        torch.testing.assert_close(together[i, : n * HOP], alone[0], rtol=0, atol=1e-6)
    assert together[0, 1:].ne(together[0, :-1]).float().mean() > 0.2  # not a constant


def test_folding_changes_the_output_only_after_the_first_join() -> None:
    """Segment 0 is generated exactly as the unfolded utterance up to the first join (same
    start from silence, same conditioning); the batch draws different noise, so compare at
    temperature 0."""
    model = lively_model("mulaw")
    mels, lens = mel_batch([48], scale=5.0)
    plain = generate(model, mels, lens, GenerateOptions(temperature=0.0)).audio[0]
    folded = generate_folded(model, mels, lens,
                             GenerateOptions(fold="3", overlap_ms=8, temperature=0.0), SR)[0]
    first_join = plan_segments(0, 48, 3, context_frames(model.cfg), 8, HOP, 2)[1].keep * HOP
    assert torch.equal(folded[:first_join], plain[:first_join])
    assert not torch.equal(folded[first_join:], plain[first_join:])


@needs_kernel
@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_kernel_and_torch_ops_agree_on_folded_output(output: str) -> None:
    model = tiny_model(output)
    mels, lens = mel_batch([40, 23])
    args = dict(fold="4", overlap_ms=8, kernel_threads=2)
    kernel = generate_folded(model, mels, lens, GenerateOptions(mode="kernel", **args), SR,
                             generator=seeded())
    views = generate_folded(model, mels, lens, GenerateOptions(mode="views", **args), SR,
                            generator=seeded())
    if output == "mulaw":
        assert torch.equal(kernel, views)
    else:
        torch.testing.assert_close(kernel, views, rtol=0, atol=1e-4)


@pytest.mark.gpu
def test_cuda_graph_agrees_with_torch_ops_on_folded_output() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = tiny_model("mulaw").cuda()
    mels, lens = mel_batch([40, 23])
    mels, lens = mels.cuda(), lens.cuda()
    graph = generate_folded(model, mels, lens,
                            GenerateOptions(fold="4", overlap_ms=8, mode="graph"), SR,
                            generator=seeded(device="cuda"))
    views = generate_folded(model, mels, lens,
                            GenerateOptions(fold="4", overlap_ms=8, mode="views"), SR,
                            generator=seeded(device="cuda"))
    torch.testing.assert_close(graph, views, atol=1e-5, rtol=0)  # as generate's own GPU test
    # auto on CUDA: many segments (a step at batch 100 costs little more than at batch 1).
    long_mels, long_lens = mel_batch([400])
    plan = fold_plans(model, [400], GenerateOptions(fold="auto", overlap_ms=8), SR,
                      torch.device("cuda"))[0]
    assert len(plan) > 16
    audio = generate_folded(model, long_mels.cuda(), long_lens.cuda(),
                            GenerateOptions(fold="auto", overlap_ms=8), SR)
    assert audio.shape == (1, 400 * HOP) and audio.ne(0).all()


def test_crossfades_keep_the_level_they_promise() -> None:
    """Mid-fade power of two uncorrelated noises: linear dips by ~3 dB, power and adaptive
    do not; of two equal signals: linear and adaptive keep it, power bumps by ~3 dB; of two
    partly opposed signals only adaptive keeps it."""
    torch.manual_seed(0)
    n, trials = 64, 1000
    a, b = torch.randn(trials, n, dtype=torch.float64), torch.randn(trials, n, dtype=torch.float64)
    mid = slice(n // 2 - 4, n // 2 + 4)

    def mid_db(x: torch.Tensor, y: torch.Tensor, fade: str) -> float:
        out = torch.stack([crossfade(p, q, fade) for p, q in zip(x, y, strict=True)])
        return 10 * math.log10(float(out[:, mid].pow(2).mean() / x[:, mid].pow(2).mean()))

    assert mid_db(a, b, "linear") == pytest.approx(-3.0, abs=0.3)
    assert mid_db(a, b, "power") == pytest.approx(0.0, abs=0.3)
    assert mid_db(a, b, "adaptive") == pytest.approx(0.0, abs=0.3)
    assert mid_db(a, a, "linear") == pytest.approx(0.0, abs=1e-9)
    assert mid_db(a, a, "adaptive") == pytest.approx(0.0, abs=1e-9)
    assert mid_db(a, a, "power") == pytest.approx(3.0, abs=0.1)
    # Partly opposed (rho = -0.4): power loses 2.2 dB mid-fade, adaptive makes it up.
    opposed = -0.4 * a + math.sqrt(1 - 0.4**2) * b
    assert mid_db(a, opposed, "power") == pytest.approx(10 * math.log10(0.6), abs=0.3)
    assert mid_db(a, opposed, "adaptive") == pytest.approx(0.0, abs=0.3)


def test_auto_fold_uses_the_threads_and_spares_short_utterances() -> None:
    hop, warmup, overlap = 256, 3, 220
    five_s = 431  # frames of ~5 s at 22.05 kHz
    one = choose_folds([five_s], warmup, overlap, hop, "kernel", threads=1)[0]
    two = choose_folds([five_s], warmup, overlap, hop, "kernel", threads=2)[0]
    assert 2 <= one < two  # more kernel threads -> more segments
    assert choose_folds([five_s], warmup, overlap, hop, "cuda", threads=1)[0] > two
    # A long batch already fills the threads: folding would only add warm-up.
    assert choose_folds([five_s] * 32, warmup, overlap, hop, "kernel", threads=2) == [1] * 32
    assert choose_folds([], warmup, overlap, hop, "kernel", threads=2) == []
    assert choose_folds([2], warmup, overlap, hop, "cuda", threads=1) == [1]
    # Longer utterances of one batch get more segments, so all segments are about as long.
    mixed = choose_folds([400, 100], warmup, overlap, hop, "kernel", threads=2)
    assert mixed[0] > mixed[1] >= 1


def test_fold_option_values() -> None:
    assert parse_fold("auto") == "auto" and parse_fold("off") == 1 and parse_fold(6) == 6
    for bad in ("0", "-2", "many", "2.5"):
        with pytest.raises(ValueError, match="fold="):
            parse_fold(bad)
    assert parse_fold(" AUTO ") == "auto" and parse_fold("12") == 12
    assert GenerateOptions(fold="auto", overlap_ms=10.0, fade="power").overlap_samples(22050) == 220


@pytest.mark.parametrize("command", ["synth", "eval"])
def test_fold_settings_are_checked_when_the_config_loads(command: str) -> None:
    """synth and eval share the vocoder section: path (--vocoder), the fold settings and the
    precision."""
    from neurotts.config import load_config
    from neurotts.evaluation.config import EvalConfig
    from neurotts.synthesis.config import SynthConfig

    schema = SynthConfig if command == "synth" else EvalConfig
    base = ["acoustic=run", "out=o"] if command == "eval" else ["acoustic=run"]
    cfg = load_config(command, schema, [*base, "vocoder.path=voc", "vocoder.fold=4"])
    assert (cfg.vocoder.path, cfg.vocoder.fold, cfg.vocoder.fade) == ("voc", "4", "adaptive")
    with pytest.raises(ValueError, match="vocoder.fade='cosine': choose one of linear, power"):
        load_config(command, schema, [*base, "vocoder.fade=cosine"])
    with pytest.raises(ValueError, match="vocoder.overlap_ms=-1.0: must be at least 0"):
        load_config(command, schema, [*base, "vocoder.overlap_ms=-1"])
    for bad in ("0", "many", "2.5", "-3"):
        with pytest.raises(ValueError, match=f"vocoder.fold='{bad}': expected auto, off or a number"):
            load_config(command, schema, [*base, f"vocoder.fold={bad}"])
    assert cfg.vocoder.precision == "fp32"
    assert load_config(command, schema, [*base, "vocoder.precision=bf16"]).vocoder.precision == "bf16"
    with pytest.raises(ValueError, match="vocoder.precision='fp16': choose one of fp32, bf16"):
        load_config(command, schema, [*base, "vocoder.precision=fp16"])


@pytest.mark.parametrize("command", ["synth", "eval"])
def test_back_end_settings_load_and_are_checked_before_any_model(command: str) -> None:
    """vocoder.mode and vocoder.kernel_threads reach the config; a back end that cannot run
    on the device is refused with one line before a checkpoint is read."""
    from neurotts.config import load_config
    from neurotts.evaluation.config import EvalConfig
    from neurotts.synthesis.config import SynthConfig
    from neurotts.vocoders import VocoderError, check_backend

    schema = SynthConfig if command == "synth" else EvalConfig
    base = ["acoustic=run", "out=o"] if command == "eval" else ["acoustic=run"]
    cfg = load_config(command, schema, [*base, "vocoder.mode=views", "vocoder.kernel_threads=3"])
    assert (cfg.vocoder.mode, cfg.vocoder.kernel_threads) == ("views", 3)
    with pytest.raises(ValueError, match="vocoder.mode='fast': choose one of auto, kernel"):
        load_config(command, schema, [*base, "vocoder.mode=fast"])
    with pytest.raises(ValueError, match="vocoder.kernel_threads=0: must be at least 1"):
        load_config(command, schema, [*base, "vocoder.kernel_threads=0"])
    check_backend(cfg.vocoder, torch.device("cpu"))
    with pytest.raises(VocoderError, match="vocoder.mode=graph replays CUDA graphs"):
        check_backend(GenerateOptions(mode="graph"), torch.device("cpu"))
    with pytest.raises(VocoderError, match="vocoder.mode=kernel runs the CPU kernel"):
        check_backend(GenerateOptions(mode="kernel"), torch.device("cuda"))


def test_training_media_fold_setting_is_named_by_its_own_key(tmp_path) -> None:
    from neurotts.training.config import load_train_config
    from tests.test_loader import write_store

    store = write_store(tmp_path / "store", n=6)
    with pytest.raises(ValueError, match="trainer.media.vocoder_fold.fold='none': expected auto"):
        load_train_config(["experiment=tiny", "model=wavenet", f"data.features={store.root}",
                           f"run.dir={tmp_path / 'run'}", "trainer.media.vocoder_fold.fold=none"])


def test_segment_samples() -> None:
    assert Segment(0, 2, 5, 9, 8, 12).samples(HOP) == 7 * HOP + 8


@pytest.fixture(scope="module")
def tiny_seams() -> dict:
    """Folded segments and unfolded audio of 8 utterances from a tiny random model."""
    model = tiny_model("mulaw")
    mels, lens = mel_batch([160] * 8, seed=3)
    plans = fold_plans(model, [160] * 8, GenerateOptions(fold="32", overlap_ms=HOP), SR,
                       mels.device)
    segments = [s for plan in plans for s in plan]
    return {"plans": plans, "segments": segments,
            "audio": generate_segments(model, mels, segments, GenerateOptions(),
                                       generator=seeded()),
            "unfolded": generate(model, mels, lens, generator=seeded(8)).audio}


@pytest.mark.parametrize(("fade", "lowest_db", "highest_db"),
                         [("adaptive", -0.75, 0.75), ("power", -0.75, 0.75), ("linear", -3.0, -1.0)])
def test_seam_level_with_a_tiny_model(tiny_seams: dict, fade: str, lowest_db: float,
                                      highest_db: float) -> None:
    """The seam comparison of bench/wavenet_seams.py on a tiny random model, whose sampled
    output is noise-like, so two segments are uncorrelated across a join: a linear fade dips
    the level there (by 1.8 dB averaged over a one-fade window), equal-energy fades do not.
    Tolerance: +-0.75 dB around the control positions' level, three standard errors (0.25 dB
    by bootstrap with these ~250 joins); the fade level against its own inputs must agree."""
    plans, segments = tiny_seams["plans"], tiny_seams["segments"]
    folded = join(tiny_seams["audio"], segments, [160] * 8, HOP, fade)
    report = seam_report(list(folded.numpy()), list(tiny_seams["unfolded"].numpy()),
                         [[seg.keep * HOP for seg in plan[1:]] for plan in plans], HOP, width=HOP)
    assert report["joins"] == sum(len(plan) - 1 for plan in plans) > 200
    assert lowest_db < report["join_dip_db"] < highest_db, report
    assert report["join_dip_db_se"] < 0.4
    fades = fade_report([(t.numpy(), h.numpy(), crossfade(t, h, fade).numpy())
                         for _, t, h in overlaps(tiny_seams["audio"], segments, HOP)])
    assert lowest_db < fades["fade_level_db"] < highest_db, fades


def test_training_media_logs_two_seconds_generated_from_a_val_mel(tmp_path) -> None:
    """TensorBoard gets >= 2 s of folded generation from a validation utterance's recorded
    mel, and the recording of the same stretch (not the training window's fraction of a
    second)."""
    from rich.console import Console
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from neurotts.data.loader import collate_windows
    from neurotts.data.store import FeatureStore
    from neurotts.training.config import load_train_config
    from neurotts.training.logging import TrainLogger
    from neurotts.training.tasks import build_task
    from tests.test_loader import write_store

    store = write_store(tmp_path / "store", n=6, splits={"val": 2, "test": 1}, frames=(180, 220))
    cfg = load_train_config(["experiment=tiny", "model=wavenet", f"data.features={store.root}",
                             f"run.dir={tmp_path / 'run'}"])
    assert cfg.trainer.media.vocoder_samples >= 2 * store.audio.sample_rate
    task = build_task(cfg, FeatureStore(store.root))
    batch = collate_windows([task.dataset("val", seed=0)[0]])
    (tmp_path / "run").mkdir()  # made by the trainer's run folder set-up
    log = TrainLogger(tmp_path / "run", Console(file=None, quiet=True), 1, enabled=True)
    task.log_media(task.model, batch, log, step=1)
    log.close()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"audio": 0})
    acc.Reload()
    for tag in ("val/generated", "val/target"):
        assert acc.Audio(tag)[-1].length_frames == cfg.trainer.media.vocoder_samples


def test_vocoder_passes_its_fold_settings_through(tmp_path, monkeypatch) -> None:
    """The WaveNet vocoder (behind synth and eval) with a real checkpoint: fold=off is plain
    generation, fold=K is generate_folded with the overlap converted from ms and the fade,
    precision=bf16 reaches the kernel (and is refused up front where it cannot run)."""
    from neurotts.data.store import FeatureStore
    from neurotts.vocoders import VocoderError, WaveNetVocoder
    from tests.test_loader import write_store
    from tests.test_training import config, run

    store = FeatureStore(write_store(tmp_path / "store", n=6).root)
    run(config(store.root, tmp_path / "voc", "trainer.max_steps=2", "trainer.val_every=2",
               "trainer.checkpoint_every=2", "trainer.media.vocoder_samples=0", model="wavenet"))
    uids = [u.id for u in store.split("train")[:2]]
    n_frames = [store.mel(uid).shape[0] for uid in uids]
    log_mels = torch.zeros(2, max(n_frames), store.audio.n_mels)
    for i, uid in enumerate(uids):
        log_mels[i, : n_frames[i]] = torch.from_numpy(store.mel(uid))
    lengths = torch.tensor(n_frames)

    def vocode(fold: str, precision: str = "fp32") -> list:
        voc = WaveNetVocoder(tmp_path / "voc", store.audio, torch.device("cpu"),
                             GenerateOptions(fold=fold, overlap_ms=5.0, fade="power",
                                             precision=precision))
        torch.manual_seed(11)
        return voc(log_mels, lengths), voc

    plain, voc = vocode("off")
    torch.manual_seed(11)
    expected = generate(voc.model, voc.norm.normalize(log_mels), lengths).audio
    hop = voc.model.cfg.hop_length
    for i, n in enumerate(n_frames):
        assert torch.equal(torch.from_numpy(plain[i]), expected[i, : n * hop])
    folded, _ = vocode("3")
    torch.manual_seed(11)
    sample_rate = store.audio.sample_rate
    expected = generate_folded(voc.model, voc.norm.normalize(log_mels), lengths,
                               GenerateOptions(fold="3", overlap_ms=5.0, fade="power"), sample_rate)
    for i, n in enumerate(n_frames):
        assert torch.equal(torch.from_numpy(folded[i]), expected[i, : n * hop])
    assert not all(np.array_equal(a, b) for a, b in zip(plain, folded, strict=True))
    if cpu_kernel.has_bf16():
        low, _ = vocode("3", "bf16")
        torch.manual_seed(11)
        expected = generate_folded(
            voc.model, voc.norm.normalize(log_mels), lengths,
            GenerateOptions(fold="3", overlap_ms=5.0, fade="power", precision="bf16"), sample_rate)
        for i, n in enumerate(n_frames):
            assert torch.equal(torch.from_numpy(low[i]), expected[i, : n * hop])
    monkeypatch.setattr(cpu_kernel, "has_bf16", lambda: False)
    with pytest.raises(VocoderError, match="vocoder.precision=bf16 runs in the CPU kernel"):
        vocode("3", "bf16")
