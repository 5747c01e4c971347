"""Tacotron 2's speed paths: padding to graph buckets, the CUDA-graph decoder, precision=auto.

On CPU: the padding the graphs rely on leaves outputs and gradients unchanged, the gradient
copy that guards against pytorch#181723 works, configuration errors, the precision rule.
On a GPU (``gpu`` marker): graphed == eager for outputs, losses and gradients (IEEE fp32: 1e-5;
bf16: 2e-2 relative), gradient accumulation, same-seed random masks, and a training run.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from neurotts.config import ConfigError
from neurotts.models.tacotron2 import tacotron2_loss
from neurotts.training.config import CudaGraphsConfig, load_train_config
from neurotts.training.graphs import (
    GraphedDecoder,
    bucket_caps,
    cut_outputs,
    fresh_grads,
    pad_inputs,
)
from neurotts.training.logging import read_train_log
from neurotts.training.loop import train
from neurotts.training.optim import auto_precision
from tests.test_loader import write_store
from tests.test_tacotron2 import ATTENTIONS, model_cfg, random_batch, tiny_model

DETERMINISTIC = ("decoder.prenet_dropout=0.0", "decoder.zoneout=0.0")


def graphs_cfg(text_step: int = 8, frame_step: int = 16, max_graphs: int = 8) -> CudaGraphsConfig:
    return CudaGraphsConfig(enabled=True, text_step=text_step, frame_step=frame_step,
                            max_graphs=max_graphs)


def decoder_inputs(model, text_lengths, mel_lengths, device="cpu", seed=0):
    """Encoder memory (a leaf, so its gradient can be compared), mask and r-padded mels."""
    text, tl, mels, ml = random_batch(text_lengths, mel_lengths, n_mels=model.n_mels, seed=seed)
    with torch.no_grad():
        memory = model.encoder(text, tl)
    mask = torch.arange(text.shape[1])[None, :] < tl[:, None]
    t_dec = math.ceil(mels.shape[1] / model.r)
    mels = torch.nn.functional.pad(mels, (0, 0, 0, t_dec * model.r - mels.shape[1]))
    return memory.to(device), mask.to(device), mels.to(device)


def outputs_and_grads(model, decode, memory, mask, mels, proj=None):
    """Decoder outputs, and gradients of a fixed random projection of them (params, memory)."""
    model.zero_grad(set_to_none=True)
    memory = memory.clone().requires_grad_(True)
    outs = decode(memory, mask, mels)
    if proj is None:
        g = torch.Generator().manual_seed(7)
        proj = [torch.randn(o.shape, generator=g).to(o.device) for o in outs]
    sum((o.float() * w).sum() for o, w in zip(outs, proj, strict=True)).backward()
    grads = {n: p.grad.clone() for n, p in model.decoder.named_parameters()}
    return [o.detach().clone() for o in outs], grads, memory.grad.clone(), proj


def assert_same(a, b, atol, rtol):
    outs_a, grads_a, mem_a, _ = a
    outs_b, grads_b, mem_b, _ = b
    for x, y in zip(outs_a, outs_b, strict=True):
        torch.testing.assert_close(x.float(), y.float(), atol=atol, rtol=rtol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name].float(), grads_b[name].float(), atol=atol,
                                   rtol=rtol, msg=name)
    torch.testing.assert_close(mem_a.float(), mem_b.float(), atol=atol, rtol=rtol)


# ------------------------------------------------------------------------------ CPU


def test_bucket_caps_are_multiples_of_the_steps_and_of_r():
    cfg = graphs_cfg(text_step=32, frame_step=64)
    assert bucket_caps(1, 1, 2, cfg) == (32, 64)
    assert bucket_caps(32, 64, 2, cfg) == (32, 64)
    assert bucket_caps(33, 65, 2, cfg) == (64, 128)
    assert bucket_caps(10, 100, 3, cfg) == (32, 192)  # lcm(64, 3): whole decoder steps


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("r", [1, 2])
def test_padding_to_bucket_caps_keeps_outputs_and_gradients(attention, r):
    """What the graphs replay: the decoder on inputs padded to the bucket caps, cut back,
    equals the decoder on the batch itself; gradients too (random masks off)."""
    model = tiny_model(attention, r=r, extra=DETERMINISTIC).train()
    memory, mask, mels = decoder_inputs(model, [6, 13, 9], [14, 35, 20])
    text_cap, frame_cap = bucket_caps(memory.shape[1], mels.shape[1], r, graphs_cfg())
    assert text_cap > memory.shape[1] and frame_cap > mels.shape[1]

    def padded(memory, mask, mels):
        out = model.decoder(*pad_inputs(memory, mask, mels, text_cap, frame_cap))
        return cut_outputs(out, memory.shape[1], mels.shape[1], r)

    eager = outputs_and_grads(model, model.decoder, memory, mask, mels)
    assert_same(outputs_and_grads(model, padded, memory, mask, mels, eager[3]), eager,
                atol=2e-5, rtol=1e-4)


class _StaticBufferGrad(torch.autograd.Function):
    """Like make_graphed_callables' backward: writes the weight's gradient into one persistent
    buffer and returns that buffer (detached) to autograd."""

    buffer = torch.zeros(3)

    @staticmethod
    def forward(ctx, x, w):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x * w

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        _StaticBufferGrad.buffer.copy_(grad * x)
        return None, _StaticBufferGrad.buffer.detach()


@pytest.mark.parametrize("guarded", [False, True])
def test_fresh_grads_guard_gradient_accumulation_against_static_buffers(guarded):
    """pytorch#181723: autograd keeps a returned static buffer as ``.grad``; the next backward
    overwrites it and accumulation doubles the second gradient instead of adding the first."""
    w = torch.nn.Parameter(torch.ones(3))
    xs = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])]
    for x in xs:
        weight = fresh_grads((w,))[0] if guarded else w
        _StaticBufferGrad.apply(x, weight).sum().backward()
    expected = xs[0] + xs[1]
    if guarded:
        torch.testing.assert_close(w.grad, expected)
    else:  # the pitfall is real in this torch: the guard is needed
        torch.testing.assert_close(w.grad, 2 * xs[1])


def test_cuda_graphs_need_a_cuda_device(tmp_path):
    write_store(tmp_path / "store", n=6)
    with pytest.raises(ConfigError, match="cuda_graphs.enabled=true needs a CUDA device"):
        load_train_config(["experiment=tiny", "model=tacotron2", f"data.features={tmp_path}/store",
                           f"run.dir={tmp_path}/run", "trainer.cuda_graphs.enabled=true"])
    with pytest.raises(ConfigError, match="frame_step=0"):
        load_train_config(["experiment=tiny", "model=tacotron2", f"data.features={tmp_path}/store",
                           f"run.dir={tmp_path}/run", "trainer.cuda_graphs.frame_step=0"])
    with pytest.raises(ConfigError, match="for model=tacotron2 only, not model=wavenet"):
        load_train_config(["experiment=tiny", "model=wavenet", f"data.features={tmp_path}/store",
                           f"run.dir={tmp_path}/run", "trainer.device=cuda",
                           "trainer.cuda_graphs.enabled=true"])
    model = tiny_model("location", extra=DETERMINISTIC)
    graphed = GraphedDecoder(model.decoder, model.r, graphs_cfg())
    memory, mask, mels = decoder_inputs(model, [5, 7], [12, 9])
    with pytest.raises(ConfigError, match="needs a CUDA GPU; this run trains on cpu"):
        graphed(memory, mask, mels)
    model.eval()  # validation and synthesis run eagerly, on any device
    torch.testing.assert_close(graphed(memory, mask, mels)[0], model.decoder(memory, mask, mels)[0])


def test_loss_through_graphed_decoder_is_the_models_loss_on_cpu_eval():
    """``decode=`` only swaps the decoder loop: with the plain decoder passed explicitly the
    model's outputs and loss are unchanged (eval mode, so it runs on CPU)."""
    model = tiny_model("location", r=2, extra=DETERMINISTIC).eval()
    text, tl, mels, ml = random_batch([5, 9], [12, 7], n_mels=8)
    graphed = GraphedDecoder(model.decoder, 2, graphs_cfg())
    with torch.no_grad():
        a = model(text, tl, mels, ml)
        b = model(text, tl, mels, ml, decode=graphed)
    cfg = model_cfg(model, "location", 2)
    torch.testing.assert_close(tacotron2_loss(a, mels, ml, tl, cfg, 0)[0],
                               tacotron2_loss(b, mels, ml, tl, cfg, 0)[0])


