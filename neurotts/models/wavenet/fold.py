"""Folded WaveNet generation: each utterance cut into overlapping segments, all generated as one
batch, joined with cross-fades (the batched mode of WaveRNN-style vocoders).

Sample-by-sample generation costs the same number of steps at batch 1 as at batch 64, and a
step at batch B costs far less than B steps at batch 1 (the weights are read once per step).
Folding turns one long utterance into a batch of short ones:

* the utterance's mel frames are split at frame boundaries ``b_1 < ... < b_{K-1}`` into K
  parts; part k's audio is ``[b_k*hop, b_{k+1}*hop)``;
* segment k is generated from frame ``b_k - warmup`` (its *warm-up*, discarded): by then the
  receptive field holds the segment's own audio and the conditioning convolutions see real
  neighbours, so the kept part starts from a sensible state rather than from silence;
* every segment but the last runs ``overlap`` samples past its part, and those samples are
  cross-faded with the start of the next segment's part (see :func:`crossfade`);
* each segment's mel slice also carries the frames the conditioning needs to the right of
  the last sample it keeps, so the kept conditioning equals the whole utterance's;
* all segments of all utterances are one batch for :func:`~neurotts.models.wavenet.generate.generate`, which
  runs for the longest segment's samples only (``max_samples``), so the extra frames on the
  right cost nothing.

The number of segments is ``fold`` (an int; fewer when the frames do not allow that many) or
chosen by :func:`choose_folds` from the lengths and a per-device step-cost model. One segment
per utterance is exactly :func:`~neurotts.models.wavenet.generate.generate` (same call, same noise).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.generate import generate
from neurotts.models.wavenet.model import WaveNet, context_frames
from neurotts.models.wavenet.options import FADES, GenerateOptions, parse_fold

# Cost of one generation step at a batch of b rows, as (c0 + b) in units of one row's cost:
# c0 is the fixed per-step cost (per kernel thread on the CPU) measured with the default
# model. CPU kernel on 2 EPYC (Zen 4) cores, one thread: b1 6.4k, b2 9.5k, b4 11.0k, b8 12.0k
# samples/s (step ~ 1.0 + b rows). Torch ops on the CPU: b1 1.1k, b16 5.6k, b64 7.9k (~ 7 + b).
# CUDA graph on an H200: b1 1.9k, b64 77k, b256 245k samples/s (~ 270 + b); eager CUDA
# steps launch the same kernels one by one, so their fixed cost is at least as high.
STEP_COST_C0 = {"kernel": 1.0, "views": 7.0, "cuda": 270.0}
# The cost model's error: candidates within this fraction of the cheapest count as equal.
COST_SLACK = 0.05


@dataclass(frozen=True)
class Segment:
    """One generated piece of utterance ``item``, in mel frames of that utterance.

    Generation covers frames ``[start, stop)`` plus ``tail`` samples; the part kept is
    ``[keep, stop)`` (``start..keep`` is the warm-up) and the tail is cross-faded into the next
    segment. ``slice_stop`` (>= the tail's last frame) bounds the mel slice handed over."""

    item: int
    start: int
    keep: int
    stop: int
    tail: int  # samples generated past ``stop`` (the overlap; 0 for the last segment)
    slice_stop: int

    def samples(self, hop: int) -> int:
        """Samples this segment must generate."""
        return (self.stop - self.start) * hop + self.tail


def max_folds(n_frames: int, overlap: int, hop: int) -> int:
    """Most segments ``n_frames`` allow: each part is at least one frame and at least as long
    as the cross-fade, so one join's fade never reaches the next join."""
    return max(1, n_frames // max(1, math.ceil(overlap / hop)))


def plan_segments(item: int, n_frames: int, folds: int, warmup: int, overlap: int, hop: int,
                  right: int) -> list[Segment]:
    """Cut one utterance of ``n_frames`` into ``folds`` segments (fewer if the frames do not
    allow that many) whose generated lengths are as equal as possible: the first has no
    warm-up and the last no tail, so they keep more frames. ``warmup`` frames of left context,
    ``overlap`` samples of cross-fade, ``right`` frames of conditioning context."""
    folds = min(folds, max_folds(n_frames, overlap, hop))
    if folds == 1:
        return [Segment(item, 0, 0, n_frames, 0, n_frames)]
    # Extra generated frames per segment: warm-up (all but the first) + tail (all but the last).
    extra = [(warmup if k else 0) + (overlap / hop if k < folds - 1 else 0) for k in range(folds)]
    least = max(1, math.ceil(overlap / hop))
    target = (n_frames + sum(extra)) / folds
    spare = [max(0.0, target - e - least) for e in extra]
    free = n_frames - folds * least
    scale = free / sum(spare) if sum(spare) > 0 else 0.0
    # Part boundaries by cumulative rounding: integer parts that sum to n_frames exactly.
    bounds, acc = [0], 0.0
    for k in range(folds - 1):
        acc += least + (spare[k] * scale if scale else free / folds)
        bounds.append(math.floor(acc + 0.5))  # not round(): ties to even could repeat a bound
    bounds.append(n_frames)
    segments = []
    for k in range(folds):
        lo, hi = bounds[k], bounds[k + 1]
        start = max(0, lo - warmup)
        tail = overlap if k < folds - 1 else 0
        slice_stop = min(n_frames, hi + math.ceil(tail / hop) + right)
        segments.append(Segment(item, start, lo, hi, tail, slice_stop))
    return segments


def cost_model(mode: str, device: torch.device) -> str:
    """The :data:`STEP_COST_C0` entry for the back end :func:`generate` picks for ``mode``."""
    if device.type == "cuda":
        return "cuda"
    if mode == "auto":
        return "kernel" if cpu_kernel.load() is not None else "views"
    return "kernel" if mode == "kernel" else "views"


def choose_folds(n_frames: list[int], warmup: int, overlap: int, hop: int, backend: str,
                 threads: int) -> list[int]:
    """Segments per utterance that minimise the estimated wall time of one batched call.

    Every candidate gives the segments of all utterances about the same length (the longest
    utterance cut into k parts, k = 1, 2, ...); its cost is the steps of the longest segment
    times the cost of one step at that batch: ``(c0 + rows per thread)`` with c0 from
    ``STEP_COST_C0[backend]`` and the batch split over ``threads`` kernel threads as generate
    splits it. Of the candidates within :data:`COST_SLACK` of the cheapest, the one with the
    fewest segments wins: fewer seams for about the same time. Deterministic: the same lengths
    and device always give the same plan."""
    c0 = STEP_COST_C0[backend]
    longest = max(n_frames, default=0)
    if longest == 0:
        return [1] * len(n_frames)
    candidates: list[tuple[float, list[int]]] = []
    for k in range(1, max_folds(longest, overlap, hop) + 1):
        part = longest / k
        folds = [max(1, min(math.floor(n / part + 0.5), max_folds(n, overlap, hop)))
                 for n in n_frames]
        # Steps of the longest segment: plan_segments balances the generated lengths, so a
        # segment is about (frames + the extra frames of every join) / folds long.
        steps = max(math.ceil((n + (f - 1) * (warmup + overlap / hop)) / f) * hop
                    for n, f in zip(n_frames, folds, strict=True))  # longest > 0: not empty
        rows = sum(f for n, f in zip(n_frames, folds, strict=True) if n > 0)
        candidates.append((steps * (c0 + math.ceil(rows / threads)), folds))
    cheapest = min(cost for cost, _ in candidates)
    return next(folds for cost, folds in candidates if cost <= cheapest * (1 + COST_SLACK))


def crossfade(prev: torch.Tensor, nxt: torch.Tensor, fade: str) -> torch.Tensor:
    """Join ``prev`` (fading out) and ``nxt`` (fading in), both ``(O,)`` over the same samples.

    Two independently sampled segments agree in spectrum but not in phase. A linear fade keeps
    the level of in-phase signals but dips uncorrelated ones by 3 dB mid-fade (and cancels
    anti-phase ones); an equal-power (sin/cos) fade keeps the energy of uncorrelated signals
    but bumps in-phase ones by 3 dB. ``adaptive`` measures the correlation ``rho`` of the two
    over the overlap and scales the linear gains ``(1-w, w)`` by
    ``1 / sqrt((1-w)^2 + w^2 + 2 w (1-w) rho)``, which keeps the energy for any ``rho``: linear
    at rho = 1, about equal-power at 0, and for partly opposed signals (rho < 0, half of all
    joins of independently sampled segments) it makes up what they cancel. rho is clamped at
    -0.5, which bounds the gain by 2 (mid-fade) where the two nearly cancel."""
    n = prev.shape[0]
    w = (torch.arange(n, dtype=prev.dtype, device=prev.device) + 0.5) / n  # (O,) in (0, 1)
    if fade == "linear":
        a, b = 1.0 - w, w
    elif fade == "power":
        a, b = torch.cos(w * (math.pi / 2)), torch.sin(w * (math.pi / 2))
    else:
        # No branch on the value (no device sync on CUDA): silence gives rho = 0 / tiny = 0.
        energy = torch.sqrt((prev * prev).sum() * (nxt * nxt).sum()).clamp(min=1e-30)
        rho = ((prev * nxt).sum() / energy).clamp(-0.5, 1.0)
        norm = torch.rsqrt((1.0 - w) ** 2 + w**2 + 2.0 * w * (1.0 - w) * rho)
        a, b = (1.0 - w) * norm, w * norm
    return a * prev + b * nxt


def _slices(mels: torch.Tensor, segments: list[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each segment's mel frames ``[start, slice_stop)`` -> ``(S, T_max, n_mels)`` padded
    batch and ``(S,)`` frame counts."""
    width = max(s.slice_stop - s.start for s in segments)
    batch = mels.new_zeros(len(segments), width, mels.shape[-1])
    for row, s in enumerate(segments):
        batch[row, : s.slice_stop - s.start] = mels[s.item, s.start:s.slice_stop]
    lengths = torch.tensor([s.slice_stop - s.start for s in segments], device=mels.device)
    return batch, lengths


def join(audio: torch.Tensor, segments: list[Segment], n_frames: list[int], hop: int,
          fade: str) -> torch.Tensor:
    """Segment audio ``(S, T_gen)`` from :func:`generate_segments` -> utterances
    ``(B, max n_frames * hop)``, zero-padded: each part in its place, each join cross-faded
    over the previous segment's tail."""
    out = audio.new_zeros(len(n_frames), max(n_frames, default=0) * hop)
    for seg, wav in zip(segments, audio, strict=True):
        lo = (seg.keep - seg.start) * hop  # first kept sample within the segment's audio
        out[seg.item, seg.keep * hop: seg.stop * hop] = wav[lo: lo + (seg.stop - seg.keep) * hop]
    for seg, tail, head in overlaps(audio, segments, hop):
        at = seg.keep * hop
        out[seg.item, at: at + tail.shape[0]] = crossfade(tail, head, fade)
    return out


def overlaps(audio: torch.Tensor, segments: list[Segment], hop: int
             ) -> list[tuple[Segment, torch.Tensor, torch.Tensor]]:
    """For each join: the segment after it, the previous segment's tail ``(O,)`` and the
    same samples as the later segment generated them ``(O,)``."""
    pairs = []
    for (p_seg, p_wav), (seg, wav) in itertools.pairwise(zip(segments, audio, strict=True)):
        if p_seg.item == seg.item and p_seg.tail > 0:
            tail = p_wav[(p_seg.stop - p_seg.start) * hop:][: p_seg.tail]
            lo = (seg.keep - seg.start) * hop
            pairs.append((seg, tail, wav[lo: lo + tail.shape[0]]))
    return pairs


def fold_plans(model: WaveNet, n_frames: list[int], options: GenerateOptions, sample_rate: int,
               device: torch.device) -> list[list[Segment]]:
    """The segments of each utterance (``[]`` for an empty one) that :func:`generate_folded`
    generates with ``options`` on ``device``; joins sit at each later segment's ``keep * hop``."""
    hop, warmup = model.cfg.hop_length, context_frames(model.cfg)
    overlap = options.overlap_samples(sample_rate)
    folds = parse_fold(options.fold)
    if folds == "auto":
        backend = cost_model(options.mode, device)
        # generate splits a batch over kernel threads; the torch-op and CUDA steps are one stream.
        threads = ((options.kernel_threads or torch.get_num_threads()) if backend == "kernel"
                   else 1)
        folds_each = choose_folds(n_frames, warmup, overlap, hop, backend, threads)
    else:
        folds_each = [folds] * len(n_frames)
    right = model.cfg.cond_kernel_size // 2 + 1  # the conditioning's reach to the right, frames
    return [plan_segments(i, n, k, warmup, overlap, hop, right) if n > 0 else []
            for i, (n, k) in enumerate(zip(n_frames, folds_each, strict=True))]


def generate_folded(model: WaveNet, mels: torch.Tensor, mel_lengths: torch.Tensor | None,
                    options: GenerateOptions, sample_rate: int,
                    generator: torch.Generator | None = None,
                    speakers: torch.Tensor | None = None) -> torch.Tensor:
    """Audio ``(B, max frames * hop)`` for ``mels`` (B, T_frames, n_mels) with ``mel_lengths``
    (B,) frames (``None``: all of ``T_frames``), zero past each item's ``frames * hop`` samples.

    ``options.fold``: segments per utterance (at most K; ``off``: no folding) or ``auto``
    (:func:`choose_folds`); ``options.overlap_ms`` of cross-fade at each join (in samples at
    ``sample_rate``), faded by ``options.fade``. The rest of ``options`` and ``generator`` go
    to :func:`generate`, which runs once for all segments of all utterances. ``speakers``
    (B,) long ids for a multi-speaker vocoder; each segment takes its utterance's."""
    if options.fade not in FADES:
        raise ValueError(f"fade={options.fade!r}: expected one of {', '.join(FADES)}")
    if mel_lengths is None:
        mel_lengths = torch.full((mels.shape[0],), mels.shape[1], dtype=torch.long)
    n_frames = [int(n) for n in mel_lengths]
    plans = fold_plans(model, n_frames, options, sample_rate, mels.device)
    if all(len(plan) <= 1 for plan in plans):
        # No utterance is cut: the unfolded call itself (same batch, same noise).
        return generate(model, mels, mel_lengths, options, generator=generator,
                        speakers=speakers).audio
    segments = [seg for plan in plans for seg in plan]
    audio = generate_segments(model, mels, segments, options, generator, speakers)
    return join(audio, segments, n_frames, model.cfg.hop_length, options.fade)


def generate_segments(model: WaveNet, mels: torch.Tensor, segments: list[Segment],
                      options: GenerateOptions, generator: torch.Generator | None = None,
                      speakers: torch.Tensor | None = None) -> torch.Tensor:
    """All ``segments`` of ``mels`` (B, T_frames, n_mels) in one :func:`generate` call that
    stops after the longest segment's samples -> ``(S, T_gen)`` raw segment audio; ``speakers``
    (B,) ids of the utterances (multi-speaker vocoders), each segment taking its item's."""
    batch, lengths = _slices(mels, segments)
    steps = max(s.samples(model.cfg.hop_length) for s in segments)
    if speakers is not None:
        speakers = speakers[torch.tensor([s.item for s in segments], device=speakers.device)]
    return generate(model, batch, lengths, options, max_samples=steps, generator=generator,
                    speakers=speakers).audio
