"""Config composition and the CLI surface (help, --cfg, --config-dir, one-line errors)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.config import CONFIG_DIR, ConfigError, PrepareConfig, load_config

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
