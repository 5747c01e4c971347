"""Typed configuration: Hydra composes YAML from ``configs/``, dataclasses validate it.

Every command composes its top-level config (``prepare``, ``train``, ...) with Hydra's compose
API, applies the user's ``key=value`` overrides, resolves interpolations, and converts the
result to a dataclass schema. An unknown key, a value of the wrong type or a missing mandatory
value raises :class:`ConfigError` with a one-line message naming the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from neurotts.text.frontend import TextConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message is one line."""


@dataclass
class AudioConfig:
    """Signal-processing settings. Values come only from ``configs/audio/*.yaml``."""

    sample_rate: int = MISSING
    n_fft: int = MISSING
    hop_length: int = MISSING
    win_length: int = MISSING
    n_mels: int = MISSING
    fmin: float = MISSING
    fmax: float | None = MISSING
    log_floor: float = MISSING
    trim_silence: bool = MISSING
    trim_top_db: float = MISSING
    max_duration: float = MISSING


@dataclass
class SplitAutoConfig:
    """How val/test sizes left unset (null) scale with the number of usable utterances."""

    val_max: int = MISSING
    test_max: int = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING


@dataclass
class SplitConfig:
    method: str = MISSING  # "hash" | "standard" | "lists"
    val_size: int | None = MISSING  # method=hash; None: scaled by ``auto``
    test_size: int | None = MISSING
    auto: SplitAutoConfig = field(default_factory=SplitAutoConfig)
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None


@dataclass
class DataConfig:
    name: str = MISSING
    root: str | None = None
    download: bool = False
    download_dir: str = MISSING
    url: str = MISSING
    sha256: str = MISSING
    metadata: str = MISSING
    exclude: str | None = None  # file of ids to leave out (one a line, # comments)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class PrepareConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = MISSING
    num_workers: int = MISSING
    strict: bool = MISSING
    save_audio: bool = MISSING


def _one_line(exc: BaseException) -> str:
    """Hydra and OmegaConf errors span several lines (key, type, full_key); keep the gist."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head = lines[0] if lines else type(exc).__name__
    if head.startswith("Could not override") and any(ln.startswith("To append") for ln in lines):
        # Hydra's advice (+key=value) would only fail later, at schema validation.
        key = head.split("'")[1]
        return f"unknown config key '{key}' (see the options with --cfg)"
    if head.startswith("Error parsing override") and len(lines) > 1:
        return f"{head}: {lines[1]}"
    full_key = next((ln for ln in lines if ln.startswith("full_key:")), None)
    if full_key and full_key.split(":", 1)[1].strip() and "full_key" not in head:
        head = f"{head} ({full_key})"
    return head


def compose_config(
    name: str,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
    inject: dict[str, Any] | None = None,
) -> DictConfig:
    """Compose ``name``.yaml with ``overrides`` and return it with interpolations resolved.

    ``config_dir`` is a user's own config tree searched together with the built-in one: it can
    add group options (``audio/wideband.yaml``, ``experiment/mine.yaml``) or bring its own
    top-level ``name``.yaml, which then takes the place of the built-in one.
    ``inject`` adds top-level nodes before interpolations resolve: ``train`` injects the
    feature store's ``audio`` settings so that ``${audio.n_mels}`` means the store's value.
    """
    primary, extra = CONFIG_DIR, []
    if config_dir is not None:
        user = Path(config_dir).expanduser().resolve()
        if not user.is_dir():
            raise ConfigError(f"--config-dir {config_dir}: no such directory")
        # Hydra finds the primary config before it reads hydra.searchpath, so the tree that
        # holds `name`.yaml is the primary one and the other is searched after it.
        if (user / f"{name}.yaml").is_file():
            primary, other = user, CONFIG_DIR
        else:
            other = user
        extra = [f"hydra.searchpath=[file://{other}]"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(primary), version_base=None):
            cfg = compose(config_name=name, overrides=[*extra, *overrides])
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_one_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    with _unlocked(cfg):
        if "hydra" in cfg:
            del cfg["hydra"]
        for key, value in (inject or {}).items():
            cfg[key] = value
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_one_line(exc)) from None
    return cfg


class _unlocked:
    """Context manager that lifts OmegaConf's struct flag for an edit."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self) -> DictConfig:
        OmegaConf.set_struct(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


def to_schema(cfg: DictConfig | dict[str, Any], schema: type[T]) -> T:
    """Validate ``cfg`` against the dataclass ``schema`` and return an instance of it.

    Unknown keys, wrong types and missing mandatory values raise :class:`ConfigError`.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(
                f"missing mandatory value: {', '.join(missing)} (set it as {missing[0]}=...)"
            )
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        msg = _one_line(exc)
        if msg.startswith("Key '") and "not in" in msg:
            msg = f"unknown config key {msg.split(chr(39))[1]!r} {msg.split(' ', 2)[2]}"
        raise ConfigError(msg) from None


def load_config(
    name: str,
    schema: type[T],
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> T:
    """Compose ``name`` with ``overrides`` and validate it as ``schema``."""
    return to_schema(compose_config(name, overrides, config_dir), schema)


def to_yaml(cfg: Any) -> str:
    """YAML text of a dataclass config or DictConfig (for ``--cfg`` and run folders)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-container copy of a dataclass config (for checkpoints and stores)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
