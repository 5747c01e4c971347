"""WaveNet: config, shapes, losses, and generation that agrees with the teacher-forced pass."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from neurotts.config import CONFIG_DIR
from neurotts.models.wavenet.generate import generate, generate_naive
from neurotts.models.wavenet.model import (
    WaveNet,
    WaveNetConfig,
    make_io,
    mol_log_prob,
    mol_loss,
    receptive_field,
    wavenet_loss,
)
from neurotts.models.wavenet.options import GenerateOptions
from tests.model_configs import shipped_model_config

CLIP = (
    Path(__file__).resolve().parents[2]
    / "shared/data/ljspeech-sample/LJSpeech-1.1/wavs/LJ001-0002.wav"
)


def tiny_config(output: str, **changes: object) -> WaveNetConfig:
    """A WaveNet small enough to generate a few hundred samples in well under a second."""
    cfg = WaveNetConfig(
        name="wavenet", n_mels=8, hop_length=16, layers=6, stacks=2, residual_channels=16,
        gate_channels=32, skip_channels=16, kernel_size=3, cond_channels=8, cond_kernel_size=3,
        upsample_scales=[4, 4], output=output, mu_law_channels=64, n_mixtures=3, mol_bits=16,
        log_scale_min=-9.0, dropout=0.0,
    )
    return dataclasses.replace(cfg, **changes)


def tiny_model(output: str, seed: int = 0, **changes: object) -> WaveNet:
    torch.manual_seed(seed)
    model = WaveNet(tiny_config(output, **changes))
    # Default init leaves MoL scales near exp(0): widen the spread of every output so the
    # comparisons below are not between near-constant numbers.
    with torch.no_grad():
        model.head[-1].weight.mul_(10.0)
    return model


def compose_default() -> WaveNetConfig:
    """configs/model/wavenet.yaml resolved against configs/audio/ljspeech.yaml."""
    return shipped_model_config("wavenet")


def teacher_forced_inputs(model: WaveNet, samples: torch.Tensor) -> torch.Tensor:
    """Generated samples (B, T) -> the 'previous sample' inputs the forward pass expects."""
    from neurotts.models.wavenet.model import silence_input

    first = silence_input(model.cfg).to(samples).expand(samples.shape[0], 1)
    return torch.cat([first, samples[:, :-1]], dim=1)


# ---------------------------------------------------------------------------------------------
# Config and shapes


def test_config_defaults_are_the_shipped_yaml_and_build_a_model_without_it() -> None:
    """WaveNetConfig's defaults are configs/model/wavenet.yaml's values (compared here, so the
    two cannot drift); only the audio's n_mels and hop_length have to be given."""
    audio = OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml")
    cfg = WaveNetConfig(n_mels=audio.n_mels, hop_length=audio.hop_length)
    assert cfg == compose_default()
    model = WaveNet(cfg)
    samples = 2 * audio.hop_length  # two mel frames
    out = model(torch.zeros(1, samples, dtype=torch.long), torch.randn(1, 2, audio.n_mels))
    assert out.shape == (1, cfg.mu_law_channels, samples)


