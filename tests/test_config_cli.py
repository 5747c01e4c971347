"""Config composition and the CLI surface (help, --cfg, --config-dir, one-line errors)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.config import CONFIG_DIR, ConfigError, constrained, load_config, to_schema
from neurotts.data.config import PrepareConfig

runner = CliRunner()


def test_defaults_compose_to_typed_config():
    cfg = load_config("prepare", PrepareConfig, ["out=x"])
    assert cfg.audio.sample_rate == 22050 and cfg.audio.n_mels == 80
    assert cfg.audio.fmax == 8000.0 and cfg.text.symbol_set == "characters"
    assert cfg.data.split.val_size is None  # null: scaled to the corpus by prepare


def test_overrides_and_groups():
    cfg = load_config("prepare", PrepareConfig, ["out=x", "audio.n_mels=64", "text=arpabet"])
    assert cfg.audio.n_mels == 64 and cfg.text.symbol_set == "arpabet"


@pytest.mark.parametrize(
    ("override", "needle"),
    [("bogus=1", "unknown config key 'bogus'"), ("audio.n_mels=many", "audio.n_mels"),
     ("text=klingon", "text=klingon: choose one of arpabet, characters"),
     ("audio.n_mels", "'audio.n_mels' is not key=value")],
)
def test_bad_overrides_raise_config_error(override, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config("prepare", PrepareConfig, ["out=x", override])


def test_audio_numbers_live_only_in_the_audio_group():
    """sample_rate, n_fft, hop, win, n_mels, fmin, fmax are written in configs/audio/ alone."""
    keys = {"sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax"}

    def walk(d, where):
        for k, v in (d.items() if isinstance(d, dict) else []):
            if k in keys:
                assert isinstance(v, str) and v.startswith("${audio."), f"{where}{k}={v}"
            walk(v, f"{where}{k}.")

    for path in CONFIG_DIR.rglob("*.yaml"):
        if path.parent.name != "audio":
            walk(OmegaConf.to_container(OmegaConf.load(path), resolve=False), f"{path}: ")


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "prepare" in result.output and "text" in result.output


def test_cfg_prints_resolved_config():
    result = runner.invoke(app, ["prepare", "out=/tmp/x", "audio.n_mels=40", "--cfg"])
    assert result.exit_code == 0
    cfg = OmegaConf.create(result.output)
    assert cfg.audio.n_mels == 40 and cfg.out == "/tmp/x"


@pytest.mark.parametrize(
    "args",
    [["prepare", "out=x", "nope=1"], ["prepare", "out=x", "audio.hop_length=big"],
     ["prepare", "out=x", "data.root=/definitely/not/here"], ["prepare", "out=x", "justaword"]],
)
def test_user_errors_are_one_line_exit_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output


def test_user_config_dir_adds_and_overrides(tmp_path):
    (tmp_path / "audio").mkdir()
    text = (CONFIG_DIR / "audio" / "ljspeech.yaml").read_text().replace("n_mels: 80", "n_mels: 100")
    (tmp_path / "audio" / "wideband.yaml").write_text(text)
    result = runner.invoke(app, ["prepare", "out=x", "audio=wideband", "--config-dir", str(tmp_path), "--cfg"])
    assert result.exit_code == 0, result.output
    assert OmegaConf.create(result.output).audio.n_mels == 100
    result = runner.invoke(app, ["prepare", "out=x", "--config-dir", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such directory" in result.output


def test_text_command_prints_three_lines():
    result = runner.invoke(app, ["text", "Dr. Smith paid $5 in 1865."])
    assert result.exit_code == 0, result.output
    normalized, symbols, ids = result.output.splitlines()
    assert "doctor" in normalized.lower() and "five dollars" in normalized
    assert "eighteen sixty-five" in normalized
    assert len(symbols.split()) == len(ids.split())
    assert all(tok.isdigit() for tok in ids.split())


def test_text_command_arpabet_and_errors():
    result = runner.invoke(app, ["text", "hello {HH AH0 L OW1}", "text=arpabet"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].count("HH") == 2
    result = runner.invoke(app, ["text", "   "])
    assert result.exit_code == 2 and result.output.startswith("error:")


def test_console_script_entry_point():
    exe = Path(sys.executable).with_name("neurotts")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "neurotts.cli"]
    proc = subprocess.run([*cmd, "prepare", "bogus=1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


# ----------------------------------------------------------------- --cfg without real paths


def lines_of(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.strip()]


def one_line_error(result, code: int = 2) -> str:
    """The single `error:` line of a failed command (asserting there is exactly one)."""
    assert result.exit_code == code, result.output
    lines = lines_of(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("command", "missing"),
    [("prepare", ["out"]), ("train", ["data.features", "run.dir"]), ("synth", ["acoustic"]),
     ("eval", ["acoustic", "out"])],
)
def test_cfg_prints_missing_values_as_question_marks(command, missing):
    result = runner.invoke(app, [command, "--cfg"])
    assert result.exit_code == 0, result.output
    cfg = OmegaConf.create(result.stdout)
    for key in missing:
        assert OmegaConf.is_missing(cfg, key) if "." not in key else \
            OmegaConf.is_missing(OmegaConf.select(cfg, key.rsplit(".", 1)[0]), key.rsplit(".", 1)[1])


def test_train_cfg_without_a_store_leaves_audio_unknown():
    """No store: audio stays ??? (the store decides it) and the model keeps its interpolation;
    a path that is not a store is a note, not an error."""
    result = runner.invoke(app, ["train", "--cfg", "experiment=tiny", "model=wavenet"])
    assert result.exit_code == 0, result.output
    cfg = OmegaConf.create(result.stdout)
    assert OmegaConf.is_missing(cfg.audio, "n_mels") and cfg.model.layers == 4
    assert OmegaConf.to_container(cfg.model)["n_mels"] == "${audio.n_mels}"
    result = runner.invoke(app, ["train", "--cfg", "data.features=/definitely/not/a/store"])
    assert result.exit_code == 0 and "not a feature store" in result.stderr
    assert OmegaConf.create(result.stdout).data.features == "/definitely/not/a/store"


def test_train_cfg_with_a_store_shows_its_audio(make_corpus, tmp_path):
    corpus = make_corpus({f"LJ001-000{i}": f"Sentence number {i}." for i in range(1, 5)}, seconds=0.5)
    store = tmp_path / "store"
    result = runner.invoke(app, ["prepare", f"data.root={corpus}", f"out={store}", "audio.n_mels=40",
                                 "data.split.val_size=1", "data.split.test_size=1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--cfg", f"data.features={store}"])
    assert result.exit_code == 0, result.output
    cfg = OmegaConf.create(result.stdout)
    assert cfg.audio.n_mels == 40 and cfg.model.n_mels == 40 and OmegaConf.is_missing(cfg.run, "dir")


@pytest.mark.parametrize(
    "args", [["prepare", "out=x", "nope=1"], ["train", "trainr.seed=1"], ["eval", "bogus.key=1"],
             ["prepare", "out=x", "audio.n_mel=3"]],
)
def test_errors_pointing_at_cfg_are_true(args):
    """An error that says "see the options with --cfg": the same command's --cfg works."""
    line = one_line_error(runner.invoke(app, args))
    assert "--cfg" in line
    result = runner.invoke(app, [args[0], "--cfg"])
    assert result.exit_code == 0, result.output
    OmegaConf.create(result.stdout)


