"""The exported Tacotron 2 in onnxruntime: encoder, free-running decoder loop, postnet.

The loop is :meth:`neurotts.models.tacotron2.Tacotron2._decode_free` in numpy, step for step:
each item of a batch ends at its own stop token (the first of its ``r`` frames whose stop
probability passes the threshold is its last frame) or at its length guard, and a finished
item's state is frozen while the others go on. The prenet dropout masks are drawn here
(:class:`PrenetMasks`), so a seed fixes the output, and the same masks given to torch
(:func:`neurotts.export.reference.infer_with_masks`) give the same mels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

from neurotts.runtime.voice import Voice, VoiceError, check_graph_id

# What onnxruntime raises for a file it cannot load as a graph (none derives from RuntimeError).
LOAD_ERRORS = (Fail, InvalidGraph, InvalidProtobuf)

# step -> one (B, P_i) float32 mask per prenet layer (0 or 1 / (1 - p))
MaskSource = Callable[[int], list[np.ndarray]]


class PrenetMasks:
    """Prenet dropout masks from a numpy generator, drawn step by step and remembered, so a
    second caller (the torch reference) can be handed the very same masks."""

    def __init__(self, rng: np.random.Generator, batch: int, dims: list[int], p: float):
        self.rng, self.batch, self.dims = rng, batch, dims
        self.p, self.scale = p, np.float32(1.0) / np.float32(1.0 - p)  # F.dropout's 1 / (1 - p)
        self.drawn: list[list[np.ndarray]] = []

    def __call__(self, step: int) -> list[np.ndarray]:
        while len(self.drawn) <= step:
            self.drawn.append([(self.rng.random((self.batch, d)) >= self.p).astype(np.float32)
                               * self.scale for d in self.dims])
        return self.drawn[step]


@dataclass
class Decoded:
    mels: np.ndarray  # (B, T_out, n_mels) model space, zero past each length
    lengths: np.ndarray  # (B,) int64 frames
    alignments: np.ndarray  # (B, T_dec, T_text), zero past each item's last step
    hit_max: np.ndarray  # (B,) bool: stopped by the length guard


def open_graph(voice: Voice, name: str, threads: int | None) -> ort.InferenceSession:
    """An onnxruntime session on ``voice``'s graph ``name`` (its voice id checked)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(voice.graph(name)), options,
                                       providers=["CPUExecutionProvider"])
    except LOAD_ERRORS as exc:  # a damaged or foreign file
        raise VoiceError(f"{voice.graph(name)}: unreadable graph ({str(exc).splitlines()[0][:120]})"
                         ) from None
    check_graph_id(voice, name, session.get_modelmeta().custom_metadata_map)
    return session


def pad_batch(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Symbol id lists -> ``(B, T_text)`` int64 ids (zero = pad), ``(B,)`` int64 lengths."""
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    batch = np.zeros((len(ids), int(lengths.max())), dtype=np.int64)
    for i, item in enumerate(ids):
        batch[i, : len(item)] = item
    return batch, lengths


class Acoustic:
    """The three acoustic graphs of a voice and the loop that runs them."""

    def __init__(self, voice: Voice, threads: int | None = None):
        self.settings = voice.acoustic
        self.encoder = open_graph(voice, "encoder", threads)
        self.step = open_graph(voice, "decoder_step", threads)
        self.postnet = open_graph(voice, "postnet", threads)
        self.outputs = [o.name for o in self.encoder.get_outputs()]  # utt.*, then state.*
        self.states = [n for n in self.outputs if n.startswith("state.")]
        self.multi_speaker = any(i.name == "speaker" for i in self.encoder.get_inputs())

    def masks(self, rng: np.random.Generator, batch: int) -> PrenetMasks:
        s = self.settings
        return PrenetMasks(rng, batch, list(s.prenet_dims), s.prenet_dropout)

    def limits(self, lengths: np.ndarray) -> np.ndarray:
        """``(B,)`` decoder step limits, as ``Tacotron2.max_decoder_steps`` (float32)."""
        s = self.settings
        frames = np.float32(s.max_frames_per_symbol) * lengths.astype(np.float32) + np.float32(
            s.max_frames_offset)
        return np.maximum(np.ceil(frames / np.float32(s.reduction_factor)), 1).astype(np.int64)

    def decode(self, ids: list[list[int]], masks: MaskSource,
               speakers: np.ndarray | None = None) -> Decoded:
        """Symbol id lists -> mels in model space (see :class:`Decoded`); ``speakers`` ``(B,)``
        int64 ids for a multi-speaker voice (None: its first speaker)."""
        batch, text_lengths = pad_batch(ids)
        feeds = {"ids": batch, "lengths": text_lengths}
        if self.multi_speaker:
            feeds["speaker"] = (np.zeros(len(ids), np.int64) if speakers is None
                                else np.asarray(speakers, np.int64))
        first = dict(zip(self.outputs, self.encoder.run(None, feeds), strict=True))
        utterance = {n: v for n, v in first.items() if n.startswith("utt.")}
        state = {n: first[n] for n in self.states}
        frames, alignments, lengths, hit_max = self._loop(utterance, state, text_lengths, masks)
        t_out = max(int(lengths.max()), 1)
        (mels,) = self.postnet.run(None, {"frames": np.ascontiguousarray(frames[:, :t_out]),
                                          "lengths": lengths})
        return Decoded(mels, lengths, alignments, hit_max)

    def _loop(self, utterance: dict[str, np.ndarray], state: dict[str, np.ndarray],
              text_lengths: np.ndarray, masks: MaskSource
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The free-running loop -> frames ``(B, T_dec * r, n_mels)``, alignments, lengths
        ``(B,)`` int64, hit_max ``(B,)`` bool."""
        s = self.settings
        b, r = text_lengths.size, s.reduction_factor
        limits = self.limits(text_lengths)
        lengths = np.zeros(b, np.int64)
        finished = np.zeros(b, bool)
        hit_max = np.zeros(b, bool)
        previous = np.zeros((b, s.n_mels), np.float32)
        frames, weights = [], []
        threshold = np.float32(s.stop_threshold)
        for step in range(int(limits.max())):
            feeds = {"frame": previous, **utterance, **state,
                     **{f"mask.{i}": m for i, m in enumerate(masks(step))}}
            frame, stop, alignment, *new = self.step.run(None, feeds)  # (B, r, n_mels), (B, r)
            active = ~finished
            frames.append(frame * active[:, None, None])
            weights.append(alignment * active[:, None])
            fired = 1.0 / (1.0 + np.exp(-stop)) > threshold  # (B, r)
            stopped = active & fired.any(axis=1)
            lengths = np.where(stopped, step * r + fired.argmax(axis=1) + 1, lengths)
            guard = active & ~stopped & (step + 1 >= limits)
            lengths = np.where(guard, (step + 1) * r, lengths)
            hit_max |= guard
            # Finished items keep their state (Tacotron2._decode_free's _freeze).
            state = {n: np.where(active.reshape(-1, *[1] * (v.ndim - 1)), v, state[n])
                     for n, v in zip(self.states, new, strict=True)}
            finished |= stopped | guard
            previous = frame[:, -1]
            if finished.all():
                break
        return (np.concatenate(frames, axis=1), np.stack(weights, axis=1), lengths.astype(np.int64),
                hit_max)
