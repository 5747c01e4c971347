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
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.text import Text

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
    # Text, not markup: a message quotes user paths, and "[red]" in one must print as is.
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
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
    from neurotts.text.frontend import TextError, TextFrontend, TextReport, dropped_message

    config = load("prepare", PrepareConfig, [*(overrides or []), "out=-"], config_dir, cfg)
    report = TextReport()
    with user_errors(TextError):
        normalized, symbols, ids = TextFrontend(config.text).encode(sentence, report)
    typer.echo(normalized)
    # Symbols are shown space-separated, so the space symbol itself is shown as "|".
    typer.echo(" ".join("|" if s == " " else s for s in symbols))
    typer.echo(" ".join(str(i) for i in ids))
    if report.dropped:
        err.print(f"warning: {dropped_message(report.dropped, config.text.symbol_set)}",
                  markup=False, highlight=False)
    if report.oov:
        err.print(f"not in CMUdict, spelled as letters: {' '.join(sorted(report.oov))}",
                  markup=False, highlight=False)


@app.command()
def train(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Train model=tacotron2|wavenet on data.features=STORE into run.dir=DIR (resumes there).

    Under `torchrun --nproc_per_node=N` the same command trains with DDP.
    """
    from neurotts.checkpoint import CheckpointError
    from neurotts.data.store import StoreError
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
    except (ConfigError, StoreError, CheckpointError, TrainingError) as exc:
        code = 1 if isinstance(exc, TrainingError) else 2
        if getattr(exc, "on_every_rank", False) and os.environ.get("RANK", "0") != "0":
            raise typer.Exit(code) from None  # under torchrun: rank 0 prints it, once
        raise fail(str(exc), code) from None
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one message
            err.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(128 + exc.signal_number) from None


@app.command()
def synth(
    sentence: Annotated[str | None, typer.Argument(help="Text to speak.", show_default=False)] = None,
    overrides: Overrides = None,
    acoustic: Annotated[str | None, typer.Option("--acoustic", "-a", help="Acoustic model: run folder or checkpoint.")] = None,
    vocoder: Annotated[str | None, typer.Option("--vocoder", "-v", help="WaveNet run folder or checkpoint, or griffinlim.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Wav file (or folder with --input).")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", "-i", help="Text file: one wav per line.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Speak TEXT (or each line of --input) with a trained acoustic model and a vocoder."""
    from neurotts.checkpoint import CheckpointError
    from neurotts.synthesis import SynthConfig, SynthesisError
    from neurotts.synthesis import run as run_synth
    from neurotts.vocoders import VocoderError

    if input_file is not None and sentence is not None:
        # With --input every positional argument is an override (`--input f.txt max_chars=80`).
        overrides, sentence = [sentence, *(overrides or [])], None
    options = {"sentence": sentence, "input": input_file, "acoustic": acoustic, "vocoder": vocoder,
               "output": output, "device": device}
    extra = [f"{key}={hydra_quote(str(value))}" for key, value in options.items() if value is not None]
    config = load("synth", SynthConfig, [*(overrides or []), *extra], config_dir, cfg)
    with user_errors(SynthesisError, CheckpointError, VocoderError):
        run_synth(config, err)


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
    from neurotts.checkpoint import CheckpointError
    from neurotts.data.store import StoreError
    from neurotts.evaluation.asr import MissingDependencyError
    from neurotts.evaluation.run import EvalConfig, EvalError
    from neurotts.evaluation.run import run as run_eval
    from neurotts.synthesis import SynthesisError
    from neurotts.vocoders import VocoderError

    extra = [f"acoustic=[{','.join(hydra_quote(a) for a in acoustic)}]"] if acoustic else []
    extra += [f"vocoder={hydra_quote(vocoder)}"] if vocoder else []
    config = load("eval", EvalConfig, [*(overrides or []), *extra], config_dir, cfg)
    with user_errors(SynthesisError, EvalError, StoreError, MissingDependencyError,
                     CheckpointError, VocoderError):
        run_eval(config, err)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., object] = typer.main.get_command(app)
    command(args=argv if argv is not None else sys.argv[1:], prog_name="neurotts")


if __name__ == "__main__":
    main()
