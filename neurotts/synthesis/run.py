"""``neurotts synth``: read the inputs, check the output paths, speak each input and write its
wav file as soon as it is done (the speaking is :mod:`neurotts.synthesis.engine`'s)."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from neurotts.audio import save_wav
from neurotts.config import ConfigError
from neurotts.errors import IncompleteError, UserError
from neurotts.files import atomic_write_text
from neurotts.progress import ItemProgress
from neurotts.synthesis.config import SynthConfig
from neurotts.synthesis.engine import (
    AcousticModel,
    Encoded,
    SynthesisError,
    Synthesized,
    Timing,
    choose_speaker,
    encode,
    pick_device,
    seed_rng,
    synthesize,
    utterance_words,
)
from neurotts.synthesis.timestamps import to_json, to_webvtt
from neurotts.text.frontend import TextFrontend
from neurotts.vocoders import Vocoder, load_vocoder


class SynthesisIncomplete(IncompleteError, RuntimeError):
    """Some inputs could not be synthesised or written; every other input's file was written.
    The message lists the failed lines."""


def print_problem(console: Console, kind: str, message: str) -> None:
    """``error: MESSAGE``, ``warning: MESSAGE`` or ``note: MESSAGE``, the message shown
    literally (no markup)."""
    style = {"error": "bold red", "warning": "yellow"}.get(kind, "cyan")
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


def output_paths(output: str, lines: list[int] | None, force: bool = False,
                 companions: tuple[str, ...] = ()) -> list[Path]:
    """Where each input goes, checked before any model work (:class:`SynthesisError` says why
    not). ``output`` ending in ``.wav`` is a file: that file for a TEXT, ``NAME_LLL.wav`` for
    each line LLL of an input file. Without a suffix, with a trailing slash, or naming an
    existing folder, it is a folder holding ``LLL.wav`` (``001.wav`` for a TEXT). Any other
    suffix is refused. ``lines``: the input file's line numbers, ``None`` for a TEXT. An
    existing file is refused unless ``force``. ``companions``: suffixes of files written
    beside each wav (``.vtt``, ``.json``), checked the same way."""
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
    _check_writable(output, [*paths, *(p.with_suffix(x) for p in paths for x in companions)],
                    force)
    return paths


def _check_writable(output: str, paths: list[Path], force: bool) -> None:
    """Each path can become a file: none is a folder, none exists already (unless ``force``),
    and their folder (they share one) is, or can be made inside, a folder where a file can
    really be created. The check creates and removes a file there: permission bits say
    nothing for root, nor for read-only mounts and pseudo file systems (/sys, /proc)."""
    for p in paths:
        if p.is_dir():
            hint = " (end -o with / to write into it)" if len(paths) == 1 else ""
            raise SynthesisError(f"-o {output}: {p} is an existing folder, not a file{hint}")
    existing = paths[0].parent
    while not existing.exists():  # the folders still to make hang from the first that exists
        existing = existing.parent
    if not existing.is_dir():
        raise SynthesisError(f"-o {output}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".neurotts-probe-"):
            pass
    except OSError as exc:
        raise SynthesisError(f"-o {output}: cannot write in {existing} "
                             f"({exc.strerror or exc})") from None
    present = [p for p in paths if p.exists()]
    if present and not force:
        which = str(present[0]) if len(present) == 1 else (
            f"{len(present)} of the {len(paths)} output files exist ({present[0]} ...)")
        raise SynthesisError(f"-o {output}: {which} exists already; --force replaces it, or "
                             "name another output with -o")


@dataclass
class Line:
    """One input of a run and what became of it."""

    number: int  # line number in --input (1 for a TEXT)
    text: str
    path: Path
    encoded: Encoded | None = None
    error: str | None = None
    written: bool = False
    short: bool = False  # its audio is under SHORT_AUDIO_S


def _encode_lines(cfg: SynthConfig, lines: list[Line], frontend: TextFrontend,
                  console: Console) -> None:
    """Encode every input before any synthesis. A TEXT that cannot be said is an error; a line
    of an input file that cannot be said is reported with its line number and left out."""
    for line in lines:
        where = "" if cfg.input is None else f"--input {cfg.input}:{line.number}: "
        try:
            line.encoded = encode(frontend, line.text, cfg.max_chars, cfg.max_symbols)
        except Exception as exc:  # a frontend rule that breaks on one line costs that line only
            message = str(exc) if isinstance(exc, SynthesisError) else (
                f"text could not be normalised ({type(exc).__name__}: {exc})")
            if cfg.input is None:
                raise SynthesisError(message) from None
            line.error = where + message
            print_problem(console, "error", line.error)
            continue
        for message in line.encoded.report.messages(frontend.cfg.symbol_set):
            print_problem(console, "warning", where + message)


class SynthesisStopped(UserError):
    """A stop asked by a signal (Ctrl-C, SIGTERM): every file written before it is complete.
    A plain line, exit 128 + the signal's number."""

    label = None

    def __init__(self, sig: signal.Signals, lines: list[Line]):
        self.exit_code = 128 + int(sig)
        done = sum(line.written or line.error is not None for line in lines)
        written = [str(line.path) for line in lines if line.written]
        shown = ", ".join(written) if len(written) <= 3 else (
            f"{len(written)} files, {written[0]} ... {written[-1]}")
        super().__init__(f"interrupted: stopped by {sig.name} after {done} of {len(lines)} "
                         f"line(s); written: {shown or 'none'}")