def test_default_config_composes_with_audio_values() -> None:
    cfg = compose_default()
    audio = OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml")
    assert cfg.n_mels == audio.n_mels and cfg.hop_length == audio.hop_length
    assert math.prod(cfg.upsample_scales) == cfg.hop_length
    model = WaveNet(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert 3.3e6 < n_params < 4.0e6, n_params  # r9y9's LJSpeech model: 3.7M
    assert model.receptive_field == receptive_field(cfg) == 2 * 4 * (1 + 2 + 4 + 8 + 16 + 32) + 1
    assert cfg.output == "mulaw" and cfg.mu_law_channels == 256


def test_ljspeech_preset_trains_the_mixture_of_logistics() -> None:
    from neurotts.config import compose_config

    audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    cfg = compose_config("train", ["model=wavenet", "experiment=wavenet_ljspeech",
                                   "data.features=x", "run.dir=y"], inject={"audio": audio})
    assert cfg.model.output == "mol" and cfg.model.mol_bits == 16 and cfg.model.n_mixtures == 10


def test_receptive_field_formula_matches_the_network() -> None:
    """The output at t depends on exactly the last ``receptive_field`` inputs."""
    model = tiny_model("mol", kernel_size=3)
    rf = (3 - 1) * 2 * (1 + 2 + 4) + 1  # two cycles of dilations 1, 2, 4
    assert model.receptive_field == rf == 29
    mels = torch.randn(1, 6, 8)
    inputs = torch.randn(1, 6 * 16, requires_grad=True)
    t = 80
    model(inputs, mels)[0, :, t].sum().backward()
    depends = (inputs.grad[0] != 0).nonzero().flatten()
    assert depends.tolist() == list(range(t - rf + 1, t + 1))


@pytest.mark.parametrize("scales", [[4, 4], [2, 8], [3, 5], [16]])
@pytest.mark.parametrize("frames", [1, 3, 11])
def test_upsampled_conditioning_has_one_hop_per_frame(scales: list[int], frames: int) -> None:
    hop = math.prod(scales)
    model = tiny_model("mulaw", hop_length=hop, upsample_scales=scales)
    cond = model.upsample(torch.randn(2, frames, 8))
    assert cond.shape == (2, 8, frames * hop)


def test_upsample_scales_must_multiply_to_hop() -> None:
    with pytest.raises(ValueError, match="hop_length=16"):
        WaveNet(tiny_config("mol", upsample_scales=[4, 2]))
    with pytest.raises(ValueError, match="model.output"):
        WaveNet(tiny_config("wav"))
    with pytest.raises(ValueError, match="multiple of model.stacks"):
        WaveNet(tiny_config("mol", layers=5))


def test_make_io_shifts_targets_right() -> None:
    audio = torch.linspace(-0.9, 0.9, 32)[None]
    for output in ("mulaw", "mol"):
        cfg = tiny_config(output)
        inputs, targets = make_io(audio, cfg)
        assert inputs.shape == targets.shape == (1, 32)
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    _, targets = make_io(audio, tiny_config("mol"))
    bins = (targets + 1.0) * (2**16 - 1) / 2.0  # 16-bit bin centres are whole numbers here
    assert torch.allclose(bins, bins.round(), atol=1e-2)


# ---------------------------------------------------------------------------------------------
# Generation


@pytest.mark.parametrize("mode", ["kernel", "views", "indexed"])
@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_incremental_steps_equal_teacher_forced_forward(output: str, mode: str, request) -> None:
    """Each recorded generation step equals the full forward pass on the generated sequence."""
    if mode == "kernel":
        request.getfixturevalue("kernel_available")
    model = tiny_model(output)
    mels = torch.randn(2, 12, 8)
    lengths = torch.tensor([12, 9])
    gen = generate(model, mels, lengths, GenerateOptions(mode=mode), record=True,
                   generator=torch.Generator().manual_seed(1))
    assert gen.outputs.shape == (2, model.head[-1].out_channels, 12 * 16)
    assert gen.lengths.tolist() == [192, 144]
    assert torch.all(gen.audio[1, 144:] == 0)
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, gen.samples), mels, lengths)
    assert ref.abs().max() > 1.0  # outputs are not trivially small
    torch.testing.assert_close(gen.outputs, ref, atol=1e-4, rtol=1e-4)
    assert len(set(gen.samples[0].tolist())) > 5  # sampling explored, not a constant run


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", ["views", "kernel"])
def test_many_dilations_equal_teacher_forced_forward(batch: int, mode: str) -> None:
    """Both CPU back ends over dilations 1, 2, 4, 8 (the kernel amortises the past taps of
    each dilated layer over d samples; the torch-op fallback gathers all taps every step)
    agree with the full forward pass, at batch 1 and above."""
    from neurotts.models.wavenet import cpu_kernel

    if mode == "kernel" and cpu_kernel.load() is None:
        pytest.skip("no C compiler for the CPU kernel")
    model = tiny_model("mol", seed=3, layers=8, stacks=2)  # dilations 1, 2, 4, 8 twice
    mels = torch.randn(batch, 16, 8)
    gen = generate(model, mels, record=True, generator=torch.Generator().manual_seed(2),
                   options=GenerateOptions(mode=mode))
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, gen.samples), mels)
    torch.testing.assert_close(gen.outputs, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_batched_generation_equals_one_at_a_time(output: str) -> None:
    model = tiny_model(output, seed=3)
    lengths = [7, 10, 4]
    mels = torch.randn(3, 10, 8)
    batched = generate(model, mels, torch.tensor(lengths), GenerateOptions(temperature=0.0))
    for i, n in enumerate(lengths):
        alone = generate(model, mels[i:i + 1, :n], options=GenerateOptions(temperature=0.0))
        torch.testing.assert_close(batched.samples[i, :n * 16], alone.samples[0], atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(batched.audio[i, :n * 16], alone.audio[0])
        assert torch.all(batched.audio[i, n * 16:] == 0)


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_naive_generation_equals_cached(output: str) -> None:
    """Same seed, same noise: the baseline and the cached generator sample the same audio."""
    model = tiny_model(output, seed=5)
    mels = torch.randn(2, 4, 8)
    naive = generate_naive(model, mels, generator=torch.Generator().manual_seed(7), record=True,
                           step_threads=1)
    cached = generate(model, mels, generator=torch.Generator().manual_seed(7), record=True)
    torch.testing.assert_close(naive.outputs, cached.outputs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(naive.samples, cached.samples, atol=1e-5, rtol=0)


def test_generation_restores_training_mode_and_threads() -> None:
    model = tiny_model("mulaw").train()
    threads = torch.get_num_threads()
    generate(model, torch.randn(1, 2, 8), options=GenerateOptions(temperature=0.0))
    assert model.training and torch.get_num_threads() == threads


@pytest.mark.gpu
@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_cuda_graph_generation_equals_eager(output: str) -> None:
    model = tiny_model(output).cuda()
    mels = torch.randn(3, 40, 8, device="cuda")
    lengths = torch.tensor([40, 31, 5], device="cuda")
    graph = generate(model, mels, lengths, GenerateOptions(mode="graph"), record=True,
                     generator=torch.Generator(device="cuda").manual_seed(2))
    eager = generate(model, mels, lengths, GenerateOptions(mode="views"), record=True,
                     generator=torch.Generator(device="cuda").manual_seed(2))
    torch.testing.assert_close(graph.outputs, eager.outputs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(graph.audio, eager.audio, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# The C kernel for CPU generation


@pytest.fixture
def kernel_available() -> None:
    from neurotts.models.wavenet import cpu_kernel

    if cpu_kernel.load() is None:
        pytest.skip("no C compiler here: the CPU kernel cannot be built (torch ops are used)")


@pytest.fixture
def fresh_kernel_cache(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """Kernel builds go to tmp_path; the process-wide loaded kernel is forgotten before and
    after, so other tests see the normal one again."""
    from neurotts.models.wavenet import cpu_kernel

    monkeypatch.setenv("NEUROTTS_CACHE_DIR", str(tmp_path))
    cpu_kernel.load.cache_clear()
    yield tmp_path
    cpu_kernel.load.cache_clear()


@pytest.mark.parametrize("output", ["mulaw", "mol"])
@pytest.mark.parametrize("batch", [1, 7])
def test_cpu_kernel_equals_teacher_forced_forward_and_torch_ops(
        output: str, batch: int, kernel_available: None) -> None:
    """Channel counts with full 32-wide SIMD panels and a remainder (R=48, G=96, S=40), and
    batch 7 with dilations up to 8, so tiles of 1 to 12 rows run (one or several panels).
    Its per-step outputs equal the full forward pass; with the same noise it samples what
    the torch-op path samples."""
    model = tiny_model(output, seed=11, residual_channels=48, gate_channels=96, skip_channels=40,
                       layers=8, stacks=2)
    mels = torch.randn(batch, 10, 8)
    lengths = torch.randint(6, 11, (batch,)) if batch > 1 else None
    kernel = generate(model, mels, lengths, GenerateOptions(mode="kernel", kernel_threads=1),
                      record=True, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, kernel.samples), mels, lengths)
    assert ref.abs().max() > 1.0
    torch.testing.assert_close(kernel.outputs, ref, atol=1e-4, rtol=1e-4)
    views = generate(model, mels, lengths, GenerateOptions(mode="views"), record=True,
                     generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(kernel.samples, views.samples, atol=1e-5, rtol=0)
    torch.testing.assert_close(kernel.audio, views.audio, atol=1e-5, rtol=0)


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_cpu_kernel_threads_share_the_batch_without_changing_the_audio(
        output: str, kernel_available: None) -> None:
    """5 utterances over 1, 2 and 3 threads (groups of 5; 3+2; 2+2+1): identical samples
    and outputs, per-item lengths respected."""
    model = tiny_model(output, seed=6)
    mels = torch.randn(5, 9, 8)
    lengths = torch.tensor([9, 4, 7, 9, 2])
    runs = [generate(model, mels, lengths, GenerateOptions(mode="kernel", kernel_threads=n),
                     record=True, generator=torch.Generator().manual_seed(3)) for n in (1, 2, 3)]
    for other in runs[1:]:
        assert torch.equal(other.samples, runs[0].samples)
        torch.testing.assert_close(other.outputs, runs[0].outputs, atol=0, rtol=0)
        assert torch.equal(other.audio, runs[0].audio)
    assert torch.all(runs[0].audio[4, 2 * 16:] == 0) and runs[0].audio[4, :32].abs().sum() > 0


def test_cpu_kernel_gate_matches_torch_over_the_whole_float_range(kernel_available: None) -> None:
    """tanh(a) * sigmoid(b) from the kernel's polynomial exp, against torch, from tiny to
    saturating inputs (|x| up to 1e4, where the exp argument is clamped)."""
    import ctypes

    from neurotts.models.wavenet import cpu_kernel

    g = torch.Generator().manual_seed(0)
    grid = torch.linspace(-30, 30, 6001)
    a = torch.cat([grid, torch.randn(4000, generator=g) * 3, torch.tensor([0.0, -0.0, 1e-30, 1e4, -1e4])])
    b = torch.cat([grid.flip(0), torch.randn(4000, generator=g) * 3, torch.tensor([1e4, -1e4, 0.0, -1e4, 1e4])])
    a, b = a.contiguous(), b.contiguous()
    z = torch.empty_like(a)
    cpu_kernel.load().wn_gate(len(a), ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()),
                              ctypes.c_void_p(z.data_ptr()))
    ref = torch.tanh(a.double()) * torch.sigmoid(b.double())
    assert torch.isfinite(z).all()
    assert (z.double() - ref).abs().max() < 5e-7  # torch float32 itself: 1.2e-7


@pytest.fixture(params=["native", "no-avx512"])
def simd_kernel(request, fresh_kernel_cache: Path, monkeypatch):
    """The kernel as built for this CPU, and built with ``-mno-avx512f`` (its AVX2/generic
    code path; x86-64 only), each a real compile into a fresh cache."""
    import platform

    from neurotts.models.wavenet import cpu_kernel

    if request.param == "no-avx512":
        if platform.machine().lower() not in ("x86_64", "amd64"):
            pytest.skip("-mno-avx512f is an x86-64 flag")
        monkeypatch.setenv("NEUROTTS_CPU_KERNEL_CFLAGS", "-mno-avx512f")
    lib = cpu_kernel.load()
    if lib is None:
        pytest.skip("no C compiler here: the CPU kernel cannot be built")
    return lib


def test_cpu_kernel_product_for_every_row_count_and_width(simd_kernel) -> None:
    """The register-tiled product Y += X @ W against torch, for 1..26 rows (one to three
    row chunks, every tile shape) and widths of whole 32-wide panels, panel counts that
    the multi-panel tiles do not divide, and remainders."""
    import ctypes

    g = torch.Generator().manual_seed(0)

    def ptr(t: torch.Tensor) -> ctypes.c_void_p:
        return ctypes.c_void_p(t.data_ptr())

    for n_in in (1, 5, 128):
        for n_out in (8, 32, 40, 64, 96, 160, 264):
            w = torch.randn(n_in, n_out, generator=g)
            packed = torch.empty_like(w)
            simd_kernel.wn_pack(n_in, n_out, ptr(w), ptr(packed))
            for rows in range(1, 27):
                x = torch.randn(rows, n_in, generator=g)
                y = torch.randn(rows, n_out, generator=g)
                expected = y + x @ w
                simd_kernel.wn_gemm(rows, ptr(x), n_in, ptr(packed), n_out, ptr(y), 0)
                torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-5,
                                           msg=f"rows={rows} in={n_in} out={n_out}")


def test_cpu_kernel_generation_on_each_code_path(simd_kernel) -> None:
    """Whole generation through each SIMD path equals the teacher-forced forward pass, at a
    batch of 13 (two row chunks) with 64-wide panels."""
    model = tiny_model("mulaw", seed=5, residual_channels=64, gate_channels=128,
                       skip_channels=64, layers=6, stacks=2)
    mels = torch.randn(13, 6, 8)
    gen = generate(model, mels, record=True, generator=torch.Generator().manual_seed(1),
                   options=GenerateOptions(mode="kernel", kernel_threads=1))
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, gen.samples), mels)
    torch.testing.assert_close(gen.outputs, ref, atol=1e-4, rtol=1e-4)


@pytest.fixture
def bf16_kernel(kernel_available: None):
    from neurotts.models.wavenet import cpu_kernel

    if not cpu_kernel.has_bf16():
        pytest.skip("this CPU has no AVX512-BF16: the kernel is built without bf16 products")
    return cpu_kernel.load()


def test_cpu_kernel_bf16_product_is_the_product_of_the_rounded_operands(bf16_kernel) -> None:
    """wn_pack_bf16 + the bf16 product: the 32-wide panels multiply X and W rounded to bf16
    (sums in float32), the O%32 tail stays float32; odd input counts are padded."""
    import ctypes

    g = torch.Generator().manual_seed(1)

    def ptr(t: torch.Tensor) -> ctypes.c_void_p:
        return ctypes.c_void_p(t.data_ptr())

    for n_in in (1, 7, 128):
        for n_out in (8, 32, 40, 96, 264):
            w = torch.randn(n_in, n_out, generator=g)
            packed = torch.zeros_like(w)  # a bf16 packing fits the float32 size
            bf16_kernel.wn_pack_bf16(n_in, n_out, ptr(w), ptr(packed))
            cut = n_out // 32 * 32
            for rows in (1, 2, 3, 4, 5, 8, 13, 26):
                x = torch.randn(rows, n_in, generator=g)
                y = torch.randn(rows, n_out, generator=g)
                low = x.bfloat16().double() @ w[:, :cut].bfloat16().double()
                expected = y.double() + torch.cat([low, x.double() @ w[:, cut:].double()], 1)
                bf16_kernel.wn_gemm(rows, ptr(x), n_in, ptr(packed), n_out, ptr(y), 1)
                torch.testing.assert_close(y.double(), expected, atol=1e-4, rtol=1e-5,
                                           msg=f"rows={rows} in={n_in} out={n_out}")


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_bf16_generation_follows_the_forward_pass_within_bf16_rounding(
        output: str, bf16_kernel) -> None:
    """Every step's outputs against the float32 forward pass over the samples drawn: off by
    bf16 rounding (8 significant bits), not by a wrong product; fp32 is exact to 1e-4."""
    model = tiny_model(output, seed=5, residual_channels=64, gate_channels=128,
                       skip_channels=64, layers=6, stacks=2)
    mels = torch.randn(5, 6, 8)
    gen = generate(model, mels, record=True, generator=torch.Generator().manual_seed(2),
                   options=GenerateOptions(mode="kernel", precision="bf16"))
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, gen.samples), mels)
    err = (gen.outputs - ref).abs()
    assert 1e-4 < err.max() < 0.05 * ref.abs().max()
    assert err.mean() < 0.005 * ref.abs().mean()