def test_missing_values_say_how_to_set_them():
    assert "set it with --acoustic RUN" in one_line_error(runner.invoke(app, ["synth", "Hi."]))
    line = one_line_error(runner.invoke(app, ["eval", "-a", "runs/x"]))
    assert "missing mandatory value: out (set it with out=DIR" in line
    line = one_line_error(runner.invoke(app, ["train"]))
    assert "data.features, run.dir (set them with data.features=... and run.dir=..." in line
    # eval takes one acoustic model as well as a list (what its --cfg suggests works) ...
    shown = runner.invoke(app, ["eval", "--cfg", "acoustic=runs/x"])
    assert shown.exit_code == 0 and "acoustic: runs/x" in shown.output
    # ... while a list-only key given one value says how to write a list.
    line = one_line_error(runner.invoke(app, ["train", "--cfg", "trainer.optimizer.betas=0.9"]))
    assert "trainer.optimizer.betas takes a list" in line


# ----------------------------------------------------------------- help, -h, --version


HELP_ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def help_of(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env=HELP_ENV)
    assert result.exit_code == 0, result.output
    short = runner.invoke(app, [*args, "-h"], env=HELP_ENV)
    assert short.exit_code == 0 and short.output == result.output
    return result.output


def test_each_command_shows_its_own_examples():
    outputs = {c: help_of(c) for c in ("prepare", "train", "synth", "eval", "text", "download",
                                       "toy-corpus")}
    for command, text in outputs.items():
        assert f"neurotts {command} " in text, command
    for command in ("train", "synth", "eval"):
        assert "data.root=" not in outputs[command]


