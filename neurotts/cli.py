"""The ``neurotts`` command line: thin commands that parse, load a config and call ``run``.

Every command takes trailing Hydra overrides (``key=value``), ``--cfg`` to print the composed
config (``???`` marks what is still to set; no real path needed) and exit, and ``--config-dir``
to use a config tree of one's own. ``-h``/``--help`` shows a command's examples, config groups
and value choices, read from the config tree and the schemas. Problems a user can fix (bad
override, missing path, unusable data) are printed as one line and exit with code 2.

Everything printed shows user text literally: the shared console interprets no rich markup or
emoji codes, so a path such as ``runs/[x]`` or ``runs/a[/x]b`` prints as written.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

# Typer vendors its own click: its parser raises these, not the installed click's.
from typer._click.exceptions import NoSuchOption, UsageError
from typer.core import TyperCommand, TyperOption

from neurotts.config import (
    ConfigError,
    MissingValueError,
    config_groups,
    hydra_quote,
    load_config,
    show_config,
    to_yaml,
    value_choices,
)
from neurotts.errors import UserError

app = typer.Typer(
    name="neurotts",
    help="Neural text-to-speech trained from scratch: prepare data, train, synthesise, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Messages carry user text (paths, ids, transcripts): never read it as markup or emoji codes.
err = Console(stderr=True, markup=False, emoji=False, highlight=False)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Hydra overrides KEY=VALUE (see the examples below; --cfg shows every key).",
                   show_default=False),
]
PrintCfg = Annotated[bool, typer.Option(
    "--cfg", help="Print the composed config (??? = still to set) and exit; needs no real paths.")]
ConfigDir = Annotated[
    Path | None,
    typer.Option("--config-dir", help="A config tree of your own, searched before the built-in one."),
]

# Per-command examples for --help; the config groups and value choices are read from the
# config tree and the schemas' field metadata when the help is shown.
EXAMPLES: dict[str, list[str]] = {
    "prepare": [
        "neurotts prepare data.root=LJSpeech-1.1 out=feats",
        "neurotts prepare data.download=true out=feats",
        "neurotts prepare data.root=LJSpeech-1.1 out=feats-arpabet text=arpabet",
        "neurotts prepare data.root=LJSpeech-1.1 out=feats data.split.method=standard",
        "neurotts prepare --cfg",
    ],
    "download": ["neurotts download data.download_dir=data", "neurotts download --cfg"],
    "toy-corpus": ["neurotts toy-corpus toy -n 50"],
    "text": [
        'neurotts text "Dr. Smith paid $2.5M on 12/25/2023."',
        'neurotts text "Say {HH AH0 L OW1}." text=arpabet',
        'neurotts text "-5°C outside"',
        "neurotts text --cfg",
    ],
    "train": [
        "neurotts train experiment=tiny data.features=feats run.dir=runs/tiny",
        "neurotts train experiment=tacotron2_ljspeech data.features=DIR run.dir=DIR",
        "neurotts train experiment=wavenet_ljspeech data.features=DIR run.dir=DIR",
        "neurotts train model.attention.type=dca data.features=DIR run.dir=DIR",
        "neurotts train experiment=tiny preset=finetune init_from=runs/tiny data.features=DIR run.dir=DIR",
        "neurotts train --cfg experiment=tiny model=wavenet",
        "torchrun --nproc_per_node=4 -m neurotts.cli train ...",
    ],
    "synth": [
        'neurotts synth "Hello there." -a runs/taco -o hello.wav',
        'neurotts synth "Hello there." -a runs/taco -v runs/wavenet -o hi.wav',
        'neurotts synth "Hello there." -a runs/two_voices --speaker anna -o anna.wav',
        "neurotts synth -i lines.txt -a runs/taco -o wavs/ max_chars=120",
        "neurotts synth \"Again.\" -a runs/taco -o hello.wav --force",
        "neurotts synth \"Word times.\" -a runs/taco -o hi.wav --timestamps",
        "neurotts synth --cfg",
    ],
    "eval": [
        "neurotts eval -a runs/taco data.features=feats out=report",
        "neurotts eval -a runs/taco data.features=feats out=quick limit=20",
        "neurotts eval -a runs/taco -v runs/wavenet data.features=feats out=rep",
        "neurotts eval -a runs/location -a runs/dca texts=long out=compare",
        "neurotts eval --cfg",
    ],
    "export": [
        "neurotts export runs/taco --out voice/",
        "python -m neurotts.runtime voice/ \"Hello there.\" -o hello.wav",
        "neurotts export --cfg",
    ],
    "serve": [
        "neurotts serve -a runs/taco",
        "neurotts serve -a runs/taco -v runs/wavenet --port 8000",
        "neurotts serve -a runs/taco --host 0.0.0.0 limits.queue_size=128",
        "neurotts serve --cfg",
    ],
    "audit": [
        "neurotts audit data.root=LJSpeech-1.1 out=audit",
        "neurotts audit data.root=LJSpeech-1.1 out=audit -a runs/taco",
        "neurotts audit data.root=LJSpeech-1.1 out=audit transcript.enabled=false",
        "neurotts audit --cfg",
    ],
}


@dataclass(frozen=True)
class Command:
    """What a command composes and runs. Named by dotted ``module:attribute`` strings that are
    imported when used, so ``neurotts --help`` imports no domain module."""

    config: str | None  # configs/NAME.yaml it composes; None: its options are all it takes
    schema: str  # the dataclass its config is validated as
    run: str  # its run(cfg, console, ...) function
    help_groups: tuple[str, ...] | None = None  # config groups its help lists (None: all)
    help_choices: bool = True  # whether its help lists the schema's value choices


_PREPARE = "neurotts.data.config:PrepareConfig"
COMMANDS: dict[str, Command] = {
    "prepare": Command("prepare", _PREPARE, "neurotts.data.prepare:run"),
    # download and text compose the prepare config: its data section says where LJSpeech
    # comes from, its text group how a sentence is read.
    "download": Command("prepare", _PREPARE, "neurotts.data.ljspeech:run", help_groups=(),
                        help_choices=False),
    "toy-corpus": Command(None, "neurotts.data.toy:ToyConfig", "neurotts.data.toy:run"),
    "text": Command("prepare", _PREPARE, "neurotts.text.run:run", help_groups=("text",),
                    help_choices=False),
    "train": Command("train", "neurotts.training.config:TrainConfig", "neurotts.training.loop:train"),
    "synth": Command("synth", "neurotts.synthesis.config:SynthConfig", "neurotts.synthesis.run:run"),
    "eval": Command("eval", "neurotts.evaluation.config:EvalConfig", "neurotts.evaluation.run:run"),
    "audit": Command("audit", "neurotts.audit.config:AuditConfig", "neurotts.audit.run:run"),
    "export": Command("export", "neurotts.export.config:ExportConfig", "neurotts.export.run:run"),
    "serve": Command("serve", "neurotts.serve.config:ServeConfig", "neurotts.serve.run:run"),
}


def resolve(dotted: str) -> Any:
    """The attribute a ``module:attribute`` name of :data:`COMMANDS` stands for."""
    module, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _help_schemas(name: str) -> tuple[str | None, list[tuple[str, type, str]]]:
    """The top-level config whose groups a command's help lists and the schemas whose value
    choices it lists, as ``(key prefix, schema, note)``: train's model section once per model."""
    command = COMMANDS.get(name)
    if command is None or command.config is None:
        return None, []
    if not command.help_choices:
        return command.config, []
    schemas = [("", resolve(command.schema), "")]
    if name == "train":  # the model section's schema is chosen by model=...
        from neurotts.models.registry import MODELS, model_schema

        schemas += [("model.", model_schema(m), f"  (model={m})") for m in MODELS]
    return command.config, schemas