def test_auto_precision_rule():
    assert auto_precision("tacotron2", None) == "fp32"  # CPU
    assert auto_precision("tacotron2", (9, 0)) == "fp32"  # H100/H200: TF32 measured fastest
    assert auto_precision("tacotron2", (8, 0)) == "fp32"
    assert auto_precision("wavenet", (9, 0)) == "bf16"  # not measured otherwise: unchanged
    assert auto_precision("tacotron2", (7, 0)) == "fp16"  # V100: no TF32, no bf16
    assert auto_precision("wavenet", (7, 5)) == "fp16"


# ------------------------------------------------------------------------------ GPU


@pytest.fixture
def ieee_fp32():
    """IEEE fp32 matmuls (no TF32) so graphed and eager can be compared tightly."""
    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def cuda_model(attention, r, extra=DETERMINISTIC):
    return tiny_model(attention, r=r, extra=extra).cuda().train()


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("r", [1, 2])
def test_graphed_decoder_equals_eager(attention, r, ieee_fp32):
    """Padded shapes, two batches of the same bucket (second one replays), fp32: 1e-5."""
    model = cuda_model(attention, r)
    graphed = GraphedDecoder(model.decoder, r, graphs_cfg())
    for seed, lengths in enumerate([([6, 13, 9], [14, 31, 20]), ([12, 3, 7], [30, 9, 25])]):
        memory, mask, mels = decoder_inputs(model, *lengths, device="cuda", seed=seed)
        eager = outputs_and_grads(model, model.decoder, memory, mask, mels)
        got = outputs_and_grads(model, graphed, memory, mask, mels, eager[3])
        assert_same(got, eager, atol=1e-5, rtol=1e-5)
    assert graphed.stats.captured == 1 and graphed.stats.replays == 2