def test_help_lists_groups_and_choices_from_the_config_tree():
    train = help_of("train")
    assert "model=tacotron2|wavenet" in train
    # Recipes only: experiment/tiny_<model>.yaml are parts picked by ${experiment}_${model}.
    assert "experiment=small_data|tacotron2_ljspeech|tiny|wavenet_ljspeech" in train
    assert "tiny_tacotron2" not in train
    assert "model.attention.type=location|dca|multihead" in train
    assert "trainer.precision=fp32|bf16|fp16|auto" in train and "model.output=mulaw|mol" in train
    prepare = help_of("prepare")
    assert "text=arpabet|characters" in prepare and "audio=ljspeech" in prepare
    assert "data.split.method=hash|standard|lists" in prepare
    assert "split=train|val|test" in help_of("eval")


def test_help_follows_new_config_files(tmp_path, monkeypatch):
    """The lists are read from the tree: a new option file appears without code changes."""
    import neurotts.config as config

    tree = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, tree)
    (tree / "text" / "ipa.yaml").write_text("symbol_set: ipa\n")
    monkeypatch.setattr(config, "CONFIG_DIR", tree)
    assert "text=arpabet|characters|ipa" in help_of("prepare")


def test_version_and_short_help():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"neurotts {version('neurotts')}"
    assert help_of() == runner.invoke(app, ["-h"], env=HELP_ENV).output


# ----------------------------------------------------------------- did you mean ...


@pytest.mark.parametrize(
    ("args", "needles"),
    [(["train", "trainer.max_step=5"], ["'trainer.max_step'", "did you mean trainer.max_steps?"]),
     (["train", "model=tacotronn"], ["did you mean tacotron2?", "choose one of tacotron2, wavenet"]),
     (["train", "experiment=tinny"],
      ["did you mean tiny?", "choose one of small_data, tacotron2_ljspeech, tiny, wavenet_ljspeech ("]),
     (["train", "model.attention.type=dcaa"],
      ["model.attention.type='dcaa': choose one of location, dca, multihead (did you mean dca?)"]),
     (["train", "model.attention.typ=dca"], ["did you mean model.attention.type?"]),
     (["train", "model=wavenet", "model.output=mullaw"], ["(did you mean mulaw?)"]),
     (["train", "trainer.precision=bf61"], ["trainer.precision='bf61': choose one of fp32, bf16"]),
     (["prepare", "out=x", "text=arpa"], ["text=arpa: choose one of arpabet, characters",
                                          "did you mean arpabet?"]),
     (["prepare", "out=x", "data.split.method=standrd"], ["did you mean standard?"]),
     (["eval", "split=tset"], ["split='tset': choose one of train, val, test (did you mean test?)"])],
)
def test_misspellings_get_suggestions(args, needles):
    line = one_line_error(runner.invoke(app, args))
    for needle in needles:
        assert needle in line, line


