"""The ``neurotts`` command line: thin commands that parse, load a config and call ``run``.

Every command takes trailing Hydra overrides (``key=value``), ``--cfg`` to print the resolved
config and exit, and ``--config-dir`` to use a config tree of one's own. Problems a user can fix
(bad override, missing path, unusable data) are printed as one line and exit with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., object] = typer.main.get_command(app)
    command(args=argv if argv is not None else sys.argv[1:], prog_name="neurotts")


if __name__ == "__main__":
    main()
