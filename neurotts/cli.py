"""The ``neurotts`` command line: thin commands that parse, load a config and call ``run``.

Every command takes trailing Hydra overrides (``key=value``), ``--cfg`` to print the resolved
config and exit, and ``--config-dir`` to use a config tree of one's own. Problems a user can fix
(bad override, missing path, unusable data) are printed as one line and exit with code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from omegaconf import MISSING
from rich.console import Console

from neurotts.config import ConfigError, PrepareConfig, load_config, to_yaml

app = typer.Typer(
    name="neurotts",
    help="Neural text-to-speech trained from scratch: prepare data, train, synthesise, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
T = TypeVar("T")

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Hydra overrides, e.g. data.root=LJSpeech-1.1 out=features", show_default=False),
]
PrintCfg = Annotated[bool, typer.Option("--cfg", help="Print the resolved config and exit.")]
ConfigDir = Annotated[
    Path | None,
    typer.Option("--config-dir", help="A config tree of your own, searched before the built-in one."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the expected error types into a one-line message and exit code 2."""
    try:
        yield
    except (ConfigError, *kinds) as exc:
        raise fail(str(exc)) from None


def hydra_quote(value: str) -> str:
    """A path or string as a quoted Hydra override value (any character allowed)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load(name: str, schema: type[T], overrides: list[str] | None, config_dir: Path | None,
         print_cfg: bool) -> T:
    with user_errors():
        for o in overrides or []:
            if "=" not in o:
                raise ConfigError(f"override {o!r} is not key=value")
        cfg = load_config(name, schema, overrides or [], config_dir)
    if print_cfg:
        typer.echo(to_yaml(cfg), nl=False)
        raise typer.Exit(0)
    return cfg


@app.command()
def prepare(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Turn an LJSpeech-layout corpus into a feature store (mels, audio, manifest, splits)."""
    from neurotts.data import prepare as prep
    from neurotts.data.ljspeech import DatasetError

    config = load("prepare", PrepareConfig, overrides, config_dir, cfg)
    try:
        prep.run(config, err)
    except (ConfigError, DatasetError) as exc:
        raise fail(str(exc)) from None
    except prep.PrepareError as exc:
        raise fail(str(exc), code=1) from None