class _Stop(BaseException):
    """Raised by the signal handler; a BaseException so that no ``except Exception`` of the
    synthesis path (a line's own failure) swallows it."""

    def __init__(self, sig: signal.Signals):
        super().__init__(sig.name)
        self.sig = sig


@contextmanager
def _stop_on_signals(lines: list[Line]) -> Iterator[None]:
    """SIGINT and SIGTERM end the run with :class:`SynthesisStopped`; files already written
    stay (each is written to a .part file and renamed, so none is left half-written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signal.Signals(signum))

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop as exc:
        raise SynthesisStopped(exc.sig, lines) from None
    except KeyboardInterrupt:  # a SIGINT raised before the handler was in place
        raise SynthesisStopped(signal.SIGINT, lines) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_all(cfg: SynthConfig, lines: list[Line], acoustic: AcousticModel, vocoder: Vocoder,
               device: torch.device, console: Console, speaker: str | None) -> Timing:
    """Synthesise the encoded lines and write each file as soon as it is done; with several
    lines, a progress line (done, rate, ETA) after each batch."""
    todo = [line for line in lines if line.encoded is not None]
    inputs = [line.encoded for line in todo if line.encoded is not None]
    sr = acoustic.audio.sample_rate
    timing = Timing()
    shown: set[str] = set()
    progress = ItemProgress(console, len(lines), "synth", "lines") if len(lines) > 1 else None
    with warnings.catch_warnings(record=True) as caught, progress or nullcontext():
        warnings.simplefilter("always")
        for completed, t in synthesize(inputs, acoustic, vocoder, device, cfg.batch_size,
                                       cfg.pause, keep_details=cfg.timestamps,
                                       speakers=[speaker] * len(inputs)):
            timing.add(t)
            for i, utt in completed:
                _write_one(todo[i], utt, sr, console, acoustic if cfg.timestamps else None)
            for w in caught:
                if str(w.message) not in shown:
                    shown.add(str(w.message))
                    print_problem(console, "warning", str(w.message))
            caught.clear()
            if progress is not None:
                progress.update(sum(line.written or line.error is not None for line in lines))
    return timing


# Audio shorter than this from a whole line means the model stopped at once: a decoder that
# has not learnt when to stop yet (a few training steps) fires its stop token on step 1.
SHORT_AUDIO_S = 0.1


def _write_one(line: Line, utt: Synthesized, sr: int, console: Console,
               timed: AcousticModel | None = None) -> None:
    """The wav of ``line``; with ``timed`` (the acoustic model, for --timestamps) its word
    times as NAME.vtt and NAME.json beside it."""
    seconds = utt.wav.size / sr
    line.short = seconds < SHORT_AUDIO_S
    with _signals_held():  # a stop lands after the rename: no .part file is left behind
        try:
            line.path.parent.mkdir(parents=True, exist_ok=True)
            save_wav(line.path, utt.wav, sr)  # to NAME.part, then renamed: never half a file
            if timed is not None:
                assert line.encoded is not None
                words = utterance_words(line.encoded, utt, timed)
                atomic_write_text(line.path.with_suffix(".vtt"), to_webvtt(words))
                atomic_write_text(line.path.with_suffix(".json"),
                                  json.dumps(to_json(words), indent=1) + "\n")
        except OSError as exc:
            line.error = f"{line.path}: cannot write ({exc.strerror or exc})"
            print_problem(console, "error", line.error)
            return
        line.written = True
    flag = " (hit max decoder steps)" if any(utt.hit_max) else ""
    timed_note = " and its .vtt, .json" if timed is not None else ""
    console.print(Text.assemble(f"wrote {line.path} ({seconds:.2f} s){timed_note}", (flag, "red")),
                  highlight=False, soft_wrap=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then their handler runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _warn_short(cfg: SynthConfig, lines: list[Line], console: Console) -> None:
    short = [line for line in lines if line.written and line.short]
    if not short:
        return
    which = "the audio is" if cfg.input is None else (
        f"{len(short)} of {len(lines)} file(s) are (line "
        f"{', '.join(str(line.number) for line in short[:10])}{' ...' if len(short) > 10 else ''})")
    print_problem(console, "warning", f"{which} under {SHORT_AUDIO_S} s long: the model stops "
                                      "at once, as one trained for too few steps does")


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
    :class:`SynthesisIncomplete` lists the failures. SIGINT and SIGTERM stop the run with
    :class:`SynthesisStopped` (one line: what was written)."""
    cfg.vocoder.check_finite("vocoder.")
    numbered = read_inputs(cfg)
    paths = output_paths(cfg.output, [n for n, _ in numbered] if cfg.input is not None else None,
                         cfg.force, (".vtt", ".json") if cfg.timestamps else ())
    lines = [Line(n, text, path) for (n, text), path in zip(numbered, paths, strict=True)]
    timing = Timing()
    with _stop_on_signals(lines):
        device = pick_device(cfg.device)
        acoustic = AcousticModel.load(cfg.acoustic, device)
        vocoder = load_vocoder(cfg.vocoder.path, acoustic.audio, device, cfg.vocoder)
        speaker, note = choose_speaker(acoustic, vocoder, cfg.speaker)
        if note is not None:
            print_problem(console, "note", note)
        _encode_lines(cfg, lines, acoustic.frontend, console)
        if any(line.encoded is not None for line in lines):
            seed_rng(cfg.seed)
            timing = _write_all(cfg, lines, acoustic, vocoder, device, console, speaker)
    _warn_short(cfg, lines, console)
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
