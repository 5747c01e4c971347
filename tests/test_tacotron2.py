"""Tacotron 2: shapes, padding invariance, low-precision masks, inference stopping, losses,
alignment-health metrics, and (slow) a tiny model learning a diagonal alignment on real clips."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bench.alignment_speed import ALIGNMENT_PROBE_TACOTRON2
from neurotts.config import CONFIG_DIR
from neurotts.models.alignment import (
    AlignmentThresholds,
    alignment_metrics,
    coverage,
    diagonal_band_mass,
    focus_rate,
    is_aligned,
    monotonicity,
)
from neurotts.models.attention import (
    AttentionState,
    DynamicConvolutionAttention,
    MultiHeadAttention,
)
from neurotts.models.tacotron2 import (
    DecoderState,
    Tacotron2,
    Tacotron2Config,
    guided_attention_loss,
    tacotron2_loss,
)
from neurotts.text.frontend import TextConfig, TextFrontend
from tests.model_configs import shipped_model_config

ATTENTIONS = ["location", "dca", "multihead"]
SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"
)
N_SYMBOLS = 30

# Small enough for CPU tests, with every component (zoneout, dropout, all attentions) present.
TINY = [
    "encoder.embedding_dim=16",
    "encoder.conv_channels=16",
    "encoder.conv_layers=2",
    "encoder.lstm_dim=16",
    "decoder.prenet_dims=[16,16]",
    "decoder.attention_rnn_dim=24",
    "decoder.decoder_rnn_dim=24",
    "attention.dim=16",
    "attention.location.n_filters=4",
    "attention.location.kernel_size=7",
    "attention.dca.n_static_filters=4",
    "attention.dca.static_kernel_size=7",
    "attention.dca.n_dynamic_filters=4",
    "attention.dca.dynamic_kernel_size=7",
    "attention.multihead.n_heads=2",
    "attention.multihead.n_filters=4",
    "attention.multihead.kernel_size=7",
    "postnet.channels=16",
    "postnet.layers=3",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core CI box the
    threads spin against each other (measured 10x slower per step with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_config(n_mels: int, overrides: list[str]) -> Tacotron2Config:
    """The shipped model yaml, with ``${audio.n_mels}`` resolved and ``overrides`` applied."""
    return shipped_model_config("tacotron2", {"n_mels": n_mels}, overrides)


def tiny_model(
    attention: str, r: int = 2, n_mels: int = 8, extra: tuple[str, ...] = ()
) -> Tacotron2:
    torch.manual_seed(0)
    cfg = make_config(
        n_mels, [*TINY, f"attention.type={attention}", f"reduction_factor={r}", *extra]
    )
    return Tacotron2(cfg, N_SYMBOLS)


def random_batch(text_lengths: list[int], mel_lengths: list[int], n_mels: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tl, ml = torch.tensor(text_lengths), torch.tensor(mel_lengths)
    text = torch.randint(1, N_SYMBOLS, (len(tl), int(tl.max())), generator=g)
    text = text * (torch.arange(text.shape[1]) < tl[:, None])  # padding id 0
    mels = torch.randn(len(ml), int(ml.max()), n_mels, generator=g)
    mels = mels * (torch.arange(mels.shape[1]) < ml[:, None]).unsqueeze(-1)
    return text, tl, mels, ml


# ------------------------------------------------------------------------------ config & shapes


def test_yaml_interpolates_n_mels_and_builds_full_size():
    raw = OmegaConf.load(CONFIG_DIR / "model" / "tacotron2.yaml")
    assert raw.name == "tacotron2"
    assert OmegaConf.to_container(raw)["n_mels"] == "${audio.n_mels}"
    cfg = make_config(n_mels=96, overrides=[])
    assert cfg.n_mels == 96 and cfg.attention.type in ATTENTIONS
    model = Tacotron2(cfg, n_symbols=N_SYMBOLS)
    assert model.decoder.frame_layer.out_features == 96 * cfg.reduction_factor
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 40e6  # the paper's ~28M


def test_config_defaults_are_the_shipped_yaml_and_build_a_model_without_it():
    """Tacotron2Config's defaults are configs/model/tacotron2.yaml's values (compared here, so
    the two cannot drift), and the dataclass alone builds the shipped model, as torchaudio's
    constructors do; only n_mels, the audio's, has to be given."""
    assert Tacotron2Config(n_mels=80) == make_config(n_mels=80, overrides=[])
    model = Tacotron2(Tacotron2Config(n_mels=80), n_symbols=N_SYMBOLS).eval()
    text, tl, mels, ml = random_batch([5, 3], [6, 4], n_mels=80)
    out = model(text, tl, mels, ml)
    assert out.mel_before.shape == out.mel_after.shape == (2, 6, 80)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("r", [1, 3])