@app.command()
def download(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Fetch LJSpeech-1.1 into data.download_dir (checksum-verified, resumable, safe extract)."""
    from neurotts.data.ljspeech import DatasetError, download_ljspeech

    config = load("prepare", PrepareConfig, [*(overrides or []), "out=-"], config_dir, cfg)
    with user_errors(DatasetError):
        root = download_ljspeech(config.data.url, config.data.sha256,
                                 Path(config.data.download_dir).expanduser())
    err.print(f"LJSpeech is in {root}", highlight=False)


@app.command(name="toy-corpus")
def toy_corpus(
    out: Annotated[Path, typer.Argument(help="Folder to write (LJSpeech layout).")],
    utterances: Annotated[int, typer.Option("--utterances", "-n", min=1, help="How many clips.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a small synthetic corpus (no download) for demos and smoke tests."""
    from neurotts.data.toy import make_toy_corpus

    root = make_toy_corpus(out, utterances, seed=seed)
    err.print(f"wrote {utterances} clips to {root}", highlight=False)


@app.command()
def text(
    sentence: Annotated[str, typer.Argument(help="Text to run through the frontend.")],
    overrides: Overrides = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Show what the text frontend makes of SENTENCE: normalised text, symbols, ids."""
    from neurotts.text.frontend import TextError, TextFrontend

    config = load("prepare", PrepareConfig, [*(overrides or []), "out=-"], config_dir, cfg)
    with user_errors(TextError):
        normalized, symbols, ids = TextFrontend(config.text).encode(sentence)
    typer.echo(normalized)
    # Symbols are shown space-separated, so the space symbol itself is shown as "|".
    typer.echo(" ".join("|" if s == " " else s for s in symbols))
    typer.echo(" ".join(str(i) for i in ids))


@app.command()
def train(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Train model=tacotron2|wavenet on data.features=STORE into run.dir=DIR (resumes there).

    Under `torchrun --nproc_per_node=N` the same command trains with DDP.
    """
    from neurotts.data.store import StoreError
    from neurotts.training.checkpoint import CheckpointError
    from neurotts.training.config import load_train_config
    from neurotts.training.loop import train as run_training
    from neurotts.training.state import TrainingError, TrainingInterrupted

    with user_errors():
        for o in overrides or []:
            if "=" not in o:
                raise ConfigError(f"override {o!r} is not key=value")
        config = load_train_config(overrides or [], config_dir)
    if cfg:
        typer.echo(to_yaml(config), nl=False)
        raise typer.Exit(0)
    try:
        run_training(config, err)
    except (ConfigError, StoreError, CheckpointError) as exc:
        raise fail(str(exc)) from None
    except TrainingError as exc:
        raise fail(str(exc), code=1) from None
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one message
            err.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(128 + exc.signal_number) from None


@dataclass
class SynthConfig:
    """Schema of configs/synth.yaml."""

    max_chars: int | None = MISSING
    pause: float = MISSING
    temperature: float = MISSING
    batch_size: int = MISSING


def _read_inputs(sentence: str | None, input_file: Path | None) -> list[str]:
    if (sentence is None) == (input_file is None):
        raise ConfigError('give either a TEXT argument or --input FILE (one utterance a line)')
    if input_file is None:
        assert sentence is not None
        return [sentence]
    try:
        lines = input_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--input {input_file}: cannot read ({exc})") from None
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise ConfigError(f"--input {input_file}: no text in it")
    return texts


def _output_paths(output: Path, n: int) -> list[Path]:
    """One path for a single input; ``stem_001.wav`` ... for an input file (or a folder)."""
    if output.suffix.lower() != ".wav":
        return [output / f"{i:03d}.wav" for i in range(1, n + 1)]
    if n == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i:03d}.wav") for i in range(1, n + 1)]


@app.command()
def synth(
    sentence: Annotated[str | None, typer.Argument(help="Text to speak.", show_default=False)] = None,
    overrides: Overrides = None,
    acoustic: Annotated[str, typer.Option("--acoustic", "-a", help="Acoustic model: run folder or checkpoint.")] = "",
    vocoder: Annotated[str, typer.Option("--vocoder", "-v", help="WaveNet run folder or checkpoint, or griffinlim.")] = "griffinlim",
    output: Annotated[Path, typer.Option("--output", "-o", help="Wav file (or folder with --input).")] = Path("out.wav"),
    input_file: Annotated[Path | None, typer.Option("--input", "-i", help="Text file: one wav per line.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Speak TEXT (or each line of --input) with a trained acoustic model and a vocoder."""
    import warnings

    from neurotts.audio import save_wav
    from neurotts.synthesis import AcousticModel, SynthesisError, Vocoder, pick_device, synthesize

    if input_file is not None and sentence is not None:
        # With --input every positional argument is an override (`--input f.txt max_chars=80`).
        overrides, sentence = [sentence, *(overrides or [])], None
    config = load("synth", SynthConfig, overrides, config_dir, cfg)
    with user_errors(SynthesisError):
        texts = _read_inputs(sentence, input_file)
        if not acoustic:
            raise ConfigError("--acoustic is required (a tacotron2 run folder or checkpoint)")
        dev = pick_device(device)
        model = AcousticModel.load(acoustic, dev)
        voc = Vocoder(vocoder, model.audio, dev, temperature=config.temperature)
        paths = _output_paths(output, len(texts))
        results, timing = [], None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for start in range(0, len(texts), config.batch_size):
                batch, t = synthesize(texts[start: start + config.batch_size], model, voc, dev,
                                      max_chars=config.max_chars, pause_s=config.pause)
                results += batch
                if timing is None:
                    timing = t
                else:
                    timing.acoustic_s += t.acoustic_s
                    timing.vocoder_s += t.vocoder_s
                    timing.audio_s += t.audio_s
        for w in {str(w.message) for w in caught}:
            err.print(f"[yellow]warning:[/] {w}", highlight=False)
    for path, res in zip(paths, results, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_wav(path, res.wav, model.audio.sample_rate)
        flag = " [red](hit max decoder steps)[/]" if any(res.hit_max) else ""
        err.print(f"wrote {path} ({res.wav.size / model.audio.sample_rate:.2f} s){flag}", highlight=False)
    assert timing is not None
    err.print(
        f"{len(results)} file(s), {timing.audio_s:.2f} s of audio on {dev}: real-time factor "
        f"{timing.rtf:.3f} (acoustic {timing.acoustic_s:.2f} s, vocoder {timing.vocoder_s:.2f} s)",
        highlight=False,
    )


@app.command(name="eval")
def evaluate(
    overrides: Overrides = None,
    acoustic: Annotated[list[str] | None, typer.Option(
        "--acoustic", "-a", help="Acoustic model: run folder or checkpoint. Repeat it to compare "
        "models (e.g. attention types) on the same texts.")] = None,
    vocoder: Annotated[str | None, typer.Option("--vocoder", "-v", help="WaveNet run folder or checkpoint, or griffinlim.")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Synthesise a split (or texts=long|FILE) and report MCD, F0, attention health, WER/CER, RTF."""
    from neurotts.data.store import StoreError
    from neurotts.evaluation.asr import MissingDependencyError
    from neurotts.evaluation.run import EvalConfig, EvalError
    from neurotts.evaluation.run import run as run_eval
    from neurotts.synthesis import SynthesisError

    extra = [f"acoustic=[{','.join(hydra_quote(a) for a in acoustic)}]"] if acoustic else []
    extra += [f"vocoder={hydra_quote(vocoder)}"] if vocoder else []
    config = load("eval", EvalConfig, [*(overrides or []), *extra], config_dir, cfg)
    with user_errors(SynthesisError, EvalError, StoreError, MissingDependencyError):
        run_eval(config, err)


@app.command()
def audit(
    overrides: Overrides = None,
    acoustic: Annotated[str | None, typer.Option(
        "--acoustic", "-a", help="Also run a trained Tacotron 2 (run folder or checkpoint) "
        "teacher-forced over every clip: loss and attention health.")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Find the clips of data.root that would hurt training: audit.tsv, exclude.txt, audit.md in out=DIR."""
    from neurotts.audit.config import AuditConfig
    from neurotts.audit.run import AuditError
    from neurotts.audit.run import run as run_audit
    from neurotts.data.ljspeech import DatasetError
    from neurotts.evaluation.asr import MissingDependencyError
    from neurotts.synthesis import SynthesisError

    extra = [f"acoustic={hydra_quote(acoustic)}"] if acoustic else []
    config = load("audit", AuditConfig, [*(overrides or []), *extra], config_dir, cfg)
    try:
        run_audit(config, err)
    except (ConfigError, DatasetError, SynthesisError, MissingDependencyError) as exc:
        raise fail(str(exc)) from None
    except AuditError as exc:
        raise fail(str(exc), code=1) from None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., object] = typer.main.get_command(app)
    command(args=argv if argv is not None else sys.argv[1:], prog_name="neurotts")


if __name__ == "__main__":
    main()