def test_vocoder_name_gets_a_suggestion():
    import torch

    from neurotts.vocoders import VocoderError, load_vocoder

    audio = load_config("prepare", PrepareConfig, ["out=x"]).audio
    with pytest.raises(VocoderError, match="did you mean griffinlim"):
        load_vocoder("griffin-lim", audio, torch.device("cpu"))


# ----------------------------------------------------------------- values needing Hydra quotes


@pytest.mark.parametrize(
    "value", ["runs/a[1]", "runs/naïve", "it's", "runs/a b(1)", "a,b", "[red]z", "C:\\x\\y{1}"])
def test_values_needing_quotes_get_the_quoted_form(value):
    """The hint is a shell argument that, pasted into a real shell, gives back the value."""
    line = one_line_error(runner.invoke(app, ["prepare", f"out={value}"]))
    assert line.startswith(f"error: out={value}: ")
    hint = re.search(r'(?:write|written) ("(?:[^"\\]|\\.)*")', line).group(1)
    argv = subprocess.run(["bash", "-c", f"printf '%s' {hint}"], capture_output=True,
                          text=True, check=True).stdout
    result = runner.invoke(app, ["prepare", argv, "--cfg"])
    assert result.exit_code == 0, result.output
    assert OmegaConf.create(result.stdout).out == value


def test_train_run_dir_with_unicode_gets_the_hint():
    line = one_line_error(runner.invoke(app, ["train", "run.dir=runs/naïve"]))
    assert "'ï' must be quoted" in line and """"run.dir='runs/naïve'\"""" in line


# ----------------------------------------------------------------- value ranges at start-up


@pytest.mark.parametrize(
    ("args", "message"),
    [(["prepare", "out=x", "num_workers=-1"], "num_workers=-1: must be at least 0"),
     (["prepare", "out=x", "audio.n_mels=0"], "audio.n_mels=0: must be at least 1"),
     (["prepare", "out=x", "data.split.auto.val_fraction=1.5"],
      "data.split.auto.val_fraction=1.5: must be in [0, 1)"),
     (["train", "trainer.batch_size=0"], "trainer.batch_size=0: must be at least 1"),
     (["train", "trainer.schedule.decay_steps=0"], "trainer.schedule.decay_steps=0: must be at least 1"),
     (["train", "trainer.optimizer.lr=0"], "trainer.optimizer.lr=0.0: must be greater than 0"),
     (["train", "trainer.ema_decay=1.0"], "trainer.ema_decay=1.0: must be in [0, 1)"),
     (["train", "data.num_workers=-2"], "data.num_workers=-2: must be at least 0"),
     (["train", "model.encoder.embedding_dim=0"], "model.encoder.embedding_dim=0: must be at least 1"),
     (["train", "model=wavenet", "model.dropout=1.0"], "model.dropout=1.0: must be in [0, 1)"),
     (["synth", "Hi.", "-a", "runs/x", "batch_size=0"], "batch_size=0: must be at least 1"),
     (["synth", "Hi.", "-a", "runs/x", "max_chars=0"], "max_chars=0: must be at least 1 (or null)"),
     (["synth", "Hi.", "-a", "runs/x", "pause=-0.5"], "pause=-0.5: must be in [0, 60]"),
     (["synth", "Hi.", "-a", "runs/x", "vocoder.temperature=-1"],
      "vocoder.temperature=-1.0: must be at least 0"),
     (["eval", "-a", "runs/x", "out=r", "limit=-1"], "limit=-1: must be at least 1 (or null)"),
     (["eval", "-a", "runs/x", "out=r", "batch_size=0"], "batch_size=0: must be at least 1"),
     (["eval", "-a", "runs/x", "out=r", "plots=-1"], "plots=-1: must be at least 0"),
     (["eval", "-a", "runs/x", "out=r", "skip_run=0"], "skip_run=0: must be at least 1"),
     (["eval", "-a", "runs/x", "out=r", "repeat_jump=0"], "repeat_jump=0: must be at least 1")],
)
def test_nonsensical_numbers_fail_at_start_up(args, message):
    """Refused before anything is loaded: the checkpoint runs/x does not exist, and the
    message is about the value, not about it."""
    assert one_line_error(runner.invoke(app, args)) == f"error: {message}"


