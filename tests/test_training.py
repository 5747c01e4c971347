"""The training engine: checkpoints, exact resume, non-finite steps, AMP, TensorBoard, DDP, CLI.

Runs use ``experiment=tiny`` on a synthetic feature store (``tests.test_loader.write_store``),
except the CLI test, which prepares a store from 8 real LJSpeech clips when ../shared has them.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from neurotts import checkpoint as ckpt
from neurotts.cli import app
from neurotts.data.loader import BucketBatchSampler
from neurotts.data.store import FeatureStore
from neurotts.models.registry import model_config
from neurotts.training.config import TrainConfig, load_train_config
from neurotts.training.errors import TrainingError, TrainingInterrupted
from neurotts.training.logging import read_train_log
from neurotts.training.loop import TrainSummary, train
from neurotts.training.stopping import StopRequest
from neurotts.training.tacotron2_task import Tacotron2Task
from neurotts.training.tasks import build_task
from tests.test_loader import write_store

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ljspeech-sample/LJSpeech-1.1"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "store"
    write_store(root, n=12)
    return root


def config(store: Path, run_dir: Path, *overrides: str, model: str = "tacotron2") -> TrainConfig:
    return load_train_config(["experiment=tiny", f"model={model}", f"data.features={store}",
                              f"run.dir={run_dir}", *overrides])


def run(cfg: TrainConfig, make_task: Any = build_task) -> tuple[TrainSummary, str]:
    out = io.StringIO()
    summary = train(cfg, Console(file=out, width=200), make_task)
    return summary, out.getvalue()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]


# ------------------------------------------------------------------------------ config


def test_config_injects_store_audio_and_validates_model(store: Path, tmp_path: Path) -> None:
    cfg = config(store, tmp_path / "run")
    audio = FeatureStore(store).audio
    assert cfg.audio == audio
    assert model_config(cfg.model).n_mels == audio.n_mels  # ${audio.n_mels}, the store's
    wavenet = config(store, tmp_path / "run", model="wavenet")
    assert model_config(wavenet.model).hop_length == audio.hop_length
    assert wavenet.trainer.ema_decay > 0  # from experiment/tiny_wavenet.yaml
    from neurotts.config import ConfigError

    with pytest.raises(ConfigError, match="decoder"):
        config(store, tmp_path / "run", "+model.decoder.bogus=1")
    with pytest.raises(ConfigError, match="precision"):
        config(store, tmp_path / "run", "trainer.precision=fp8")


def test_data_derived_model_values_must_match_the_store(store: Path, tmp_path: Path) -> None:
    """n_mels / hop_length follow the store: an override that disagrees is one line at start-up
    (not a shape error at the first forward pass); a bad model value fails there too."""
    from neurotts.config import ConfigError

    audio = FeatureStore(store).audio
    with pytest.raises(ConfigError, match=rf"model.n_mels=64, but the data has audio.n_mels={audio.n_mels}"):
        config(store, tmp_path / "run", "model.n_mels=64")
    with pytest.raises(ConfigError, match=r"model.hop_length=128, but the data has audio.hop_length"):
        config(store, tmp_path / "run", "model.hop_length=128", "model.upsample_scales=[8,16]",
               model="wavenet")
    with pytest.raises(ConfigError, match=r"model.attention.type='dcaa': choose one of location"):
        config(store, tmp_path / "run", "model.attention.type=dcaa")
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_is_self_describing(store: Path, tmp_path: Path) -> None:
    cfg = config(store, tmp_path / "run", "trainer.max_steps=3", "trainer.val_every=3",
                 "trainer.checkpoint_every=1", "trainer.keep_last=2")
    summary, _ = run(cfg)
    manager = ckpt.CheckpointManager(tmp_path / "run" / "checkpoints", keep_last=2)
    assert [p.name for p in manager.periodic()] == ["step_00000002.pt", "step_00000003.pt"]
    assert manager.best.is_file()
    saved = torch.load(manager.latest(), weights_only=True)  # data only, no pickled code
    fs = FeatureStore(store)
    assert saved["format"] == ckpt.FORMAT and saved["model_name"] == "tacotron2"
    assert saved["step"] == 3 == summary.step
    assert saved["symbols"] == fs.symbols
    assert saved["audio"]["n_mels"] == fs.audio.n_mels
    assert "audio" not in saved["config"]  # saved once, under its own key
    assert saved["config"]["model"]["encoder"]["embedding_dim"] == 32
    assert saved["mel_norm"]["enabled"] and saved["mel_norm"]["mean"].shape == (fs.audio.n_mels,)
    assert saved["optimizer"]["state"] and "last_epoch" in saved["scheduler"]
    assert set(saved["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert saved["epoch"] >= 0 and saved["global_batches_in_epoch"] >= 0
    # the checkpoint alone rebuilds the model
    from neurotts.models.tacotron2 import Tacotron2

    model = Tacotron2(model_config(saved["config"]["model"]), n_symbols=len(saved["symbols"]))
    model.load_state_dict(saved["model"])


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = ckpt.CheckpointManager(tmp_path, keep_last=3)
    good = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 1,
            "model": {"w": torch.ones(3)}}
    manager.save(good)

    def crash(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", crash)
    with pytest.raises(OSError):
        manager.save({**good, "step": 2, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert [p.name for p in manager.periodic()] == ["step_00000001.pt"]  # .part is not one
    assert torch.equal(ckpt.load_checkpoint(manager.latest())["model"]["w"], torch.ones(3))
    with pytest.raises(ckpt.CheckpointError, match="not finite"):
        manager.save({**good, "step": 3, "model": {"w": torch.tensor([float("nan")])}})


# ------------------------------------------------------------------------------ resume


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tacotron2", "wavenet"])
def test_resume_reproduces_uninterrupted_run(store: Path, tmp_path: Path, model: str) -> None:
    """8 steps straight vs 4 + resume 4: the same per-step losses (1e-6) and weights.
    Step 4 is in the middle of an epoch; dropout, prenet, zoneout and (wavenet) the random
    windows and the EMA all have to be restored for this to hold."""
    common = ["trainer.log_every=1", "trainer.val_every=4", "trainer.checkpoint_every=4"]
    run(config(store, tmp_path / "a", "trainer.max_steps=8", *common, model=model))
    run(config(store, tmp_path / "b", "trainer.max_steps=4", *common, model=model))
    summary, out = run(config(store, tmp_path / "b", "trainer.max_steps=8", *common, model=model))
    assert summary.resumed_from == 4 and "resumed from step 4" in out
    a = read_train_log(tmp_path / "a" / "train_log.jsonl")
    b = read_train_log(tmp_path / "b" / "train_log.jsonl")
    for step in range(1, 9):
        assert a[step]["train/loss"] == pytest.approx(b[step]["train/loss"], rel=1e-6, abs=1e-6)
    assert a[8]["val/loss"] == pytest.approx(b[8]["val/loss"], rel=1e-6, abs=1e-6)
    final_a = ckpt.load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000008.pt")
    final_b = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000008.pt")
    for name, value in final_a["model"].items():
        torch.testing.assert_close(final_b["model"][name], value, rtol=1e-6, atol=1e-6)
    if model == "wavenet":
        assert final_a["ema"] is not None
        for name, value in final_a["ema"].items():
            torch.testing.assert_close(final_b["ema"][name], value, rtol=1e-6, atol=1e-6)


def assert_runs_equal(a: Path, b: Path, last_step: int) -> None:
    """Two run folders trained the same: per-step losses (1e-6) and the weights of their
    ``last_step`` checkpoints."""
    log_a, log_b = read_train_log(a / "train_log.jsonl"), read_train_log(b / "train_log.jsonl")
    for step in range(1, last_step + 1):
        assert log_a[step]["train/loss"] == pytest.approx(log_b[step]["train/loss"], rel=1e-6,
                                                          abs=1e-6), step
    final_a = weights(a / "checkpoints" / f"step_{last_step:08d}.pt")
    final_b = weights(b / "checkpoints" / f"step_{last_step:08d}.pt")
    for name, value in final_a.items():
        torch.testing.assert_close(final_b[name], value, rtol=1e-6, atol=1e-6)


def signal_self_after(steps: dict[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Send this process SIGINT ``steps[n]`` times right after training step n (0-based)."""
    from neurotts.training import loop

    real = loop.train_step

    def step_then_signal(model, parts, task, batch, precision, clip, step, device):  # noqa: ANN001, ANN202
        result = real(model, parts, task, batch, precision, clip, step, device)
        for i in range(steps.get(step, 0)):
            if i:
                time.sleep(StopRequest.REPEAT_S + 0.1)  # a repeat, not a duplicate
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(loop, "train_step", step_then_signal)