def test_forward_shapes(attention, r):
    model = tiny_model(attention, r=r)
    text, tl, mels, ml = random_batch([7, 11, 4], [23, 17, 9], n_mels=8)
    out = model(text, tl, mels, ml)
    assert out.mel_before.shape == out.mel_after.shape == (3, 23, 8)
    assert out.stop_logits.shape == (3, 23)
    assert out.alignments.shape == (3, math.ceil(23 / r), 11)
    sums = out.alignments.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert out.alignments[0, :, 7:].abs().max() == 0  # never attends to padding
    assert out.alignments[2, :, 4:].abs().max() == 0
    loss, terms = tacotron2_loss(out, mels, ml, tl, model_cfg(model, attention, r), step=0)
    loss.backward()
    assert set(terms) == {"mel_before", "mel_after", "stop", "guided_attn"}
    assert all(p.grad is not None for p in model.encoder.parameters())


def model_cfg(model: Tacotron2, attention: str, r: int) -> Tacotron2Config:
    return make_config(
        model.n_mels, [*TINY, f"attention.type={attention}", f"reduction_factor={r}"]
    )


# ------------------------------------------------------------------------------ padding


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padding_does_not_change_valid_outputs(attention):
    # Prenet dropout is on even in eval (as in the paper); switch it off to compare exactly.
    model = tiny_model(attention, r=3, extra=("decoder.prenet_dropout=0.0",)).eval()
    text, tl, mels, ml = random_batch([6, 13, 9], [14, 31, 20], n_mels=8)
    with torch.no_grad():
        batch_mem = model.encoder(text, tl)
        batch_out = model(text, tl, mels, ml)
        for i in (0, 2):
            t, m = int(tl[i]), int(ml[i])
            one_text, one_mel = text[i : i + 1, :t], mels[i : i + 1, :m]
            alone_mem = model.encoder(one_text, tl[i : i + 1])
            torch.testing.assert_close(batch_mem[i, :t], alone_mem[0], atol=1e-5, rtol=0)
            assert batch_mem[i, t:].abs().max() == 0
            alone = model(one_text, tl[i : i + 1], one_mel, ml[i : i + 1])
            for name in ("mel_before", "mel_after", "stop_logits"):
                got = getattr(batch_out, name)[i, :m]
                torch.testing.assert_close(got, getattr(alone, name)[0], atol=1e-5, rtol=0)
            t_dec = math.ceil(m / 3)
            torch.testing.assert_close(
                batch_out.alignments[i, :t_dec, :t], alone.alignments[0], atol=1e-5, rtol=0
            )


# ------------------------------------------------------------------------------ reference decoder
# The decoder's loop computes the prenet's share of the attention LSTM input for all steps at
# once, folds the location conv into its dense layer, masks by an additive bias and projects
# frames after the loop. The reference below is the textbook step-by-step formulation (one
# nn.LSTMCell call per cell and step, conv then dense, masked_fill, projections per step):
# both must agree to float rounding whenever no random mask is involved.


