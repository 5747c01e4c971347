"""Every message the CLI prints shows user text literally (issue 15).

Paths holding ``[x]``, ``[/x]`` and ``[red]`` — rich markup tags if anything read them as markup
— go through prepare, train (and its resume), synth and eval on a tiny model trained here.
Each message must show the path as typed and nothing may crash (a ``[/x]`` closing no tag was a
``MarkupError`` traceback; ``[x]`` and ``[red]`` were silently eaten).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.config import hydra_quote
from neurotts.data.toy import make_toy_corpus

runner = CliRunner()
pytestmark = pytest.mark.slow

# A name that is markup three ways: an unknown tag, a closing tag that closes nothing, a style.
ODD = "[x]a[/x]b[red]"
# Keep an untrained model's synthesis short (it rarely emits a stop token).
SHORT_GUARD = ["model.inference.max_frames_per_symbol=1.5", "model.inference.max_frames_offset=8"]


def run(*args: str):
    return runner.invoke(app, list(args))


def flat(result) -> str:
    """The output with line breaks removed, so a path the console wrapped reads whole."""
    return result.output.replace("\n", "")


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def train(store: Path, run_dir: Path, steps: int):
    return run("train", "experiment=tiny", f"data.features={hydra_quote(str(store))}",
               f"run.dir={hydra_quote(str(run_dir))}", f"trainer.max_steps={steps}",
               f"trainer.val_every={steps}", f"trainer.checkpoint_every={steps}", *SHORT_GUARD)


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, Path]:
    """A toy corpus, its store and a tiny Tacotron 2, all under markup-like names."""
    root = tmp_path_factory.mktemp("literal")
    corpus = make_toy_corpus(root / f"corpus{ODD}", n_utterances=10)
    store = root / f"store{ODD}"
    result = run("prepare", f"data.root={hydra_quote(str(corpus))}", f"out={hydra_quote(str(store))}",
                 "data.split.val_size=2", "data.split.test_size=2")
    assert result.exit_code == 0, result.output
    assert f"into {store}" in flat(result)
    run_dir = root / "runs" / ODD
    result = train(store, run_dir, 2)
    assert result.exit_code == 0, result.output
    return {"root": root, "store": store, "run": run_dir}


def test_prepare_shows_paths_literally(place):
    missing = place["root"] / f"no{ODD}such"
    result = run("prepare", f"data.root={hydra_quote(str(missing))}",
                 f"out={hydra_quote(str(place['root'] / 'out'))}")
    assert str(missing) in error_line(result)


def test_train_and_resume_show_paths_literally(place, tmp_path):
    """A run folder named like markup trains once and resumes (the "resumed from" line was
    the MarkupError); a store path like it is named whole in the error."""
    run_dir = tmp_path / ODD
    result = train(place["store"], run_dir, 1)
    assert result.exit_code == 0, result.output
    result = train(place["store"], run_dir, 2)
    assert result.exit_code == 0, result.output
    assert f"resumed from step 1 ({run_dir / 'checkpoints'}" in flat(result)
    not_a_store = tmp_path / f"[red]nostore{ODD}"
    result = train(not_a_store, tmp_path / "other", 1)
    assert str(not_a_store) in error_line(result)


@pytest.mark.parametrize("name", ["runs/[x]", "runs/a[/x]b", "[red]gone"])
def test_synth_and_eval_name_a_missing_model_literally(place, name):
    path = str(place["root"] / name)
    assert f"error: {path}: " in error_line(run("synth", "Hello.", "--acoustic", path))
    result = run("eval", "--acoustic", path, f"data.features={hydra_quote(str(place['store']))}",
                 f"out={hydra_quote(str(place['root'] / 'rep'))}")
    assert f"error: {path}: " in error_line(result)


def test_synth_writes_and_reports_a_markup_like_output(place):
    wav = place["root"] / "out" / "[red]z[/x].wav"
    result = run("synth", "Hello there.", "--acoustic", str(place["run"]), "-o", str(wav),
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert wav.is_file() and f"wrote {wav} (" in flat(result)
    # --force: the file exists from above, and an existing output is refused without it.
    line = error_line(run("synth", "Hello.", "--acoustic", str(place["run"]), "-o", str(wav),
                          "--vocoder", "griffin-lim", "--force"))
    assert "did you mean griffinlim?" in line


def test_eval_shows_paths_literally(place):
    """Two models compared: each is announced with its path as given."""
    out = place["root"] / f"report{ODD}"
    result = run("eval", "-a", str(place["run"]), "-a", str(place["run"]),
                 f"data.features={hydra_quote(str(place['store']))}", f"out={hydra_quote(str(out))}",
                 "asr=false", "limit=1", "plots=0", "device=cpu")
    assert result.exit_code == 0, result.output
    assert f"({place['run']})" in flat(result)
    assert (out / "comparison.md").is_file()


def test_missing_extra_hint_keeps_its_brackets(place, monkeypatch):
    """Without pocketsphinx, eval's hint names the extra whole: pip install 'neurotts[eval]'."""
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import now raises ImportError
    result = run("eval", "-a", str(place["run"]), f"data.features={hydra_quote(str(place['store']))}",
                 f"out={hydra_quote(str(place['root'] / 'asr'))}", "limit=1", "plots=0", "device=cpu")
    assert "pip install 'neurotts[eval]'" in error_line(result)