def _lists_group(name: str, group: str) -> bool:
    shown = COMMANDS[name].help_groups
    return shown is None or group in shown


def command_epilog(name: str) -> str:
    """Examples, config groups and value choices of command ``name``, as plain text."""
    parts = []
    if name in EXAMPLES:
        parts.append("Examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name]))
    config, schemas = _help_schemas(name)
    if config is not None:
        groups = [f"  {g}={'|'.join(opts)}" + (f"  (default: {d or 'none'})" if len(opts) > 1 else "")
                  for g, d, opts in config_groups(config) if _lists_group(name, g)]
        if groups:
            parts.append("Config groups (GROUP=OPTION):\n" + "\n".join(groups))
        choices = [f"  {key}={'|'.join(values)}{note}" for prefix, schema, note in schemas
                   for key, values in value_choices(schema, prefix)]
        if choices:
            parts.append("Value choices:\n" + "\n".join(choices))
    # A leading newline: Typer dedents the epilog (inspect.cleandoc) from its second line on,
    # which would strip the indentation of a lone "Examples:" block.
    return "\n" + "\n\n".join(parts)


class HelpCommand(TyperCommand):
    """A command whose help ends with its examples, config groups and value choices, computed
    when the help is shown (so the imports they need cost nothing otherwise)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        text = command_epilog(self.name or "")
        # Typer renders the epilog as rich markup: escape it so `[a,b]` and `|` stay literal.
        self.epilog = escape(text) if self.rich_markup_mode == "rich" else text
        super().format_help(ctx, formatter)


class TextArgCommand(HelpCommand):
    """A command whose first argument is text, which may begin with "-" ("-5°C", "-.5 dB",
    "- a list item"): such an argument is text, not options, when what follows the "-" is no
    letter and no second "-". Any other unknown option gets a hint to put the text after
    ``--``. An option's value ("--seed -1") is left to the option."""

    _TEXT_MARK = "\0"  # held in front of such text while click parses, removed after

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if isinstance(p, TyperOption) and not p.is_flag
                       for name in (*p.opts, *p.secondary_opts)}
        marked, previous = [], ""
        for i, arg in enumerate(args):
            if "--" in args[:i]:
                marked.extend(args[i:])
                break
            looks_like_text = (len(arg) > 1 and arg[0] == "-" and not arg[1].isalpha()
                               and arg[1] != "-")
            text = looks_like_text and previous not in takes_value
            marked.append(self._TEXT_MARK + arg if text else arg)
            previous = arg
        try:
            rest = super().parse_args(ctx, marked)
        except NoSuchOption as exc:
            known = {name for p in self.params for name in (*p.opts, *p.secondary_opts)}
            known.update(self.get_help_option_names(ctx))
            word = next((a for a in args if a.startswith("-") and a.split("=")[0] not in known),
                        exc.option_name)
            raise UsageError(f"No such option: {word} (text that begins with '-' goes after "
                             f"--: neurotts {self.name} -- \"{word}\")", ctx) from None
        for key, value in ctx.params.items():
            if isinstance(value, str):
                ctx.params[key] = value.removeprefix(self._TEXT_MARK)
            elif isinstance(value, list | tuple):
                ctx.params[key] = [v.removeprefix(self._TEXT_MARK) if isinstance(v, str) else v
                                   for v in value]
        return rest


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("neurotts")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from neurotts import __version__ as number
        typer.echo(f"neurotts {number}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    pass


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    # Text, not markup: a message quotes user paths, and "[red]" in one must print as is.
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`UserError` into its one line and its exit code. Under torchrun an error
    raised alike on every rank (``every_rank``) is printed by rank 0 alone."""
    try:
        yield
    except UserError as exc:
        if exc.every_rank and os.environ.get("RANK", "0") != "0":
            raise typer.Exit(exc.exit_code) from None
        if exc.label is None:
            err.print(str(exc), soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        raise fail(str(exc), exc.exit_code) from None


def load(command: str, overrides: list[str] | None, config_dir: Path | None, print_cfg: bool,
         how: Mapping[str, str] | None = None) -> Any:
    """The config of ``command`` (its yaml and schema in :data:`COMMANDS`) composed with
    ``overrides``; with ``--cfg`` print it and exit. ``how`` says how to set a key that a
    command option fills (``acoustic``: ``--acoustic RUN``)."""
    entry = COMMANDS[command]
    assert entry.config is not None, f"{command} composes no config"
    name, schema = entry.config, resolve(entry.schema)
    with user_errors():
        if print_cfg:
            typer.echo(to_yaml(show_config(name, schema, overrides or [], config_dir)), nl=False)
            raise typer.Exit(0)
        try:
            return load_config(name, schema, overrides or [], config_dir)
        except MissingValueError as exc:
            raise ConfigError(exc.describe(how or {})) from None


@app.command(cls=HelpCommand)
def prepare(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Turn an LJSpeech-layout corpus into a feature store (mels, audio, manifest, splits)."""
    config = load("prepare", overrides, config_dir, cfg)
    with user_errors():
        resolve(COMMANDS["prepare"].run)(config, err)


@app.command(cls=HelpCommand)
def download(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Fetch LJSpeech-1.1 into data.download_dir (checksum-verified, resumable, safe extract)."""
    config = load("download", [*(overrides or []), "out=-"], config_dir, cfg)
    with user_errors():
        resolve(COMMANDS["download"].run)(config, err)


@app.command(name="toy-corpus", cls=HelpCommand)
def toy_corpus(
    out: Annotated[Path, typer.Argument(help="Folder to write (LJSpeech layout).")],
    utterances: Annotated[int, typer.Option("--utterances", "-n", min=1, help="How many clips.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a small synthetic corpus (no download) for demos and smoke tests."""
    command = COMMANDS["toy-corpus"]
    with user_errors():
        resolve(command.run)(resolve(command.schema)(out, utterances, seed), err)


@app.command(cls=TextArgCommand)
def text(
    sentence: Annotated[str | None, typer.Argument(help="Text to run through the frontend.",
                                                   show_default=False)] = None,
    overrides: Overrides = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Show what the text frontend makes of SENTENCE: normalised text, symbols, ids."""
    if sentence is None and not cfg:  # optional for click, so that --cfg alone works
        raise fail("missing argument SENTENCE: the text to read (--cfg alone prints the config)")
    config = load("text", [*(overrides or []), "out=-"], config_dir, cfg)
    with user_errors():
        resolve(COMMANDS["text"].run)(config, err, sentence)


@app.command(cls=HelpCommand)
def train(overrides: Overrides = None, cfg: PrintCfg = False, config_dir: ConfigDir = None) -> None:
    """Train model=tacotron2|wavenet on data.features=STORE into run.dir=DIR (resumes there).

    Under `torchrun --nproc_per_node=N` the same command trains with DDP.
    """
    from neurotts.training.config import load_train_config, show_train_config

    if cfg:
        with user_errors():
            shown, note = show_train_config(overrides or [], config_dir)
        if note is not None:  # on stderr: stdout stays pure YAML
            err.print(f"note: {note}", soft_wrap=True)
        typer.echo(to_yaml(shown), nl=False)
        raise typer.Exit(0)
    with user_errors():
        config = load_train_config(overrides or [], config_dir)
    with user_errors():
        resolve(COMMANDS["train"].run)(config, err)


def _one(option: str, values: list[str] | None) -> str | None:
    """The value of an option given at most once: a second one is an error, not a silent win."""
    if values and len(values) > 1:
        raise fail(f"{option} given {len(values)} times ({', '.join(values)}): give it once")
    return values[0] if values else None


@app.command(cls=TextArgCommand)
def synth(
    sentence: Annotated[str | None, typer.Argument(help="Text to speak.", show_default=False)] = None,
    overrides: Overrides = None,
    acoustic: Annotated[list[str] | None, typer.Option("--acoustic", "-a", help="Acoustic model: run folder or checkpoint.")] = None,
    vocoder: Annotated[list[str] | None, typer.Option("--vocoder", "-v", help="WaveNet run folder or checkpoint, or griffinlim.")] = None,
    output: Annotated[list[str] | None, typer.Option("--output", "-o", help="A .wav file, or a folder (no suffix or a trailing /); with --input, numbered by line. Existing files are not replaced without --force.")] = None,
    input_file: Annotated[list[Path] | None, typer.Option("--input", "-i", help="Text file: one wav per line.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed: the same seed gives the same audio.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files.")] = False,
    speaker: Annotated[list[str] | None, typer.Option("--speaker", help="Speaker of a multi-speaker model (default: its first).")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="Also write NAME.vtt and NAME.json (word, start, end) beside each wav.")] = False,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Speak TEXT (or each line of --input) with a trained acoustic model and a vocoder."""
    inputs = _one("--input", [str(p) for p in input_file] if input_file else None)
    if inputs is not None and sentence is not None:
        # With --input every positional argument is an override (`--input f.txt max_chars=80`).
        overrides, sentence = [sentence, *(overrides or [])], None
    options = {"sentence": sentence, "input": inputs, "acoustic": _one("--acoustic", acoustic),
               "vocoder.path": _one("--vocoder", vocoder), "output": _one("--output", output),
               "device": device, "speaker": _one("--speaker", speaker)}
    extra = [f"{key}={hydra_quote(str(value))}" for key, value in options.items() if value is not None]
    extra += [f"seed={seed}"] if seed is not None else []
    extra += ["force=true"] if force else []
    extra += ["timestamps=true"] if timestamps else []
    config = load("synth", [*(overrides or []), *extra], config_dir, cfg,
                  how={"acoustic": "--acoustic RUN"})
    try:
        with user_errors():
            resolve(COMMANDS["synth"].run)(config, err)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command(name="eval", cls=HelpCommand)
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
    extra = [f"acoustic=[{','.join(hydra_quote(a) for a in acoustic)}]"] if acoustic else []
    extra += [f"vocoder.path={hydra_quote(vocoder)}"] if vocoder else []
    config = load("eval", [*(overrides or []), *extra], config_dir, cfg,
                  how={"acoustic": "--acoustic RUN", "out": "out=DIR"})
    with user_errors():
        resolve(COMMANDS["eval"].run)(config, err)


@app.command(cls=HelpCommand)
def audit(
    overrides: Overrides = None,
    acoustic: Annotated[str | None, typer.Option(
        "--acoustic", "-a", help="Also run a trained Tacotron 2 (run folder or checkpoint) "
        "teacher-forced over every clip: loss and attention health.")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Find the clips of data.root that would hurt training: audit.tsv, exclude.txt, audit.md in out=DIR."""
    extra = [f"acoustic={hydra_quote(acoustic)}"] if acoustic else []
    config = load("audit", [*(overrides or []), *extra], config_dir, cfg,
                  how={"data.root": "data.root=DIR", "out": "out=DIR"})
    with user_errors():
        resolve(COMMANDS["audit"].run)(config, err)


@app.command(name="export", cls=HelpCommand)
def export_voice(
    acoustic: Annotated[str | None, typer.Argument(help="Tacotron 2 run folder or checkpoint.", show_default=False)] = None,
    overrides: Overrides = None,
    vocoder: Annotated[str | None, typer.Option("--vocoder", "-v", help="griffinlim (the runtime's numpy Griffin-Lim).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Voice folder to write: ONNX graphs and voice.json.")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Export RUN as ONNX graphs + voice.json for `python -m neurotts.runtime DIR "Text." -o out.wav` (no torch)."""
    options = {"acoustic": acoustic, "vocoder": vocoder, "out": out}
    extra = [f"{key}={hydra_quote(value)}" for key, value in options.items() if value is not None]
    config = load("export", [*(overrides or []), *extra], config_dir, cfg,
                  how={"acoustic": "RUN", "out": "--out DIR"})
    with user_errors():
        resolve(COMMANDS["export"].run)(config, err)


@app.command(cls=HelpCommand)
def serve(
    overrides: Overrides = None,
    acoustic: Annotated[str | None, typer.Option("--acoustic", "-a", help="Acoustic model: run folder or checkpoint.")] = None,
    vocoder: Annotated[str | None, typer.Option("--vocoder", "-v", help="WaveNet run folder or checkpoint, or griffinlim.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default 5002; 0: a free one).")] = None,
    cfg: PrintCfg = False,
    config_dir: ConfigDir = None,
) -> None:
    """Serve speech over HTTP: OpenAI-style /v1/audio/speech (streaming), /api/tts, a web page at /."""
    options = {"acoustic": acoustic, "vocoder.path": vocoder, "host": host, "port": port}
    extra = [f"{key}={hydra_quote(str(value))}" for key, value in options.items() if value is not None]
    config = load("serve", [*(overrides or []), *extra], config_dir, cfg,
                  how={"acoustic": "--acoustic RUN"})
    with user_errors():
        resolve(COMMANDS["serve"].run)(config, err)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., object] = typer.main.get_command(app)
    command(args=argv if argv is not None else sys.argv[1:], prog_name="neurotts")


if __name__ == "__main__":
    main()