def _ref_attention(att, memory, mask, query, prev, cum):
    """One step of ``att`` computed from the definitions -> context (B, D), weights (B, T)."""
    b, t, _ = memory.shape
    history = torch.stack([prev, cum], dim=1)  # (B, 2, T)
    if isinstance(att, MultiHeadAttention):
        h, d = att.n_heads, att.head_dim
        split = lambda x: x.reshape(b, t, h, d).transpose(1, 2)  # noqa: E731
        q = att.query_layer(query).reshape(b, h, 1, d)
        scores = q @ split(att.key_layer(memory)).transpose(-1, -2) / math.sqrt(d)
        if att.location_conv is not None:
            loc = att.location_layer(att.location_conv(history).transpose(1, 2))  # (B, T, H)
            scores = scores + loc.permute(0, 2, 1).unsqueeze(2)
        m = mask[:, None, None, :]
        hw = torch.softmax(scores.masked_fill(~m, torch.finfo(torch.float32).min), -1) * m
        context = att.out_layer((hw @ split(att.value_layer(memory))).reshape(b, h * d))
        return context, hw.mean(dim=1).squeeze(1)
    if isinstance(att, DynamicConvolutionAttention):
        static = att.static_layer(att.static_conv(prev.unsqueeze(1)).transpose(1, 2))
        k, n = att.dynamic_kernel_size, att.n_dynamic
        filters = att.dynamic_filters(torch.tanh(att.dynamic_hidden(query))).reshape(b * n, 1, k)
        dyn = F.conv1d(prev.reshape(1, b, t), filters, padding=k // 2, groups=b)
        features = static + att.dynamic_layer(dyn.reshape(b, n, t).transpose(1, 2))
        length = att.prior.shape[-1]
        spread = F.conv1d(F.pad(prev.unsqueeze(1), (length - 1, 0)), att.prior)
        scores = att.v(torch.tanh(features)).squeeze(-1) + torch.log(spread.squeeze(1).clamp_min(1e-6))
    else:
        location = att.location_layer(att.location_conv(history).transpose(1, 2))  # (B, T, A)
        q = att.query_layer(query).unsqueeze(1)
        scores = att.v(torch.tanh(q + att.memory_layer(memory) + location)).squeeze(-1)
    weights = torch.softmax(scores.masked_fill(~mask, torch.finfo(torch.float32).min), -1) * mask
    return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


def _ref_cell(cell, x, state):
    """ZoneoutLSTMCell without random masks: plain LSTMCell, eval mode blends by zoneout."""
    h, c = cell.cell(x, state)
    if cell.training or cell.zoneout == 0.0:
        return h, c
    z = cell.zoneout
    return z * state[0] + (1 - z) * h, z * state[1] + (1 - z) * c


def reference_step(decoder, memory, mask):
    """A drop-in for ``decoder.step`` computed the step-by-step way."""

    def step(prenet_out, state, step_weights):
        del step_weights
        att_h, att_c = _ref_cell(decoder.attention_rnn, torch.cat([prenet_out, state.context], -1),
                                 state.attention_rnn)
        a = state.attention
        context, weights = _ref_attention(decoder.attention, memory, mask, att_h, a.weights,
                                          a.cumulative)
        dec = _ref_cell(decoder.decoder_rnn, torch.cat([att_h, context], -1), state.decoder_rnn)
        features = torch.cat([dec[0], context], -1)
        frames = decoder.frame_layer(features).reshape(-1, decoder.r, decoder.n_mels)
        new_attention = a._replace(weights=weights, cumulative=a.cumulative + weights)
        new = DecoderState((att_h, att_c), dec, context, new_attention)
        return frames, decoder.stop_layer(features), weights, new

    return step


def reference_teacher_forced(decoder, memory, mask, mels):
    """The teacher-forced loop one full step at a time (prenet dropout must be off)."""
    r = decoder.r
    previous = torch.cat([decoder.go_frame(memory).unsqueeze(1), mels[:, r - 1 :: r][:, :-1]], 1)
    prenet_out = decoder.prenet(previous)
    state = decoder.init_state(memory, mask)
    step = reference_step(decoder, memory, mask)
    frames, stops, weights = [], [], []
    for i in range(previous.shape[1]):
        frame, stop, weight, state = step(prenet_out[:, i], state, None)
        frames.append(frame)
        stops.append(stop)
        weights.append(weight)
    b = mels.shape[0]
    return torch.cat(frames, 1), torch.cat(stops, 1).reshape(b, -1), torch.stack(weights, 1)


def _decoder_inputs(model, seed=3):
    text, tl, mels, ml = random_batch([6, 13, 9], [14, 31, 20], n_mels=8, seed=seed)
    with torch.no_grad():
        memory = model.encoder(text, tl)
    mask = torch.arange(text.shape[1])[None, :] < tl[:, None]
    t_dec = math.ceil(mels.shape[1] / model.r)
    return memory, mask, F.pad(mels, (0, 0, 0, t_dec * model.r - mels.shape[1]))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_decoder_loop_equals_step_by_step_reference(attention, mode):
    """Outputs and gradients (decoder parameters and memory) of the restructured loop equal
    the reference to float rounding; train mode without zoneout, eval mode with its blend."""
    zoneout = "0.0" if mode == "train" else "0.1"
    model = tiny_model(attention, r=2, extra=("decoder.prenet_dropout=0.0",
                                              f"decoder.zoneout={zoneout}"))
    model.train(mode == "train")
    memory, mask, mels = _decoder_inputs(model)
    g = torch.Generator().manual_seed(7)
    results = []
    for run in (model.decoder, lambda *a: reference_teacher_forced(model.decoder, *a)):
        model.zero_grad(set_to_none=True)
        mem = memory.clone().requires_grad_(True)
        outs = run(mem, mask, mels)
        if not results:  # the same random projection weights for both runs
            proj = [torch.randn(o.shape, generator=g) for o in outs]
        sum((o * w).sum() for o, w in zip(outs, proj, strict=True)).backward()
        grads = {n: p.grad.clone() for n, p in model.decoder.named_parameters()}
        results.append((outs, grads, mem.grad.clone()))
    (outs, grads, mem_grad), (ref_outs, ref_grads, ref_mem_grad) = results
    for got, want in zip(outs, ref_outs, strict=True):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    assert grads.keys() == ref_grads.keys()
    for name, want in ref_grads.items():
        torch.testing.assert_close(grads[name], want, atol=2e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(mem_grad, ref_mem_grad, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_infer_equals_step_by_step_reference(attention):
    """Free running with prenet dropout on: the same seed gives the same synthesis as the
    step-by-step reference (same random draws, same arithmetic up to rounding)."""
    model = tiny_model(attention, r=2).eval()
    torch.nn.init.constant_(model.decoder.stop_layer.bias, -3.0)  # stop after a while
    text, tl, _, _ = random_batch([6, 9], [1, 1], n_mels=8, seed=5)
    runs = []
    for reference in (False, True):
        if reference:
            memory = model.encoder(text, tl)
            mask = torch.arange(text.shape[1])[None, :] < tl[:, None]
            model.decoder.step = reference_step(model.decoder, memory, mask)
        torch.manual_seed(11)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runs.append(model.infer(text, tl))
    new, ref = runs
    assert new.mel_lengths.tolist() == ref.mel_lengths.tolist()
    assert new.hit_max.tolist() == ref.hit_max.tolist()
    torch.testing.assert_close(new.mels, ref.mels, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(new.alignments, ref.alignments, atol=2e-5, rtol=1e-4)


def test_zoneout_masks_drawn_once_are_reproducible_and_used():
    """With zoneout on, the loop draws its masks in one call per cell: the same seed gives
    the same outputs, another seed other ones, and the masks keep about ``zoneout`` of units."""
    model = tiny_model("location", r=2, extra=("decoder.zoneout=0.3",)).train()
    memory, mask, mels = _decoder_inputs(model)
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(model.decoder(memory, mask, mels)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    assert not torch.allclose(outs[0], outs[2])
    keep = model.decoder.attention_rnn.draw_keep(400, 4, memory.device)
    assert keep.shape == (400, 2, 4, 24) and abs(keep.float().mean().item() - 0.3) < 0.02
    assert model.decoder.decoder_rnn.eval().draw_keep(3, 4, memory.device) is None


# ------------------------------------------------------------------------------ low precision


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_masks_in_low_precision(attention, dtype):
    """Module and inputs cast to fp16/bf16, one row fully masked: no NaN, exact zeros."""
    model = tiny_model(attention)
    attn = model.decoder.attention.to(dtype)
    g = torch.Generator().manual_seed(1)
    memory = (torch.randn(3, 9, 16, generator=g) * 30).to(dtype)  # large values stress fp16
    mask = torch.arange(9)[None, :] < torch.tensor([9, 4, 0])[:, None]  # last row: nothing
    state = attn.init_state(memory, mask)
    for _ in range(4):
        query = (torch.randn(3, 24, generator=g) * 30).to(dtype)
        context, weights, state = attn(query, state)
        assert weights.dtype == torch.float32
        assert torch.isfinite(weights).all() and torch.isfinite(context.float()).all()
        torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2), atol=1e-4, rtol=0)
        assert weights[1, 4:].abs().max() == 0 and weights[2].abs().max() == 0
        assert context[2].float().abs().max() == 0


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_forward_under_bf16_autocast_is_finite(attention):
    model = tiny_model(attention)
    text, tl, mels, ml = random_batch([5, 9], [12, 7], n_mels=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(text, tl, mels, ml)
        loss, terms = tacotron2_loss(out, mels, ml, tl, model_cfg(model, attention, 2), step=0)
    assert out.alignments.dtype == torch.float32
    assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms.values())
    assert torch.isfinite(loss)
    loss.backward()


def test_batch_of_one_under_bf16_autocast():
    """oneDNN's bf16 LSTM fails on a packed batch of one; the encoder must still run."""
    model = tiny_model("location")
    text, tl, mels, ml = random_batch([7], [10], n_mels=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(text, tl, mels, ml)
    assert torch.isfinite(out.mel_after.float()).all()


# ------------------------------------------------------------------------------ inference


def test_infer_stops_each_item_on_its_own_and_freezes_finished_items():
    model = tiny_model("location", r=2).eval()
    real_step = model.decoder.step
    stop_at = [1, 3, None]  # decoder step at which each item's stop fires (frame 1 of r=2)
    seen: list[AttentionState] = []

    def scripted_step(prenet_out, state, step_weights):
        frames, stop, weights, new_state = real_step(prenet_out, state, step_weights)
        seen.append(state.attention)
        step = len(seen) - 1
        forced = torch.full_like(stop, -20.0)
        for i, s in enumerate(stop_at):
            if s is not None and step >= s:
                forced[i, 1] = 20.0
        return frames, forced, weights, new_state

    model.decoder.step = scripted_step
    text, tl, _, _ = random_batch([5, 5, 2], [1, 1, 1], n_mels=8)
    limits = model.max_decoder_steps(tl)
    with pytest.warns(RuntimeWarning, match=r"batch items \[2\]"):
        out = model.infer(text, tl)
    assert out.mel_lengths.tolist() == [1 * 2 + 2, 3 * 2 + 2, int(limits[2]) * 2]
    assert out.hit_max.tolist() == [False, False, True]
    assert len(seen) == int(limits[2])  # loop ran until the last item finished, no longer
    assert out.mels.shape == (3, int(out.mel_lengths.max()), 8)
    assert out.mels[0, 4:].abs().max() == 0 and out.alignments[0, 2:].abs().max() == 0
    # Item 0 finished at step 1: its attention state never changes afterwards.
    for later in seen[3:]:
        assert torch.equal(later.cumulative[0], seen[2].cumulative[0])
    assert not torch.equal(seen[-1].cumulative[2], seen[2].cumulative[2])


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_infer_guard_scales_with_length_and_matches_single_items(attention):
    model = tiny_model(attention, r=2, extra=("decoder.prenet_dropout=0.0",)).eval()
    torch.nn.init.constant_(model.decoder.stop_layer.bias, -50.0)  # never stops by itself
    torch.nn.init.zeros_(model.decoder.stop_layer.weight)
    text, tl, _, _ = random_batch([3, 8], [1, 1], n_mels=8)
    with pytest.warns(RuntimeWarning, match=r"batch items \[0, 1\]"):
        out = model.infer(text, tl)
    expected = model.max_decoder_steps(tl) * 2
    assert out.mel_lengths.tolist() == expected.tolist() and out.hit_max.all()
    assert expected[1] > expected[0]
    with pytest.warns(RuntimeWarning):
        alone = model.infer(text[:1, :3], tl[:1])
    n = int(alone.mel_lengths[0])
    torch.testing.assert_close(out.mels[0, :n], alone.mels[0], atol=1e-5, rtol=0)
    assert out.mels[0, n:].abs().max() == 0


# ------------------------------------------------------------------------------ losses


def test_guided_loss_is_per_step_and_length_independent():
    sigma = 0.2

    def uniform(t_dec: int, t_text: int) -> torch.Tensor:
        return torch.full((1, t_dec, t_text), 1.0 / t_text)

    # Uniform attention costs the same per step whatever the text length; averaging over all
    # cells instead would shrink it ~1/T_text (too weak a guide to align).
    short = guided_attention_loss(uniform(40, 10), torch.tensor([10]), torch.tensor([40]), sigma)
    long = guided_attention_loss(uniform(40, 80), torch.tensor([80]), torch.tensor([40]), sigma)
    assert 0.4 < float(short) < 0.8
    assert abs(float(short) - float(long)) < 0.05 * float(long)
    # A perfect diagonal costs (almost) nothing.
    diag = torch.eye(20).unsqueeze(0)
    assert float(guided_attention_loss(diag, torch.tensor([20]), torch.tensor([20]), sigma)) < 0.01
    # All mass on the first symbol: exactly mean_t (1 - exp(-(t/T)^2 / 2 sigma^2)).
    stuck = torch.zeros(1, 10, 6)
    stuck[..., 0] = 1.0
    t = torch.arange(10) / 10
    expected = (1 - torch.exp(-(t**2) / (2 * sigma**2))).mean()
    got = guided_attention_loss(stuck, torch.tensor([6]), torch.tensor([10]), sigma)
    torch.testing.assert_close(got, expected)
    # Padding (steps past dec_length, symbols past text_length) is ignored.
    padded = torch.rand(1, 14, 9)
    padded[:, :10, :6] = stuck[0]
    torch.testing.assert_close(
        guided_attention_loss(padded, torch.tensor([6]), torch.tensor([10]), sigma), got
    )


def test_loss_masks_padding_and_weights_guide():
    model = tiny_model("location", r=2)
    cfg = model_cfg(model, "location", 2)
    text, tl, mels, ml = random_batch([5, 9], [12, 7], n_mels=8)
    out = model(text, tl, mels, ml)
    total, terms = tacotron2_loss(out, mels, ml, tl, cfg, step=0)
    noisy = mels.clone()
    noisy[1, 7:] = 100.0  # garbage in the padding of item 1
    total2, terms2 = tacotron2_loss(out, noisy, ml, tl, cfg, step=0)
    torch.testing.assert_close(total, total2)
    base = terms["mel_before"] + terms["mel_after"] + terms["stop"]
    torch.testing.assert_close(total, base + cfg.loss.guided_attn_weight * terms["guided_attn"])
    cfg.loss.guided_attn_decay = 0.5
    decayed, _ = tacotron2_loss(out, mels, ml, tl, cfg, step=3)
    torch.testing.assert_close(
        decayed, base + cfg.loss.guided_attn_weight / 8 * terms["guided_attn"]
    )



@pytest.mark.parametrize("kind", ["mse", "l1", "l1+mse"])
def test_mel_loss_kinds(kind):
    """model.loss.mel_loss: each term is the masked mean over valid frames and channels of
    the squared error, the absolute error, or their sum."""
    model = tiny_model("location", r=2)
    cfg = model_cfg(model, "location", 2)
    cfg.loss.mel_loss = kind
    text, tl, mels, ml = random_batch([5, 9], [12, 7], n_mels=8)
    out = model(text, tl, mels, ml)
    _, terms = tacotron2_loss(out, mels, ml, tl, cfg, step=0)
    valid = torch.cat([(out.mel_before - mels)[0, :12], (out.mel_before - mels)[1, :7]])  # (19, 8)
    expected = {"mse": (valid ** 2).mean(), "l1": valid.abs().mean()}
    want = sum(expected[k] for k in kind.split("+"))
    torch.testing.assert_close(terms["mel_before"], want)


# ------------------------------------------------------------------------------ alignment health


def test_alignment_metrics_diagonal_vs_random():
    t_dec, t_text = 60, 25
    diag = torch.zeros(t_dec, t_text)
    diag[torch.arange(t_dec), (torch.arange(t_dec) * t_text) // t_dec] = 1.0
    assert focus_rate(diag) == 1.0 and monotonicity(diag) == 1.0 and coverage(diag) == 1.0
    assert diagonal_band_mass(diag) > 0.99
    assert is_aligned(diag)

    g = torch.Generator().manual_seed(0)
    noise = torch.softmax(torch.randn(t_dec, t_text, generator=g), dim=-1)
    m = alignment_metrics(noise)
    assert m.focus < 0.3 and m.monotonicity < 0.3 and m.band_mass < 0.5
    assert not is_aligned(noise)

    backwards = diag.flip(0)
    assert monotonicity(backwards) < 0.1 and not is_aligned(backwards)
    stuck = torch.zeros(t_dec, t_text)
    stuck[:, 3] = 1.0  # perfectly sharp but never moves: coverage and band catch it
    assert coverage(stuck) < 0.2 and not is_aligned(stuck)

    # Batched with lengths: item 1 is the diagonal inside padding full of noise.
    batch = torch.stack([torch.nn.functional.pad(diag, (0, 5, 0, 10)), noise.new_zeros(70, 30)])
    batch[1] = torch.softmax(torch.randn(70, 30, generator=g), -1)
    batch[1, :t_dec, :t_text] = diag
    assert is_aligned(batch, torch.tensor([t_dec, t_dec]), torch.tensor([t_text, t_text]))
    assert not is_aligned(batch[1:])
    strict = AlignmentThresholds(coverage=1.01)
    assert not is_aligned(diag, thresholds=strict)


# ------------------------------------------------------------------------------ learning to align


def _encode_texts(texts: list[str]) -> tuple[list[torch.Tensor], int]:
    """Character ids per raw text (through the project's normaliser) and the symbol count."""
    frontend = TextFrontend(TextConfig(symbol_set="characters"))
    ids = [torch.tensor(frontend.encode(t)[2], dtype=torch.long) for t in texts]
    return ids, len(frontend.symbols)


@pytest.fixture(scope="module")
def sample_batch():
    """The 8 shortest clips of the shared LJSpeech sample: padded ids, lengths, mels."""
    if not SAMPLE.is_dir():
        pytest.skip(f"LJSpeech sample not found at {SAMPLE}")
    import soundfile as sf

    from neurotts.audio import fit_to_hop, load_wav, log_mel, trim_silence
    from neurotts.config import load_config
    from neurotts.data.config import PrepareConfig

    audio = load_config("prepare", PrepareConfig, ["out=unused"]).audio
    rows = [line.rstrip("\n").split("|") for line in (SAMPLE / "metadata.csv").open()]
    rows.sort(key=lambda row: sf.info(str(SAMPLE / "wavs" / f"{row[0]}.wav")).frames)
    mels = []
    for row in rows[:8]:
        wav = load_wav(SAMPLE / "wavs" / f"{row[0]}.wav", audio.sample_rate)
        wav = trim_silence(wav, audio.trim_top_db, audio.win_length, audio.hop_length)
        mels.append(torch.from_numpy(log_mel(fit_to_hop(wav, audio.hop_length), audio)))
    ids, n_symbols = _encode_texts([row[1] for row in rows[:8]])
    pad = torch.nn.utils.rnn.pad_sequence
    ml = torch.tensor([len(m) for m in mels])
    mel = pad(mels, batch_first=True)  # (8, T_mel, n_mels)
    valid = torch.arange(mel.shape[1])[None, :] < ml[:, None]
    # Standardise with the batch's own statistics (the feature store does this for real runs).
    mel = (mel - mel[valid].mean()) / mel[valid].std() * valid.unsqueeze(-1)
    text = pad(ids, batch_first=True)
    return text, torch.tensor([len(i) for i in ids]), mel, ml, n_symbols, audio.n_mels




@pytest.mark.slow
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_tiny_model_learns_diagonal_alignment(attention, sample_batch):
    text, tl, mels, ml, n_symbols, n_mels = sample_batch
    cfg = make_config(n_mels, [*ALIGNMENT_PROBE_TACOTRON2, f"attention.type={attention}"])
    torch.manual_seed(0)
    model = Tacotron2(cfg, n_symbols)
    step, metrics, seconds = _train_until_aligned(model, cfg, (text, tl, mels, ml), 250)
    print(f"{attention}: aligned at step {step} in {seconds:.1f}s: {metrics}")
    assert step is not None, f"{attention} did not align in 250 steps: {metrics}"
    assert metrics.monotonicity >= 0.95 and metrics.band_mass >= 0.8


def _train_until_aligned(model, cfg, batch, max_steps):
    """Adam on one batch; every 5 steps check the training alignments, and confirm a pass
    with an eval-mode pass. Returns (step or None, eval metrics, seconds)."""
    text, tl, mels, ml = batch
    dec_lengths = torch.div(
        ml + cfg.reduction_factor - 1, cfg.reduction_factor, rounding_mode="floor"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    metrics = None
    for step in range(1, max_steps + 1):
        model.train()
        out = model(text, tl, mels, ml)
        loss, _ = tacotron2_loss(out, mels, ml, tl, cfg, step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 5 or not is_aligned(out.alignments, dec_lengths, tl):
            continue
        model.eval()
        with torch.no_grad():
            alignments = model(text, tl, mels, ml).alignments
        metrics = alignment_metrics(alignments, dec_lengths, tl)
        if metrics.passes(AlignmentThresholds()):
            return step, metrics, time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        metrics = alignment_metrics(model(text, tl, mels, ml).alignments, dec_lengths, tl)
    return None, metrics, time.perf_counter() - start


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_lstm_update_on_cuda_equals_the_formula(dtype):
    """On CUDA, lstm_update runs nn.LSTMCell's fused kernel: same values and gradients as the
    element-wise formula the CPU runs."""
    from neurotts.models.layers import lstm_update

    g = torch.Generator().manual_seed(0)
    gates0 = torch.randn(5, 4 * 7, generator=g).to("cuda", dtype)
    c0 = torch.randn(5, 7, generator=g).to("cuda", dtype)
    results = []
    for fused in (True, False):
        gates, c = gates0.clone().requires_grad_(), c0.clone().requires_grad_()
        if fused:
            h_new, c_new = lstm_update(gates, c)
        else:
            i, f, gg, o = gates.chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
        (h_new.float().sum() + 2 * c_new.float().sum()).backward()
        results.append((h_new, c_new, gates.grad, c.grad))
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
