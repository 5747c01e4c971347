"""``neurotts synth``: read the inputs, check the output paths, speak each input and write its
wav file as soon as it is done (the speaking is :mod:`neurotts.synthesis.engine`'s)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from neurotts.audio import save_wav
from neurotts.config import ConfigError
from neurotts.errors import IncompleteError
from neurotts.synthesis.config import SynthConfig
from neurotts.synthesis.engine import (
    AcousticModel,
    Encoded,
    SynthesisError,
    Synthesized,
    Timing,
    encode,
    pick_device,
    seed_rng,
    synthesize,
)
from neurotts.text.frontend import TextFrontend, dropped_message, oov_message
from neurotts.vocoders import Vocoder, load_vocoder


class SynthesisIncomplete(IncompleteError, RuntimeError):
    """Some inputs could not be synthesised or written; every other input's file was written.
    The message lists the failed lines."""


def print_problem(console: Console, kind: str, message: str) -> None:
    """``error: MESSAGE`` or ``warning: MESSAGE``, the message shown literally (no markup)."""
    style = "bold red" if kind == "error" else "yellow"
    console.print(Text.assemble((f"{kind}:", style), " ", message), highlight=False,
                  soft_wrap=True)


def read_inputs(cfg: SynthConfig) -> list[tuple[int, str]]:
    """(line number, text) per input: the TEXT argument as line 1, or each non-blank line of
    the input file (blank lines are skipped but counted, so numbers are line numbers)."""
    if (cfg.sentence is None) == (cfg.input is None):
        raise ConfigError("give either a TEXT argument or --input FILE (one utterance a line)")
    if cfg.input is None:
        assert cfg.sentence is not None
        return [(1, cfg.sentence)]
    path = Path(cfg.input)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--input {path}: cannot read ({exc})") from None
    texts = [(n, ln.strip()) for n, ln in enumerate(lines, start=1) if ln.strip()]
    if not texts:
        raise ConfigError(f"--input {path}: no text in it")
    return texts


def output_paths(output: str, lines: list[int] | None) -> list[Path]:
    """Where each input goes, checked before any model work (:class:`SynthesisError` says why
    not). ``output`` ending in ``.wav`` is a file: that file for a TEXT, ``NAME_LLL.wav`` for
    each line LLL of an input file. Without a suffix, with a trailing slash, or naming an
    existing folder, it is a folder holding ``LLL.wav`` (``001.wav`` for a TEXT). Any other
    suffix is refused. ``lines``: the input file's line numbers, ``None`` for a TEXT."""
    if not output.strip():
        raise SynthesisError("-o is empty: name a .wav file or a folder")
    path = Path(output).expanduser()
    is_wav = path.suffix.lower() == ".wav"
    as_folder = output.endswith(("/", os.sep)) or (not is_wav and (path.is_dir() or not path.suffix))
    if not as_folder and not is_wav:
        raise SynthesisError(f"-o {output}: only .wav files are written; name a .wav file, or a "
                             "folder (no suffix, or end it with /)")
    numbers = lines or [1]
    width = max(3, len(str(max(numbers))))
    if as_folder:
        paths = [path / f"{n:0{width}d}.wav" for n in numbers]
    elif lines is None:
        paths = [path]
    else:
        paths = [path.with_name(f"{path.stem}_{n:0{width}d}.wav") for n in numbers]
    _check_writable(output, paths)
    return paths