def test_bf16_is_refused_where_it_cannot_run(fresh_kernel_cache: Path, monkeypatch) -> None:
    """Off the kernel, and with a kernel built without AVX512-BF16 (a real -mno-avx512bf16
    build): a ValueError that says why, before any work."""
    import platform

    from neurotts.models.wavenet import cpu_kernel

    model, mels = tiny_model("mulaw"), torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="precision='fp16': expected one of fp32, bf16"):
        generate(model, mels, options=GenerateOptions(precision="fp16"))
    with pytest.raises(ValueError, match="precision='bf16' runs in the C kernel.*mode='views'"):
        generate(model, mels, options=GenerateOptions(mode="views", precision="bf16"))
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    monkeypatch.setenv("NEUROTTS_CPU_KERNEL_CFLAGS", "-mno-avx512bf16")
    if cpu_kernel.load() is None:
        pytest.skip("no C compiler here: the CPU kernel cannot be built")
    assert not cpu_kernel.has_bf16()
    with pytest.raises(ValueError, match="on a CPU without it"):
        generate(model, mels, options=GenerateOptions(precision="bf16"))


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
def test_cpu_kernel_blocks_that_split_a_dilation_window(kernel_size: int, kernel_available: None,
                                                        monkeypatch) -> None:
    """A block boundary inside a window of d steps (block 5, dilations up to 8) still gives
    the forward pass's outputs: the kernel completes the window at the block start. Also
    for 1 and 3 past taps per layer."""
    from neurotts.models.wavenet import generate as gen_mod

    monkeypatch.setattr(gen_mod, "_block_size", lambda *args: 5)
    model = tiny_model("mulaw", seed=2, layers=8, stacks=2, kernel_size=kernel_size)
    mels = torch.randn(2, 4, 8)
    gen = generate(model, mels, record=True, generator=torch.Generator().manual_seed(0),
                   options=GenerateOptions(mode="kernel"))
    with torch.no_grad():
        ref = model(teacher_forced_inputs(model, gen.samples), mels)
    torch.testing.assert_close(gen.outputs, ref, atol=1e-4, rtol=1e-4)