def test_null_passes_where_allowed():
    line = one_line_error(runner.invoke(app, ["synth", "Hi.", "-a", "runs/x", "max_chars=null"]))
    assert "runs/x" in line and "max_chars" not in line
    line = one_line_error(runner.invoke(app, ["eval", "-a", "runs/x", "out=r", "limit=null"]))
    assert "data.features is not set" in line and "limit" not in line


@dataclass
class Inner:
    rate: float = constrained(gt=0, le=1)
    kind: str = constrained(choices=("alpha", "beta"))


@dataclass
class Outer:
    count: int | None = constrained(None, ge=1)
    inner: Inner = field(default_factory=Inner)


def test_constraint_metadata_mechanism():
    """The one mechanism behind the checks: field metadata, read by to_schema with full keys."""
    ok = to_schema({"count": None, "inner": {"rate": 1.0, "kind": "beta"}}, Outer)
    assert ok.count is None and ok.inner.rate == 1.0
    cases = [({"count": 0}, "count=0: must be at least 1 (or null)"),
             ({"inner": {"rate": 0.0}}, "inner.rate=0.0: must be in (0, 1]"),
             ({"inner": {"rate": 2.0}}, "inner.rate=2.0: must be in (0, 1]"),
             ({"inner": {"kind": "alfa"}},
              "inner.kind='alfa': choose one of alpha, beta (did you mean alpha?)")]
    for bad, message in cases:
        cfg = OmegaConf.merge({"count": 1, "inner": {"rate": 0.5, "kind": "alpha"}}, bad)
        with pytest.raises(ConfigError) as info:
            to_schema(cfg, Outer, prefix="top.")
        assert str(info.value) == f"top.{message}"


# ------------------------------------------------------------------ issue 25: arguments, outputs


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_text_argument_may_begin_with_a_dash():
    for text, said in (("-5°C", "minus five degrees Celsius"), ("-40 below", "minus forty below")):
        result = invoke("text", text)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0] == said


def test_text_cfg_needs_no_sentence():
    result = invoke("text", "--cfg")
    assert result.exit_code == 0 and "symbol_set:" in result.output, result.output
    result = invoke("text")
    assert result.exit_code == 2 and "missing argument SENTENCE" in one_error_line(result)


@pytest.mark.parametrize("out,input_lines", [("/sys/x.wav", None), ("/proc/x/", None),
                                              ("/sys/wavs/", 2)])
def test_unwritable_output_is_one_line_before_any_model(tmp_path, out, input_lines):
    """Root may write anywhere the permission bits say no: the check creates a file."""
    if not Path(out).parts[1:2] or not Path("/" + Path(out).parts[1]).is_dir():
        pytest.skip(f"no {out} here")
    args = ["Hello."]
    if input_lines:
        text = tmp_path / "two.txt"
        text.write_text("One.\nTwo.\n", encoding="utf-8")
        args = ["-i", str(text)]
    result = invoke("synth", *args, "-a", str(tmp_path / "no-such-run"), "-o", out)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"error: -o {out}: cannot write in /"), line


def test_repeated_option_is_an_error(tmp_path):
    result = invoke("synth", "Hello.", "-a", "A", "-a", "B", "-o", str(tmp_path / "x.wav"))
    assert result.exit_code == 2
    assert one_error_line(result) == "error: --acoustic given 2 times (A, B): give it once"