@pytest.mark.gpu
def test_graphed_decoder_under_bf16_autocast(ieee_fp32):
    model = cuda_model("location", 2)
    graphed = GraphedDecoder(model.decoder, 2, graphs_cfg())
    memory, mask, mels = decoder_inputs(model, [6, 13, 9], [14, 31, 20], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = outputs_and_grads(model, model.decoder, memory, mask, mels)
        got = outputs_and_grads(model, graphed, memory, mask, mels, eager[3])
    assert got[0][0].dtype == torch.bfloat16
    assert_same(got, eager, atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
def test_graphed_random_masks_match_eager_without_padding(ieee_fp32):
    """Prenet dropout and zoneout on, steps of 1 (no padding): the same seed draws the same
    masks graphed as eager, and capture does not advance the training RNG stream."""
    model = cuda_model("location", 2, extra=("decoder.zoneout=0.1",))
    graphed = GraphedDecoder(model.decoder, 2, graphs_cfg(text_step=1, frame_step=1))
    memory, mask, mels = decoder_inputs(model, [6, 13, 9], [14, 32, 20], device="cuda")
    # A first call captures: it must consume exactly the random numbers an eager call does.
    streams = []
    for decode in (model.decoder, graphed):
        torch.manual_seed(3)
        outputs_and_grads(model, decode, memory, mask, mels)
        streams.append(torch.cuda.get_rng_state())
    assert graphed.stats.captured == 1 and torch.equal(streams[0], streams[1])
    results = []
    for decode in (model.decoder, graphed):
        torch.manual_seed(5)
        results.append(outputs_and_grads(model, decode, memory, mask, mels))
    assert_same(results[1], results[0], atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_graphed_gradient_accumulation(ieee_fp32):
    """Two micro-batches (different buckets, then the same one twice): accumulated gradients
    equal eager accumulation, not twice the last batch's (pytorch#181723)."""
    model = cuda_model("location", 2)
    graphed = GraphedDecoder(model.decoder, 2, graphs_cfg())
    batches = [decoder_inputs(model, [6, 13], [14, 31], "cuda", seed=1),
               decoder_inputs(model, [20, 4], [60, 12], "cuda", seed=2),
               decoder_inputs(model, [5, 11], [20, 28], "cuda", seed=3)]
    grads = []
    for decode in (model.decoder, graphed):
        model.zero_grad(set_to_none=True)
        for memory, mask, mels in batches:
            sum(o.float().square().mean() for o in decode(memory, mask, mels)).backward()
        grads.append({n: p.grad.clone() for n, p in model.decoder.named_parameters()})
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, atol=1e-5, rtol=1e-5, msg=name)
    assert graphed.stats.captured == 2


@pytest.mark.gpu
def test_training_with_cuda_graphs_repeats_the_eager_losses(tmp_path: Path):
    """The real loop on a synthetic store, same seed, steps of 1 (no padding, same random
    draws): per-step losses of the graphed run equal the eager run's; the model's loss, with
    the postnet and guided attention, goes through the graphed decoder."""
    store = tmp_path / "store"
    write_store(store, n=12)
    losses = []
    for graphs in ("false", "true"):
        cfg = load_train_config([
            "experiment=tiny", "model=tacotron2", f"data.features={store}",
            f"run.dir={tmp_path}/run_{graphs}", "trainer.device=cuda", "trainer.precision=fp32",
            "trainer.tf32=false", "trainer.max_steps=12", "trainer.log_every=1",
            "trainer.val_every=100", "trainer.media.griffin_lim_iters=0",
            f"trainer.cuda_graphs.enabled={graphs}", "trainer.cuda_graphs.text_step=1",
            "trainer.cuda_graphs.frame_step=1"])
        train(cfg, Console(file=io.StringIO()))
        log = read_train_log(Path(cfg.run.dir) / "train_log.jsonl")
        losses.append([log[s]["train/loss"] for s in sorted(log) if "train/loss" in log[s]])
    assert len(losses[0]) == 12
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-4,
                               rtol=1e-4)


@pytest.mark.gpu
def test_auto_precision_on_this_gpu_turns_tf32_on(tmp_path: Path):
    store = tmp_path / "store"
    write_store(store, n=8)
    cfg = load_train_config(["experiment=tiny", "model=tacotron2", f"data.features={store}",
                             f"run.dir={tmp_path}/run", "trainer.device=cuda",
                             "trainer.precision=auto", "trainer.max_steps=2",
                             "trainer.media.griffin_lim_iters=0"])
    out = io.StringIO()
    train(cfg, Console(file=out, width=200))
    expected = auto_precision("tacotron2", torch.cuda.get_device_capability())
    assert f"on cuda:0, {expected}" in out.getvalue() or f"on cuda, {expected}" in out.getvalue()
    if expected == "fp32":
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"


# ------------------------------------------------------------------------------ make bench-gpu


@pytest.mark.slow
def test_gpu_check_dry_run_end_to_end(tmp_path: Path):
    """bench/gpu_check.py --dry-run: every stage's command runs for real on the CPU (gpu tests
    collected and skipped, the bench's CUDA rows at toy sizes, two real training runs whose loss
    curves agree exactly, synthesis to wavs, the small-data run and its held-out quality
    section), and the summary says so."""
    import json
    import subprocess
    import sys

    store = tmp_path / "store"
    write_store(store, n=12)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--store", str(store),
                           "--out", str(tmp_path / "out")], cwd=root, capture_output=True,
                          text=True, timeout=1200)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stages = summary["stages"]
    assert done.returncode == 0, (done.stdout, {k: v["status"] for k, v in stages.items()})
    assert [stages[k]["status"] for k in ("tests", "bench_tacotron2", "train_graphed",
                                          "train_eager", "synth")] == ["ok"] * 5
    assert stages["bench_wavenet"]["status"] == "skipped"
    rows = stages["bench_tacotron2"]["json"]["smoke"]["frames_per_s"]
    assert rows["b128_fp32_torchaudio_r1"] > 0 and rows["b128_bf16_ours_r1"] > 0
    curve = summary["loss_curve"]
    assert curve["steps_compared"] == 4 and curve["max_abs_diff"] == 0.0  # both eager on CPU
    assert stages["synth"]["wavs"] == ["001.wav", "002.wav"]
    assert_quality_section(summary, tmp_path / "out")