def test_cpu_kernel_is_built_once_and_reused(fresh_kernel_cache: Path,
                                             kernel_available: None) -> None:
    from neurotts.models.wavenet import cpu_kernel

    built = list((fresh_kernel_cache / "kernels").glob("wavenet_cpu-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    cpu_kernel.load.cache_clear()
    assert cpu_kernel.load() is not None
    assert [p.name for p in (fresh_kernel_cache / "kernels").iterdir()] == [built[0].name]
    assert built[0].stat().st_mtime_ns == stamp


def test_cpu_kernel_disabled_or_unbuildable_falls_back_to_torch_ops(
        fresh_kernel_cache: Path, monkeypatch, caplog) -> None:
    from neurotts.models.wavenet import cpu_kernel

    model = tiny_model("mol", seed=1)
    mels = torch.randn(1, 3, 8)
    reference = generate(model, mels, options=GenerateOptions(temperature=0.0, mode="views"))
    # Disabled by the environment: auto runs on torch ops, an explicit request is refused.
    monkeypatch.setenv("NEUROTTS_CPU_KERNEL", "0")
    assert cpu_kernel.load() is None
    argmax = generate(model, mels, options=GenerateOptions(temperature=0.0))
    torch.testing.assert_close(argmax.audio, reference.audio)
    with pytest.raises(ValueError, match="NEUROTTS_CPU_KERNEL"):
        generate(model, mels, options=GenerateOptions(mode="kernel"))
    # A compiler that fails: one warning naming the source, nothing left in the cache.
    monkeypatch.delenv("NEUROTTS_CPU_KERNEL")
    cpu_kernel.load.cache_clear()
    broken = fresh_kernel_cache / "broken.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(cpu_kernel, "SOURCE", broken)
    with caplog.at_level("WARNING", logger="neurotts.models.wavenet.cpu_kernel"):
        assert cpu_kernel.load() is None
    assert "broken.c" in caplog.text
    assert not list((fresh_kernel_cache / "kernels").iterdir())
    argmax = generate(model, mels, options=GenerateOptions(temperature=0.0))
    torch.testing.assert_close(argmax.audio, reference.audio)
    # No compiler at all.
    cpu_kernel.load.cache_clear()
    monkeypatch.setattr(cpu_kernel, "_compiler", lambda: None)
    with caplog.at_level("WARNING", logger="neurotts.models.wavenet.cpu_kernel"):
        assert cpu_kernel.load() is None
    assert "no C compiler" in caplog.text


def test_cpu_kernel_refuses_half_precision_models(kernel_available: None) -> None:
    model = tiny_model("mulaw").to(torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        generate(model, torch.randn(1, 2, 8, dtype=torch.bfloat16),
                 options=GenerateOptions(mode="kernel"))


# ---------------------------------------------------------------------------------------------
# Losses


def random_mixture(n: int, m: int = 3, seed: int = 0) -> torch.Tensor:
    """MoL parameters (1, 3m, n): one random mixture repeated over n positions."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, generator=g)
    means = torch.rand(m, generator=g) * 1.8 - 0.9
    log_scales = torch.rand(m, generator=g) * 3.0 - 7.0  # scales of a few to ~50 bins
    return torch.cat([logits, means, log_scales])[None, :, None].expand(1, 3 * m, n)


@pytest.mark.parametrize("seed", [0, 1])
def test_mol_probabilities_over_all_16bit_bins_sum_to_one(seed: int) -> None:
    bins = 2**16
    centres = torch.arange(bins, dtype=torch.float64) * (2.0 / (bins - 1)) - 1.0
    params = random_mixture(bins, seed=seed)
    total = mol_log_prob(params, centres.float()[None], 16, -16.0).double().exp().sum()
    assert abs(total.item() - 1.0) < 1e-3


def test_mol_edge_bins_take_the_tails() -> None:
    """A component centred beyond +1 puts (almost) all its mass in the last bin."""
    params = torch.tensor([0.0, 1.5, math.log(0.01)])[None, :, None]  # 1 mixture, mean 1.5
    edges = torch.tensor([[1.0, -1.0]])
    log_p = mol_log_prob(params.expand(1, 3, 2), edges, 16, -16.0)
    assert log_p[0, 0].exp() > 0.99 and log_p[0, 1].exp() < 1e-6


def test_mol_loss_prefers_mixture_centred_on_target_and_has_finite_gradients() -> None:
    target = torch.tensor([[-1.0, -0.3, 0.0, 0.5, 1.0]])
    centred = torch.cat([torch.zeros(1, 1, 5), target[:, None], torch.full((1, 1, 5), -8.0)], 1)
    offset = centred.clone()
    offset[:, 1] += 0.05
    assert mol_loss(centred, target, 16, -16.0) < mol_loss(offset, target, 16, -16.0) - 1.0
    extreme = torch.tensor([[[0.0] * 5, [3.0, -3.0, 0.0, 1.0, -1.0], [-16.0, -16.0, 5.0, -9.0, 2.0]]],
                           requires_grad=True)
    loss = mol_loss(extreme, target, 16, -16.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(extreme.grad).all()


def test_mulaw_loss_is_cross_entropy_with_mask() -> None:
    cfg = tiny_config("mulaw")
    logits = torch.zeros(2, 64, 10)
    targets = torch.randint(0, 64, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False
    assert torch.isclose(wavenet_loss(cfg, logits, targets, mask), torch.tensor(math.log(64)))


# ---------------------------------------------------------------------------------------------
# Learning


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small convolutions on a CPU shared with other jobs: one intra-op thread is several
    times faster than two (a descheduled OpenMP worker stalls every op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.skipif(not CLIP.is_file(), reason=f"LJSpeech clip not found at {CLIP}")
def test_tiny_wavenet_overfits_a_real_clip(one_thread: None) -> None:
    """A tiny mu-law WaveNet memorises 0.19 s of real speech.

    Threshold, 1 nat per sample: the true class then gets a geometric-mean probability above
    1/e = 0.37, ~95x the uniform 1/256 (log 256 = 5.55 nats), and about 4 nats below the
    entropy of the segment's class histogram (~5.1 nats, the best a model ignoring context and
    mels can do). Measured here: ~130 Adam steps, 15-30 s on 2 shared cores.
    """
    from neurotts.audio import fit_to_hop, load_wav, log_mel
    from neurotts.config import load_config
    from neurotts.data.config import PrepareConfig

    audio_cfg = load_config("prepare", PrepareConfig, ["out=x"]).audio
    wav = fit_to_hop(load_wav(CLIP, audio_cfg.sample_rate), audio_cfg.hop_length)
    mels = torch.from_numpy(log_mel(wav, audio_cfg))
    first, frames, hop = 40, 16, audio_cfg.hop_length  # a voiced stretch of the clip
    mels = mels[first:first + frames]
    mels = ((mels - mels.mean()) / mels.std())[None]  # (1, frames, n_mels)
    audio = torch.from_numpy(wav[first * hop:(first + frames) * hop])[None]  # (1, frames * hop)

    torch.manual_seed(0)
    cfg = dataclasses.replace(
        tiny_config("mulaw", mu_law_channels=256, layers=10, stacks=2, residual_channels=32,
                    gate_channels=64, skip_channels=64, cond_channels=32),
        n_mels=audio_cfg.n_mels, hop_length=hop, upsample_scales=[4, 4, 4, 4],
    )
    model = WaveNet(cfg)
    inputs, targets = make_io(audio, cfg)
    counts = torch.bincount(targets.flatten(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    marginal_entropy = float(-(p * p.log()).sum())
    assert marginal_entropy > 4.0  # a loud, varied segment: memorising it is not trivial

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start, loss, steps = time.perf_counter(), float("inf"), 0
    while time.perf_counter() - start < 55.0 and loss >= 1.0:
        batch_loss = wavenet_loss(cfg, model(inputs, mels), targets)
        opt.zero_grad()
        batch_loss.backward()
        opt.step()
        loss, steps = batch_loss.item(), steps + 1
    assert loss < 1.0, f"loss {loss:.2f} after {steps} steps (marginal {marginal_entropy:.2f})"
