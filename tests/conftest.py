"""Shared fixtures: paths to the real LJSpeech sample and builders of small synthetic corpora."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from neurotts.text.frontend import TextConfig, TextFrontend

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE = SHARED / "data" / "ljspeech-sample" / "LJSpeech-1.1"
TEXTS = SHARED / "data" / "ljspeech-texts"

# A shell without job control starts a background job (`cmd &`, nohup ... &) with SIGINT
# ignored, and an ignored signal stays ignored in every process started from there: Python
# then installs no KeyboardInterrupt handler, and the Ctrl-C tests (in this process and in
# the CLI processes they start) would see their SIGINT vanish. Take it back for the suite.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

requires_sample = pytest.mark.skipif(
    not (SAMPLE / "metadata.csv").is_file(), reason=f"LJSpeech sample not found at {SAMPLE}"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def speechlike(seconds: float, sr: int, seed: int = 0, lead_silence: float = 0.2) -> np.ndarray:
    """A voiced-sounding test signal (harmonics with a moving pitch and amplitude envelope),
    padded with near-silence, so trimming and mels have something real to work on."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) * 0.3
    pad = np.zeros(int(lead_silence * sr)) + 1e-4 * rng.standard_normal(int(lead_silence * sr))
    return np.concatenate([pad, voiced * env, pad]).astype(np.float32)


CorpusFactory = Callable[..., Path]


@pytest.fixture
def make_corpus(tmp_path: Path) -> CorpusFactory:
    """Build an LJSpeech-layout corpus: ``make_corpus({"ID": "text", ...})`` writes speech-like
    22.05 kHz wavs and a metadata.csv (``ID|raw|raw``); returns the corpus folder."""

    def build(rows: dict[str, str], name: str = "corpus", sr: int = 22050,
              seconds: float = 1.0) -> Path:
        root = tmp_path / name
        (root / "wavs").mkdir(parents=True)
        lines = []
        for i, (uid, text) in enumerate(rows.items()):
            sf.write(root / "wavs" / f"{uid}.wav", speechlike(seconds, sr, seed=i), sr,
                     subtype="PCM_16")
            lines.append(f"{uid}|{text}|{text}")
        (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    return build


# The two text frontends, shared by the text tests (loading CMUdict once per module).
@pytest.fixture(scope="module")
def chars() -> TextFrontend:
    return TextFrontend(TextConfig(symbol_set="characters"))


@pytest.fixture(scope="module")
def arpa() -> TextFrontend:
    return TextFrontend(TextConfig(symbol_set="arpabet"))
