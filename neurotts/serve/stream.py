"""Streaming synthesis: Tacotron 2 decoded step by step for a changing batch of sentences, the
postnet applied to frames as soon as no later frame can change them, and Griffin-Lim run on
overlapping chunks, so audio leaves while a sentence is still being decoded.

:class:`IncrementalDecoder` drives the model's own pieces (``encoder``, ``decoder.init_state``,
``decoder.prenet``, ``decoder.step``) with the same stop rule and length guard as
``Tacotron2.infer``: a sentence decoded alone gives ``infer``'s frames for the same seed (the
prenet's dropout draws come in the same order). Sentences join and leave the batch between
steps; their memories are padded to the longest and masked, as ``infer`` pads a batch.

:class:`MelFinisher` runs the postnet on a window around the frames it finalises: a frame is
final once ``radius`` (the postnet's receptive half-width) later frames exist, and then equals
what the postnet gives on the whole sentence. :class:`ChunkVocoder` cuts the final log-mels
into chunks, vocodes each with ``context`` frames of either side and cross-fades the joins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from neurotts.config import constrained
from neurotts.serve.voice import Tacotron2, sequence_mask


@dataclass
class StreamConfig:
    """``stream`` section of configs/serve.yaml: how finely audio is cut while it streams."""

    first_chunk_frames: int = constrained(ge=1)  # mel frames of a sentence's first chunk
    chunk_frames: int = constrained(ge=1)  # mel frames of every later chunk
    context_frames: int = constrained(ge=0)  # mel frames vocoded on either side of a chunk
    crossfade_frames: int = constrained(ge=0)  # join length, <= context_frames
    griffin_lim_iters: int = constrained(ge=1)


@dataclass
class Sentence:
    """One sentence being decoded: its ids, the frames so far and where it stopped."""

    ids: list[int]
    speaker: int | None = None  # id in a multi-speaker model's speaker table; None: one speaker
    limit: int = 0  # decoder steps allowed (the model's length guard)
    steps: int = 0
    length: int | None = None  # mel frames, once the stop token fired or the guard hit
    hit_max: bool = False
    memory: torch.Tensor | None = None  # (T_text, D_mem) encoder output
    frames: torch.Tensor | None = None  # (limit * r, n_mels) decoder frames, filled to steps * r
    weights: list[torch.Tensor] = field(default_factory=list)  # each (T_text,) per step
    previous: torch.Tensor | None = None  # (n_mels,) last frame fed back
    # Recurrent state between batch changes: attention (h, c), decoder (h, c), context,
    # attention weights and cumulative weights, each (1, ...), weights trimmed to T_text.
    state: tuple[torch.Tensor, ...] | None = None

    def alignment(self) -> torch.Tensor:
        """``(steps, T_text)`` attention weights of every step so far."""
        return torch.stack(self.weights) if self.weights else torch.zeros(0, len(self.ids))


class IncrementalDecoder:
    """Free-running decoding of a batch that sentences join and leave between steps."""

    def __init__(self, model: Tacotron2):
        self.model = model
        self.r = model.r
        self.threshold = model.inference_cfg.stop_threshold
        self.step_weights = model.decoder.step_weights()
        self.items: list[Sentence] = []
        self.state = None  # batched DecoderState of self.items, None after a change
        self.static = None  # (memory lengths, mask) of the batch

    def join(self, sentences: list[Sentence]) -> None:
        """Encode ``sentences`` (one encoder pass) and add them to the batch."""
        if not sentences:
            return
        device = next(self.model.parameters()).device
        lengths = torch.tensor([len(s.ids) for s in sentences], device=device)
        text = torch.zeros(len(sentences), int(lengths.max()), dtype=torch.long, device=device)
        for i, s in enumerate(sentences):
            text[i, : len(s.ids)] = torch.tensor(s.ids, device=device)
        speakers = (torch.tensor([s.speaker or 0 for s in sentences], device=device)
                    if self.model.n_speakers else None)  # (B,) ids: the first speaker for None
        memory = self.model.encode(text, lengths, speakers)  # (B, T_text, D_mem), speaker added
        limits = self.model.max_decoder_steps(lengths).tolist()
        decoder = self.model.decoder
        for i, s in enumerate(sentences):
            n = len(s.ids)
            s.memory, s.limit = memory[i, :n], int(limits[i])
            s.frames = memory.new_zeros(s.limit * self.r, self.model.n_mels)
            s.previous = decoder.go_frame(memory[i:i + 1])[0]
            fresh = decoder.init_state(s.memory[None], torch.ones(1, n, dtype=torch.bool,
                                                                    device=device))
            s.state = (*fresh.attention_rnn, *fresh.decoder_rnn, fresh.context,
                       fresh.attention.weights, fresh.attention.cumulative)
        self._save()  # the running items' state, before the batch is rebuilt with the new ones
        self.items += sentences

    def leave(self, sentence: Sentence) -> None:
        """Take ``sentence`` out of the batch (finished or cancelled)."""
        self._save()
        self.items.remove(sentence)

    def _save(self) -> None:
        """Copy the batched state back into each item before the batch changes."""
        if self.state is None:
            return
        st = self.state
        for i, s in enumerate(self.items):
            n = len(s.ids)
            s.state = (st.attention_rnn[0][i:i + 1], st.attention_rnn[1][i:i + 1],
                       st.decoder_rnn[0][i:i + 1], st.decoder_rnn[1][i:i + 1],
                       st.context[i:i + 1], st.attention.weights[i:i + 1, :n],
                       st.attention.cumulative[i:i + 1, :n])
        self.state = None

    def _build(self) -> None:
        """The batched state of the current items: static attention fields from the padded
        memories, recurrent fields stacked from the items (weights zero-padded)."""
        lengths = torch.tensor([len(s.ids) for s in self.items])
        t = int(lengths.max())
        memory = torch.stack([F.pad(s.memory, (0, 0, 0, t - s.memory.shape[0]))
                              for s in self.items])  # (B, T_text, D_mem)
        mask = sequence_mask(lengths.to(memory.device), t)
        base = self.model.decoder.init_state(memory, mask)
        parts = [torch.cat(p) for p in list(zip(*(s.state for s in self.items), strict=True))[:5]]
        weights, cumulative = (torch.cat([F.pad(s.state[k], (0, t - s.state[k].shape[1]))
                                          for s in self.items]) for k in (5, 6))
        self.state = base._replace(
            attention_rnn=(parts[0], parts[1]), decoder_rnn=(parts[2], parts[3]),
            context=parts[4],
            attention=base.attention._replace(weights=weights, cumulative=cumulative))

    def step(self) -> list[Sentence]:
        """One decoder step for every item; returns the items that ended at this step (they
        have left the batch)."""
        if not self.items:
            return []
        if self.state is None:
            self._build()
        decoder = self.model.decoder
        previous = torch.stack([s.previous for s in self.items])  # (B, n_mels)
        frame, stop, weight, self.state = decoder.step(decoder.prenet(previous), self.state,
                                                       self.step_weights)
        fired = torch.sigmoid(stop.float()) > self.threshold  # (B, r)
        stopped = fired.any(dim=1).tolist()
        first = fired.float().argmax(dim=1).tolist()
        ended = []
        for i, s in enumerate(self.items):
            assert s.frames is not None
            s.frames[s.steps * self.r:(s.steps + 1) * self.r] = frame[i]
            s.weights.append(weight[i, : len(s.ids)])
            s.previous = frame[i, -1]
            s.steps += 1
            if stopped[i]:  # the first frame whose stop fired is the last one kept
                s.length = (s.steps - 1) * self.r + first[i] + 1
            elif s.steps >= s.limit:
                s.length, s.hit_max = s.steps * self.r, True
            if s.length is not None:
                ended.append(s)
        for s in ended:
            self.leave(s)
        return ended


def postnet_radius(model: Tacotron2) -> int:
    """Frames on either side that reach one postnet output (its convolutions' half-widths)."""
    return sum(conv.kernel_size[0] // 2 for conv in model.postnet.convs)


class MelFinisher:
    """Postnet + log-mel conversion of a sentence's frames, as they become final."""

    def __init__(self, model: Tacotron2, to_log_mel: Callable[[torch.Tensor], torch.Tensor],
                 every: int = 1):
        self.every = every  # finalise in runs of at least this many frames (one postnet call each)
        self.postnet = model.postnet
        self.r = model.r
        self.radius = postnet_radius(model)
        self.to_log_mel = to_log_mel
        self.done = 0  # frames finalised so far

    def advance(self, s: Sentence) -> torch.Tensor:
        """Log-mels ``(k, n_mels)`` of the frames that became final since the last call."""
        assert s.frames is not None
        produced = s.steps * self.r  # frames made so far, past the stop included
        available = produced if s.length is None else s.length
        final = available if s.length is not None else max(0, produced - self.radius)
        if final <= self.done or (s.length is None and final - self.done < self.every):
            return s.frames.new_zeros(0, s.frames.shape[1])
        lo, hi = max(0, self.done - self.radius), min(available, final + self.radius)
        window = s.frames[lo:hi][None]  # (1, hi - lo, n_mels)
        mask = torch.ones(1, hi - lo, dtype=torch.bool, device=window.device)
        mels = (window + self.postnet(window, mask))[0, self.done - lo: final - lo]
        self.done = final
        return self.to_log_mel(mels)


class Stretch:
    """Speed change by resampling log-mel frames in time (pitch is kept: Griffin-Lim rebuilds
    the phase). Output frame ``j`` is read at source position ``j * speed``, linearly
    interpolated, so it can be computed as soon as the two frames around it exist."""

    def __init__(self, speed: float):
        self.speed = speed
        self.source: list[torch.Tensor] = []  # (k, n_mels) pieces
        self.made = 0

    def advance(self, mels: torch.Tensor, finished: bool) -> torch.Tensor:
        if self.speed == 1.0:
            return mels
        self.source.append(mels)
        src = torch.cat(self.source)  # (n, n_mels)
        self.source = [src]
        n = src.shape[0]
        if finished:
            end = math.ceil(n / self.speed) if n else 0
        else:  # frame j needs source frame floor(j * speed) + 1
            end = max(0, math.ceil((n - 1) / self.speed)) if n > 1 else 0
        if end <= self.made:
            return src.new_zeros(0, src.shape[1])
        pos = torch.arange(self.made, end, device=src.device, dtype=torch.float64) * self.speed
        left = pos.floor().long().clamp(max=n - 1)
        right = (left + 1).clamp(max=n - 1)
        frac = (pos - left.double()).clamp(0, 1).to(src.dtype).unsqueeze(1)
        self.made = end
        return src[left] * (1 - frac) + src[right] * frac


@dataclass
class Window:
    """Frames ``lo:hi`` to vocode, of which ``a:b`` are the chunk emitted."""

    lo: int
    a: int
    b: int
    hi: int
    mels: torch.Tensor  # (hi - lo, n_mels) log-mels
    last: bool = False  # the sentence's final chunk (no join after it)


class ChunkVocoder:
    """Cuts a sentence's final log-mels into chunks for Griffin-Lim (:meth:`push`,
    :meth:`windows`) and joins their audio (:meth:`accept`)."""

    def __init__(self, cfg: StreamConfig, hop: int):
        if cfg.crossfade_frames > cfg.context_frames:
            raise ValueError("crossfade_frames must not exceed context_frames")
        self.cfg, self.hop = cfg, hop
        self.mels: list[torch.Tensor] = []
        self.n = 0
        self.finished = False
        self.planned = 0  # frames handed out in windows
        self.tail: np.ndarray | None = None  # cross-fade samples past the last emitted chunk

    def push(self, mels: torch.Tensor, finished: bool) -> None:
        if mels.shape[0]:
            self.mels.append(mels)
            self.n += mels.shape[0]
        self.finished = finished

    def windows(self) -> list[Window]:
        """Every chunk that can be vocoded now, in order."""
        out = []
        c = self.cfg.context_frames
        all_mels = torch.cat(self.mels) if len(self.mels) > 1 else (self.mels[0] if self.mels else None)
        if all_mels is not None:
            self.mels = [all_mels]
        while self.planned < self.n and all_mels is not None:
            a = self.planned
            size = self.cfg.first_chunk_frames if a == 0 else self.cfg.chunk_frames
            b = a + size
            if self.finished:
                if self.n - b < size // 2:  # no runt chunk at the end
                    b = self.n
            elif b + c > self.n:
                break
            lo, hi = max(0, a - c), min(self.n, b + c)
            out.append(Window(lo, a, b, hi, all_mels[lo:hi], self.finished and b >= self.n))
            self.planned = b
        return out

    def accept(self, w: Window, wav: np.ndarray) -> np.ndarray:
        """``wav`` of window ``w`` (``(hi - lo) * hop`` samples) -> the samples of frames
        ``a:b``, the previous join cross-faded in; keeps the next join's samples back. Called
        in window order, possibly from another thread than :meth:`windows` (it reads only
        ``w`` and the join it keeps)."""
        hop = self.hop
        x = 0 if w.last else min(self.cfg.crossfade_frames, w.hi - w.b) * hop
        seg = wav[(w.a - w.lo) * hop:(w.b - w.lo) * hop + x].astype(np.float32, copy=True)
        if self.tail is not None and self.tail.size:
            k = min(self.tail.size, seg.size)
            fade = (np.arange(k, dtype=np.float32) + 0.5) / k  # rises 0 -> 1 over the join
            seg[:k] = self.tail[:k] * (1 - fade) + seg[:k] * fade
        n = (w.b - w.a) * hop
        self.tail = seg[n:] if x else None
        return seg[:n]