def _check_writable(output: str, paths: list[Path]) -> None:
    """Each path can become a file: none is a folder, and their folder (they share one) is, or
    can be made inside, a writable folder."""
    for p in paths:
        if p.is_dir():
            hint = " (end -o with / to write into it)" if len(paths) == 1 else ""
            raise SynthesisError(f"-o {output}: {p} is an existing folder, not a file{hint}")
    existing = paths[0].parent
    while not existing.exists():  # the folders still to make hang from the first that exists
        existing = existing.parent
    if not existing.is_dir():
        raise SynthesisError(f"-o {output}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SynthesisError(f"-o {output}: cannot write in {existing} (permission denied or "
                             "read-only)")


@dataclass
class Line:
    """One input of a run and what became of it."""

    number: int  # line number in --input (1 for a TEXT)
    text: str
    path: Path
    encoded: Encoded | None = None
    error: str | None = None
    written: bool = False


def _encode_lines(cfg: SynthConfig, lines: list[Line], frontend: TextFrontend,
                  console: Console) -> None:
    """Encode every input before any synthesis. A TEXT that cannot be said is an error; a line
    of an input file that cannot be said is reported with its line number and left out."""
    for line in lines:
        where = "" if cfg.input is None else f"--input {cfg.input}:{line.number}: "
        try:
            line.encoded = encode(frontend, line.text, cfg.max_chars)
        except Exception as exc:  # a frontend rule that breaks on one line costs that line only
            message = str(exc) if isinstance(exc, SynthesisError) else (
                f"text could not be normalised ({type(exc).__name__}: {exc})")
            if cfg.input is None:
                raise SynthesisError(message) from None
            line.error = where + message
            print_problem(console, "error", line.error)
            continue
        report = line.encoded.report
        if report.dropped:
            print_problem(console, "warning",
                          where + dropped_message(report.dropped, frontend.cfg.symbol_set))
        if report.oov:
            print_problem(console, "warning", where + oov_message(report))


def _write_all(cfg: SynthConfig, lines: list[Line], acoustic: AcousticModel, vocoder: Vocoder,
               device: torch.device, console: Console) -> Timing:
    """Synthesise the encoded lines and write each file as soon as it is done."""
    todo = [line for line in lines if line.encoded is not None]
    inputs = [line.encoded for line in todo if line.encoded is not None]
    sr = acoustic.audio.sample_rate
    timing = Timing()
    shown: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for completed, t in synthesize(inputs, acoustic, vocoder, device, cfg.batch_size,
                                       cfg.pause):
            timing.add(t)
            for i, utt in completed:
                _write_one(todo[i], utt, sr, console)
            for w in caught:
                if str(w.message) not in shown:
                    shown.add(str(w.message))
                    print_problem(console, "warning", str(w.message))
            caught.clear()
    return timing


def _write_one(line: Line, utt: Synthesized, sr: int, console: Console) -> None:
    try:
        line.path.parent.mkdir(parents=True, exist_ok=True)
        save_wav(line.path, utt.wav, sr)  # to NAME.part, then renamed: never half a file
    except OSError as exc:
        line.error = f"{line.path}: cannot write ({exc.strerror or exc})"
        print_problem(console, "error", line.error)
        return
    line.written = True
    flag = " (hit max decoder steps)" if any(utt.hit_max) else ""
    console.print(Text.assemble(f"wrote {line.path} ({utt.wav.size / sr:.2f} s)", (flag, "red")),
                  highlight=False, soft_wrap=True)


def _incomplete(cfg: SynthConfig, lines: list[Line]) -> SynthesisIncomplete | None:
    failed = [line for line in lines if line.error is not None]
    if not failed:
        return None
    if cfg.input is None:
        return SynthesisIncomplete(str(failed[0].error))
    numbers = ", ".join(str(line.number) for line in failed[:20])
    more = f" and {len(failed) - 20} more" if len(failed) > 20 else ""
    return SynthesisIncomplete(
        f"--input {cfg.input}: {len(failed)} of {len(lines)} line(s) failed (line "
        f"{numbers}{more}); {sum(line.written for line in lines)} file(s) written")


def run(cfg: SynthConfig, console: Console) -> list[Path]:
    """``neurotts synth``: speak each input and write its wav file as soon as it is done; returns
    the paths written. Options, inputs and output paths are checked before any model work; a
    line of an input file that fails is reported with its number and the others still run, then
    :class:`SynthesisIncomplete` lists the failures."""
    cfg.vocoder.check_finite("vocoder.")
    numbered = read_inputs(cfg)
    paths = output_paths(cfg.output, [n for n, _ in numbered] if cfg.input is not None else None)
    lines = [Line(n, text, path) for (n, text), path in zip(numbered, paths, strict=True)]
    device = pick_device(cfg.device)
    acoustic = AcousticModel.load(cfg.acoustic, device)
    _encode_lines(cfg, lines, acoustic.frontend, console)
    timing = Timing()
    if any(line.encoded is not None for line in lines):
        vocoder = load_vocoder(cfg.vocoder.path, acoustic.audio, device, cfg.vocoder)
        seed_rng(cfg.seed)
        try:
            timing = _write_all(cfg, lines, acoustic, vocoder, device, console)
        except KeyboardInterrupt:
            done = sum(line.written for line in lines)
            console.print(f"interrupted: {done} of {len(lines)} file(s) written, each complete",
                          markup=False, highlight=False, soft_wrap=True)
            raise
    written = [line.path for line in lines if line.written]
    console.print(
        f"{len(written)} file(s), {timing.audio_s:.2f} s of audio on {device}: real-time factor "
        f"{timing.rtf:.3f} (acoustic {timing.acoustic_s:.2f} s, vocoder {timing.vocoder_s:.2f} s)",
        markup=False, highlight=False, soft_wrap=True,
    )
    failure = _incomplete(cfg, lines)
    if failure is not None:
        raise failure
    return written