def assert_quality_section(summary: dict, out: Path) -> None:
    """The quality section: experiment=small_data trained a few steps, two held-out sentences
    spoken and kept, each figure present (an untrained model stops at once or at the guard)."""
    stages = summary["stages"]
    assert [stages[k]["status"] for k in ("train_small_data", "quality")] == ["ok", "ok"]
    quality = summary["quality"]
    assert quality["experiment"] == "small_data" and quality["train_steps"] == 3
    assert quality["text"] == "characters"  # what write_store prepares; the recipe wants arpabet
    assert quality["sentences"] == 2 and 0 <= quality["hit_max"] <= 2
    assert 0 <= quality["attention"]["focus"] <= 1 and quality["rtf"] > 0
    assert sorted(p.name for p in (out / quality["wavs"]).glob("*.wav")) == ["001.wav", "002.wav"]
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        assert quality["cer"] is None and "not scored" in quality["asr"]
    else:
        assert quality["cer"] > 0.5  # an untrained model says nothing recognisable


@pytest.mark.slow
def test_gpu_check_dry_run_quality_stages_alone(tmp_path: Path):
    """--only quality: the small-data run and the held-out sentences' section, nothing else
    (how a GPU session reruns one stage group)."""
    import json
    import subprocess
    import sys

    store = tmp_path / "store"
    write_store(store, n=12)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--only", "quality",
                           "--store", str(store), "--out", str(tmp_path / "out")], cwd=root,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["stages"]) == ["quality", "train_small_data"]
    assert_quality_section(summary, tmp_path / "out")
    bad = subprocess.run([sys.executable, "bench/gpu_check.py", "--only", "qualty", "--store",
                          str(store), "--out", str(tmp_path / "bad")], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no stage group qualty" in bad.stderr