@pytest.mark.slow
def test_ctrl_c_saves_the_step_and_resume_equals_uninterrupted(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during step 7 (no periodic checkpoint until 100): the run stops after step 7
    with a checkpoint of it, and resuming gives the uninterrupted run's losses and weights."""
    common = ["trainer.log_every=1", "trainer.val_every=100", "trainer.checkpoint_every=100",
              "trainer.max_steps=12"]
    run(config(store, tmp_path / "a", *common))
    with monkeypatch.context() as patch:
        signal_self_after({6: 1}, patch)
        with pytest.raises(TrainingInterrupted) as stopped:
            run(config(store, tmp_path / "b", *common))
    assert stopped.value.step == 7 and stopped.value.signal_name == "SIGINT"
    assert stopped.value.checkpoint == tmp_path / "b" / "checkpoints" / "step_00000007.pt"
    assert "run the same command again to resume" in str(stopped.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    summary, out = run(config(store, tmp_path / "b", *common))
    assert summary.resumed_from == 7 and summary.step == 12
    assert_runs_equal(tmp_path / "a", tmp_path / "b", 12)


def test_second_ctrl_c_stops_at_once_without_a_checkpoint(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C a moment later aborts; one delivered twice at once (a terminal's and
    torchrun's copy) is the same request and still ends with a checkpoint."""

    stop = StopRequest(announce=False)
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.signal == signal.SIGINT
    signal_self_after({2: 2}, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(config(store, tmp_path / "run", "trainer.max_steps=10", "trainer.val_every=100",
                   "trainer.checkpoint_every=100"))
    assert not list((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_gradient_accumulation_is_the_weighted_sum_of_batch_gradients(store: Path,
                                                                       tmp_path: Path) -> None:
    """train_step over [b1, b2] makes the update that (loss1 + loss2) / 2 makes: same weights
    after one step from the same start (no clipping, so a missing 1/2 would show)."""
    import copy

    from neurotts.training import loop
    from neurotts.training.state import Trainables

    cfg = config(store, tmp_path / "run", "trainer.grad_accum=2", "trainer.grad_clip=1.0e9",
                 "trainer.schedule.warmup_steps=0")
    task = build_task(cfg, FeatureStore(store))
    items = task.dataset("train", 0)
    b1, b2 = task.collate([items[0], items[1]]), task.collate([items[2], items[3]])
    model_a = task.model
    model_b = copy.deepcopy(model_a)
    before = copy.deepcopy(model_a.state_dict())
    parts_a = Trainables.build(model_a, cfg.trainer, "fp32", torch.device("cpu"))
    parts_b = Trainables.build(model_b, cfg.trainer, "fp32", torch.device("cpu"))
    torch.manual_seed(5)  # the prenet's dropout draws the same masks in both
    result = loop.train_step(model_a, parts_a, task, [b1, b2], "fp32", 1.0e9, 0,
                             torch.device("cpu"))
    torch.manual_seed(5)
    parts_b.optimizer.zero_grad()
    losses = [task.loss(model_b, b, 0)[0] for b in (b1, b2)]
    ((losses[0] + losses[1]) / 2).backward()
    parts_b.optimizer.step()
    assert result.updated and result.loss == pytest.approx(float(sum(losses).detach()) / 2, rel=1e-6)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(a, before[name]) for name, a in model_a.state_dict().items())


def test_small_data_recipe_composes_and_trains(store: Path, tmp_path: Path) -> None:
    """experiment=small_data (the 30-60 minute recipe) composes with its reasoned settings and
    trains two steps end to end, validation and checkpoint included."""
    cfg = load_train_config(["experiment=small_data", f"data.features={store}",
                             f"run.dir={tmp_path / 'run'}", "trainer.device=cpu",
                             "trainer.max_steps=2", "trainer.val_every=2", "trainer.batch_size=4",
                             "data.num_workers=0", "trainer.media.griffin_lim_iters=0"])
    model = model_config(cfg.model)
    assert model.reduction_factor == 3 and model.decoder.decoder_rnn_dim == 256
    assert model.loss.guided_attn_weight > 0 and cfg.trainer.schedule.decay == "constant"
    assert model.teacher_forcing.input_noise == 0.3  # the speak check's exposure-bias lever
    summary, out = run(cfg)
    assert summary.step == 2 and "validation loss" in out
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()
    params = sum(p.numel() for p in build_task(cfg, FeatureStore(store)).model.parameters())
    assert 1.5e6 < params < 3e6  # the quarter-width model the recipe's comments describe


def test_teacher_forcing_options_change_what_the_decoder_is_fed_not_the_targets(
        store: Path, tmp_path: Path) -> None:
    """model.teacher_forcing: scheduled sampling feeds the model's own teacher-forced
    predictions (all of them at probability 1), noise perturbs the fed frames by its std,
    the probability ramps as configured, and validation (eval mode) feeds the true frames."""
    base = config(store, tmp_path / "run")
    task = build_task(base, FeatureStore(store))
    items = task.dataset("train", 0)
    batch = task.collate([items[0], items[1]])
    model = task.model.train()
    assert torch.equal(task.fed_frames(model, batch, 10), batch.mels)  # defaults: off

    sampled = build_task(config(store, tmp_path / "run", "model.teacher_forcing.sampling_prob=1.0"),
                         FeatureStore(store))
    sampled.model.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    fed = sampled.fed_frames(sampled.model, batch, 0)
    torch.manual_seed(3)  # the same dropout draws as the no-grad pass inside fed_frames
    with torch.no_grad():
        own = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths).mel_before
    torch.testing.assert_close(fed, own)
    assert not torch.allclose(fed, batch.mels)

    noisy = build_task(config(store, tmp_path / "run", "model.teacher_forcing.input_noise=0.5"),
                       FeatureStore(store))
    diff = noisy.fed_frames(noisy.model.train(), batch, 0) - batch.mels
    assert float(diff.std()) == pytest.approx(0.5, rel=0.1)

    ramp = build_task(config(store, tmp_path / "run", "model.teacher_forcing.sampling_prob=0.4",
                             "model.teacher_forcing.sampling_start=10",
                             "model.teacher_forcing.sampling_ramp=20"), FeatureStore(store))
    assert [ramp.sampling_prob(s) for s in (0, 10, 20, 30, 99)] == pytest.approx(
        [0.0, 0.0, 0.2, 0.4, 0.4])

    # Validation runs the model in eval mode: the loss is that of the true frames.
    noisy.model.load_state_dict(model.state_dict())
    model.eval(), noisy.model.eval()
    torch.manual_seed(1)
    clean_loss = task.loss(model, batch, 0)[0]
    torch.manual_seed(1)
    assert torch.equal(noisy.loss(noisy.model, batch, 0)[0], clean_loss)
    run(config(store, tmp_path / "trained", "trainer.max_steps=2",
               "model.teacher_forcing.sampling_prob=0.5", "model.teacher_forcing.input_noise=0.1"))


@pytest.mark.slow
def test_resume_with_gradient_accumulation_reproduces_uninterrupted_run(store: Path,
                                                                        tmp_path: Path) -> None:
    """grad_accum=3 consumes three batches a step; stopping at step 2 (mid-epoch) and
    resuming must pick up at batch 7 and repeat the uninterrupted run."""
    common = ["trainer.grad_accum=3", "trainer.batch_size=2", "trainer.log_every=1",
              "trainer.val_every=2", "trainer.checkpoint_every=2"]
    run(config(store, tmp_path / "a", "trainer.max_steps=5", *common))
    run(config(store, tmp_path / "b", "trainer.max_steps=2", *common))
    saved = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000002.pt")
    cfg = config(store, tmp_path / "b", *common)
    sampler = BucketBatchSampler(build_task(cfg, FeatureStore(store)).dataset("train", 0).lengths(),
                                 2, cfg.trainer.bucket_size, 0, shuffle=True, seed=cfg.trainer.seed)
    per_epoch = len(sampler.rank_batches(0))
    assert saved["epoch"] * per_epoch + saved["global_batches_in_epoch"] == 6  # 3 per step
    run(config(store, tmp_path / "b", "trainer.max_steps=5", *common))
    assert_runs_equal(tmp_path / "a", tmp_path / "b", 5)


def test_resume_with_a_changed_model_names_what_changed(store: Path, tmp_path: Path) -> None:
    """A run started with one WaveNet output cannot resume with another; the error says which
    keys differ instead of a state-dict dump."""
    run(config(store, tmp_path / "run", "trainer.max_steps=1", "trainer.val_every=1",
               "model.output=mol", model="wavenet"))
    with pytest.raises(TrainingError) as err:
        run(config(store, tmp_path / "run", "trainer.max_steps=2", "model.output=mulaw",
                   model="wavenet"))
    assert "model.output: 'mol' -> 'mulaw'" in str(err.value) and "run.dir" in str(err.value)
    assert "state_dict" not in str(err.value)


def test_what_a_resume_may_change_is_declared_by_the_schema() -> None:
    """A field's ``resume`` metadata decides; a section's covers all its keys; a key
    without one (the seed, the model) must keep the checkpoint's value."""
    from neurotts.training.config import MAY_CHANGE, NEXT_EPOCH, QUIET, resume_policy

    assert resume_policy("trainer.optimizer.lr") == MAY_CHANGE
    assert resume_policy("trainer.media.vocoder_fold.overlap_ms") == MAY_CHANGE
    assert resume_policy("trainer.batch_size") == NEXT_EPOCH
    assert resume_policy("run.dir") == QUIET and resume_policy("trainer.resume") == QUIET
    assert resume_policy("trainer.seed") is None and resume_policy("model.n_mels") is None
    assert resume_policy("audio.sample_rate") is None


def test_resume_never_refuses_a_used_run_dir(store: Path, tmp_path: Path) -> None:
    run(config(store, tmp_path / "run", "trainer.max_steps=1", "trainer.val_every=1"))
    with pytest.raises(TrainingError, match="already has checkpoints"):
        run(config(store, tmp_path / "run", "trainer.max_steps=2", "trainer.resume=never"))


# ------------------------------------------------------------------------------ non-finite


class NaNAt(Tacotron2Task):
    """Tacotron 2 whose loss is NaN at the given steps (0-based, as passed to ``loss``)."""

    bad_steps: frozenset[int] = frozenset()

    def loss(self, model, batch, step):  # noqa: ANN001, ANN201
        total, terms = super().loss(model, batch, step)
        if step in self.bad_steps:
            total = total * float("nan")
        return total, terms


def nan_task(bad: set[int]) -> Any:
    def make(cfg: TrainConfig, store: FeatureStore) -> NaNAt:
        task = NaNAt(model_config(cfg.model), store, cfg)
        task.bad_steps = frozenset(bad)
        return task

    return make


def test_nonfinite_loss_skips_the_update(store: Path, tmp_path: Path) -> None:
    cfg = config(store, tmp_path / "run", "trainer.max_steps=4", "trainer.checkpoint_every=1",
                 "trainer.keep_last=10", "trainer.log_every=1", "trainer.val_every=10")
    summary, out = run(cfg, nan_task({1, 2}))  # steps 2 and 3 in 1-based checkpoint names
    assert summary.nonfinite_steps == 2
    assert "non-finite" in out
    folder = tmp_path / "run" / "checkpoints"
    w1, w2, w3, w4 = (weights(folder / f"step_{i:08d}.pt") for i in (1, 2, 3, 4))
    for name in w1:
        assert torch.equal(w1[name], w2[name]) and torch.equal(w1[name], w3[name])
        assert torch.isfinite(w4[name]).all()
    assert any(not torch.equal(w1[n], w4[n]) for n in w1)
    log = read_train_log(tmp_path / "run" / "train_log.jsonl")
    assert log[3]["train/nonfinite_steps"] == 2.0 and log[4]["train/nonfinite_steps"] == 2.0


def test_only_nonfinite_steps_stop_the_run(store: Path, tmp_path: Path) -> None:
    cfg = config(store, tmp_path / "run", "trainer.max_steps=10", "trainer.max_nonfinite=3")
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        run(cfg, nan_task(set(range(100))))
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


# ------------------------------------------------------------------------------ AMP


def test_bf16_autocast_path_on_cpu(store: Path, tmp_path: Path) -> None:
    seen: set[torch.dtype] = set()

    def make(cfg: TrainConfig, fs: FeatureStore) -> Tacotron2Task:
        task = Tacotron2Task(model_config(cfg.model), fs, cfg)
        conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv1d))
        conv.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
        return task

    # batch_size=3: 9 train clips in batches of 3. A batch of one trips a oneDNN bug in the
    # bf16 LSTM on CPU ("could not create a primitive descriptor"), reported to the model owner.
    cfg = config(store, tmp_path / "run", "trainer.precision=bf16", "trainer.max_steps=4",
                 "trainer.val_every=4", "trainer.log_every=1", "trainer.batch_size=3")
    summary, out = run(cfg, make)
    assert "bf16" in out
    assert torch.bfloat16 in seen  # the forward really ran under autocast
    log = read_train_log(tmp_path / "run" / "train_log.jsonl")
    assert all(torch.isfinite(torch.tensor(log[s]["train/loss"])) for s in (1, 2, 3, 4))
    assert summary.nonfinite_steps == 0
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000004.pt")
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())


def test_fp16_loss_scaling_on_cpu(store: Path, tmp_path: Path) -> None:
    """fp16 runs with a GradScaler (CPU autocast has fp16 too); its scale is logged and
    checkpointed, and an overflowing step would be skipped like any non-finite one."""
    cfg = config(store, tmp_path / "run", "trainer.precision=fp16", "trainer.max_steps=3",
                 "trainer.val_every=3", "trainer.log_every=1", model="wavenet")
    summary, out = run(cfg)
    assert "fp16" in out and summary.step == 3
    log = read_train_log(tmp_path / "run" / "train_log.jsonl")
    assert log[3]["train/loss_scale"] > 1.0
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000003.pt")
    assert saved["scaler"]["scale"] == log[3]["train/loss_scale"]


# ------------------------------------------------------------------------------ TensorBoard


def tensorboard_tags(run_dir: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"),
                           size_guidance={"scalars": 0, "images": 0, "audio": 0})
    acc.Reload()
    return acc.Tags()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tacotron2", "wavenet"])
def test_tensorboard_has_scalars_images_audio(store: Path, tmp_path: Path, model: str) -> None:
    run(config(store, tmp_path / "run", "trainer.max_steps=4", "trainer.val_every=4",
               "trainer.log_every=2", model=model))
    tags = tensorboard_tags(tmp_path / "run")
    terms = ["mel_before", "mel_after", "stop", "guided_attn"] if model == "tacotron2" else ["nll"]
    for name in ["loss", "lr", "grad_norm", "steps_per_s", "frames_per_s", *terms]:
        assert f"train/{name}" in tags["scalars"]
    assert "val/loss" in tags["scalars"]
    if model == "tacotron2":
        assert {"val/alignment", "val/mel", "val/synthesis_alignment"} <= set(tags["images"])
        assert "val/teacher_forced_griffin_lim" in tags["audio"]
        assert "val_alignment/band_mass" in tags["scalars"]
    else:
        assert {"val/target", "val/generated"} <= set(tags["audio"])


# ------------------------------------------------------------------------------ DDP


def torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "neurotts.cli", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


# The 2-process DDP run (and its resume after SIGTERM) is in tests/test_reliability.py.


# ------------------------------------------------------------------------------ CLI


def sample_corpus(dest: Path, n: int = 8) -> Path:
    """The ``n`` shortest clips of the shared sample, in LJSpeech layout."""
    import soundfile as sf

    rows = {line.split("|", 1)[0]: line for line in
            (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines() if line}
    by_length = sorted(rows, key=lambda uid: sf.info(str(SAMPLE / "wavs" / f"{uid}.wav")).frames)
    (dest / "wavs").mkdir(parents=True)
    for uid in by_length[:n]:
        shutil.copy(SAMPLE / "wavs" / f"{uid}.wav", dest / "wavs" / f"{uid}.wav")
    (dest / "metadata.csv").write_text("".join(rows[u] + "\n" for u in by_length[:n]), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store prepared by `neurotts prepare` from real clips, or the synthetic one."""
    root = tmp_path_factory.mktemp("cli")
    if not SAMPLE.is_dir():
        return write_store(root / "store", n=10).root
    corpus = sample_corpus(root / "LJSpeech-1.1")
    result = CliRunner().invoke(app, ["prepare", f"data.root={corpus}", f"out={root / 'store'}",
                                      "data.split.val_size=2", "data.split.test_size=1",
                                      "num_workers=1"])
    assert result.exit_code == 0, result.output
    return root / "store"


@pytest.mark.slow
def test_cli_train_end_to_end_and_resume(cli_store: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "experiment=tiny", f"data.features={cli_store}", f"run.dir={run_dir}",
            "trainer.val_every=3", "trainer.checkpoint_every=3"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "trainer.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "config.yaml").is_file() and (run_dir / "tensorboard").is_dir()
    assert (run_dir / "checkpoints" / "step_00000003.pt").is_file()
    result = runner.invoke(app, [*args, "trainer.max_steps=5"])
    assert result.exit_code == 0, result.output
    assert "resumed from step 3" in result.output
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / "step_00000005.pt")
    assert saved["symbols"] == FeatureStore(cli_store).symbols
    # user errors: one line, exit code 2
    bad = runner.invoke(app, ["train", f"data.features={tmp_path / 'nowhere'}", f"run.dir={run_dir}"])
    assert bad.exit_code == 2 and "not a feature store" in bad.output


def test_cli_train_prints_config(store: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--cfg", "experiment=tiny", "model=wavenet",
                                      f"data.features={store}", f"run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "name: wavenet" in result.output and "hop_length: 256" in result.output
