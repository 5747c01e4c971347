"""Typed configuration: Hydra composes YAML from ``configs/``, dataclasses validate it.

Every command composes its top-level config (``prepare``, ``train``, ...) with Hydra's compose
API, applies the user's ``key=value`` overrides, resolves interpolations, and converts the
result to a dataclass schema. An unknown key or choice, a value of the wrong type, out of range
or not among its choices, a value Hydra cannot parse, or a missing mandatory value raises
:class:`ConfigError` with a one-line message naming the key (with "did you mean ..." where a
close match exists, and the quoted form where a value needs Hydra quoting).

Value constraints live on the schema's fields as dataclass metadata, written directly
(``field(default=MISSING, metadata={"choices": ("a", "b")})``) or through
:func:`constrained`: ``ge``/``gt``/``le``/``lt`` bound a number, ``choices`` lists the allowed
values. :func:`to_schema` checks them with the key's full dotted name, so every command refuses a
nonsensical value at start-up; ``--help`` lists the choices from the same metadata.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    InterpolationToMissingValueError,
    OmegaConfBaseException,
)

from neurotts.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A configuration problem the user can fix; the message is one line."""


class MissingValueError(ConfigError):
    """Mandatory values nobody set; ``keys`` are their dotted names."""

    def __init__(self, keys: Sequence[str], how: Mapping[str, str] | None = None):
        self.keys = list(keys)
        super().__init__(self.describe(how or {}))

    def describe(self, how: Mapping[str, str]) -> str:
        """The message, with ``how[key]`` (e.g. ``--acoustic RUN``) as the way to set a key."""
        ways = " and ".join(how.get(k, f"{k}=...") for k in self.keys[:2])
        them = "it" if len(self.keys) == 1 else "them"
        return (f"missing mandatory value: {', '.join(self.keys)} (set {them} with {ways}; "
                "--cfg shows every option)")


def constrained(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None,
                le: float | None = None, lt: float | None = None,
                choices: Sequence[str] | None = None, pattern: str | None = None,
                expect: str | None = None) -> Any:
    """A schema field whose value :func:`to_schema` checks: ``ge``/``gt``/``le``/``lt`` bound a
    number (``None`` passes when the field allows it), ``choices`` are the allowed strings,
    ``pattern`` a regular expression the whole value must match (``expect`` says in words what
    it allows, for the error)."""
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": None if choices is None else tuple(choices),
              "pattern": pattern, "expect": expect}
    return field(default=default, metadata={k: v for k, v in bounds.items() if v is not None})


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """The choice closest to a misspelt ``word`` (case-insensitive), or None if none is close."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _violation(value: Any, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under a field's metadata constraints, or None."""
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        guess = did_you_mean(value, choices)
        return f"choose one of {', '.join(choices)}" + (f" (did you mean {guess}?)" if guess else "")
    pattern = meta.get("pattern")
    if pattern is not None and value is not None and not re.fullmatch(pattern, str(value)):
        return f"expected {meta.get('expect', f'a value matching {pattern}')}"
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None  # null passes where the type allows it; the schema has checked the type
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if ((ge is None or value >= ge) and (gt is None or value > gt)
            and (le is None or value <= le) and (lt is None or value < lt)):
        return None
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if low is not None and high is not None:
        return f"must be in {low}, {high}"
    if ge is not None:
        return f"must be at least {ge}"
    if gt is not None:
        return f"must be greater than {gt}"
    return f"must be at most {le}" if le is not None else f"must be less than {lt}"


def _check_values(cfg: DictConfig, prefix: str = "") -> None:
    """Check the metadata constraints of every value set in ``cfg`` (a schema-typed node)."""
    schema = OmegaConf.get_type(cfg)
    if not is_dataclass(schema):
        return
    for f in fields(schema):
        if OmegaConf.is_missing(cfg, f.name) or OmegaConf.is_interpolation(cfg, f.name):
            continue  # not known yet: --cfg shows it as it is, a run reports it as missing
        value = cfg[f.name]
        if isinstance(value, DictConfig):
            _check_values(value, f"{prefix}{f.name}.")
            continue
        problem = _violation(value, f.metadata)
        if problem is not None:
            nullable = " (or null)" if cfg._get_node(f.name)._is_optional() else ""
            raise ConfigError(f"{prefix}{f.name}={_show(value)}: {problem}{nullable}")


def value_choices(schema: type, prefix: str = "") -> list[tuple[str, tuple[str, ...]]]:
    """``(dotted key, choices)`` of every field of ``schema`` (and nested schemas) that has
    ``choices`` metadata, in field order: what ``--help`` lists."""
    out: list[tuple[str, tuple[str, ...]]] = []
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        if is_dataclass(hints[f.name]):
            out += value_choices(hints[f.name], f"{prefix}{f.name}.")
        elif "choices" in f.metadata:
            out.append((f"{prefix}{f.name}", f.metadata["choices"]))
    return out


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value that reads back as exactly ``value``.

    Single quotes, or double quotes when the value holds a single quote and no double one. In a
    quoted Hydra string a backslash escapes only the quote or the backslashes before one (or
    before the closing quote), so only those are doubled. (``${...}`` stays an interpolation,
    as everywhere in a Hydra config.)
    """
    q = '"' if "'" in value and '"' not in value else "'"
    value = re.sub(rf"(\\*){q}", lambda m: m.group(1) * 2 + "\\" + q, value)
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
    return f"{q}{value}{q}"


def _shell_arg(arg: str) -> str:
    """``arg`` in double quotes for a POSIX shell (``\\ " $ ` `` escaped)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", arg) + '"'


@lru_cache(maxsize=256)
def _needs_quotes(char: str) -> bool:
    """Whether Hydra's override grammar rejects ``char`` inside an unquoted value. Asked of
    Hydra's own parser, so the answer follows the installed grammar (today: non-ASCII and
    ``! " # & ' ( ) ; < = > [ ] ^ ` { } ~``; a ``,`` makes a sweep)."""
    if char == ",":
        return True
    try:
        _parser().parse_overrides([f"k=a{char}b"])
    except OverrideParseException:
        return True
    return False


@lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()


def check_overrides(overrides: Sequence[str]) -> None:
    """Parse each override as Hydra would; one that fails (or that Hydra would read as a sweep)
    raises :class:`ConfigError`, with the quoted form when quoting the value fixes it."""
    for o in overrides:
        if "=" not in o and not o.startswith("~"):
            raise ConfigError(f"override {o!r} is not key=value")
        try:
            (parsed,) = _parser().parse_overrides([o])
            if not parsed.is_sweep_override():
                continue
        except OverrideParseException as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            # Hydra's own detail ("mismatched input '[' expecting <EOF>"), after its header line
            parse_error = lines[1 if lines[0].startswith("Error parsing") and len(lines) > 1 else 0]
        else:
            parse_error = f"{o}: Hydra reads the ',' as a sweep over several values"
        key, _, value = o.partition("=")
        if not value:
            raise ConfigError(f"cannot parse override {o!r}: {parse_error}")
        quoted = _shell_arg(f"{key}={hydra_quote(value)}")
        if value[0] in "[{":  # meant as a list or dict, or a string that starts like one
            raise ConfigError(f"{o}: not a valid {'list' if value[0] == '[' else 'dict'} "
                              f"({parse_error}); as a string it is written {quoted}")
        bad = dict.fromkeys(c for c in value if _needs_quotes(c))
        raise ConfigError(f"{o}: {', '.join(map(repr, bad))} must be quoted in a Hydra value; "
                          f"write {quoted} (outer quotes for the shell, inner ones "
                          "for Hydra)")


def _one_line(exc: BaseException, prefix: str = "") -> str:
    """Hydra and OmegaConf errors span several lines (key, type, full_key); keep the gist.
    ``prefix`` is the dotted path of the node that was being checked (``"model."``)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head = lines[0] if lines else type(exc).__name__
    if head.startswith("Could not override") and any(ln.startswith("To append") for ln in lines):
        # Hydra's advice (+key=value) would only fail later, at schema validation.
        key = head.split("'")[1]
        return f"unknown config key '{key}' (see the options with --cfg)"
    if head.startswith("Error parsing override") and len(lines) > 1:
        return f"{head}: {lines[1]}"
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    key = f"{prefix}{full_key}" if full_key else prefix.rstrip(".")
    converted = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", head)
    if converted and key:
        kinds = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}
        return f"{key}={converted[1]!r}: expected {kinds.get(converted[2], converted[2].lower())}"
    if "is not a ListConfig" in head and key:
        return f"{key} takes a list: write {key}=[a,b]"
    if key and "full_key" not in head:
        head = f"{head} ({'full_key: ' if full_key else 'in '}{key})"
    return head


def _key_suggestion(cfg: DictConfig, key: str) -> str | None:
    """For an unknown dotted ``key``, the closest existing key of ``cfg``, segment by segment
    (``trainer.max_step`` -> ``trainer.max_steps``, ``trainr.seed`` -> ``trainer.seed``)."""
    node: Any = cfg
    out = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            guess = did_you_mean(part, [str(k) for k in node.keys()])
            if guess is None:
                return None
            part = guess
        out.append(part)
        node = node._get_node(part)
    return ".".join(out)


def _unknown_key_message(message: str, name: str, overrides: Sequence[str],
                         config_dir: str | Path | None) -> str:
    """``unknown config key 'K'`` from Hydra, with the closest key of the config composed
    without the offending override."""
    key = message.split("'")[1]
    rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    try:
        tree = _compose(name, rest, config_dir)
    except ConfigError:
        return message
    guess = _key_suggestion(tree, key)
    if guess is None or guess == key:
        return message
    return f"unknown config key '{key}': did you mean {guess}? (see the options with --cfg)"


def _defaults(name: str, config_dir: str | Path | None = None) -> list[tuple[str, Any]]:
    """``(group, default)`` entries of ``name``.yaml's defaults list, as written."""
    tree = _primary_dir(name, config_dir)
    text = OmegaConf.to_container(OmegaConf.load(tree / f"{name}.yaml"), resolve=False)
    entries = text.get("defaults", []) if isinstance(text, dict) else []
    return [next(iter(e.items())) for e in entries if isinstance(e, dict)]


def _group_options(group: str, config_dir: str | Path | None = None) -> list[str]:
    """Every config file of ``group`` in the built-in tree and the user's ``config_dir``."""
    trees = [CONFIG_DIR] + ([Path(config_dir).expanduser()] if config_dir is not None else [])
    return sorted({p.stem for tree in trees for p in (tree / group).glob("*.yaml")})


def _listed_options(name: str, group: str, options: Sequence[str],
                    config_dir: str | Path | None = None) -> list[str]:
    """``options`` of ``group`` that a user chooses: without the configs the defaults list
    selects by interpolation (``experiment/tiny_tacotron2.yaml``, picked by
    ``${experiment}_${model}``), which are parts of a recipe, not recipes."""
    parts: set[str] = set()
    for key, value in _defaults(name, config_dir):
        target = key.split("@")[0].split()[-1]  # "optional experiment@_global_" -> experiment
        if target != group or not isinstance(value, str) or "${" not in value:
            continue
        pattern = re.escape(value)
        for ref in re.findall(r"\$\{(\w+)\}", value):
            alternatives = "|".join(map(re.escape, _group_options(ref, config_dir)))
            pattern = pattern.replace(re.escape(f"${{{ref}}}"), f"(?:{alternatives})", 1)
        parts |= {o for o in options if re.fullmatch(pattern, o)}
    return [o for o in options if o not in parts]


def _missing_option_message(exc: MissingConfigException, name: str,
                            config_dir: str | Path | None) -> str | None:
    """``model=tacotronn: choose one of tacotron2, wavenet (did you mean tacotron2?)``."""
    if not exc.missing_cfg_file or "/" not in exc.missing_cfg_file or not exc.options:
        return None
    group, _, value = exc.missing_cfg_file.rpartition("/")
    choices = _listed_options(name, group, sorted(exc.options), config_dir)
    guess = did_you_mean(value, choices)
    hint = f" (did you mean {guess}?)" if guess is not None else ""
    return f"{group}={value}: choose one of {', '.join(choices)}{hint}"


def _primary_dir(name: str, config_dir: str | Path | None) -> Path:
    if config_dir is not None:
        user = Path(config_dir).expanduser().resolve()
        if (user / f"{name}.yaml").is_file():
            return user
    return CONFIG_DIR


def config_groups(name: str) -> list[tuple[str, str | None, list[str]]]:
    """``(group, default option, options)`` for each config group ``name``.yaml chooses from,
    read from the built-in config tree (for ``--help``)."""
    out = []
    for key, default in _defaults(name):
        if " " in key or "@" in key:  # optional / package-placed entries repeat a group
            continue
        out.append((key, default, _listed_options(name, key, _group_options(key))))
    return out


def compose_config(
    name: str,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
    inject: dict[str, Any] | None = None,
    partial: bool = False,
) -> DictConfig:
    """Compose ``name``.yaml with ``overrides`` and return it with interpolations resolved.

    ``config_dir`` is a user's own config tree searched together with the built-in one: it can
    add group options (``audio/wideband.yaml``, ``experiment/mine.yaml``) or bring its own
    top-level ``name``.yaml, which then takes the place of the built-in one.
    ``inject`` adds top-level nodes before interpolations resolve: ``train`` injects the
    feature store's ``audio`` settings so that ``${audio.n_mels}`` means the store's value.
    ``partial`` (for ``--cfg``) leaves an interpolation whose target is still missing as it is
    written (``n_mels: ${audio.n_mels}``) instead of turning it into ``???``.
    """
    cfg = _compose(name, overrides, config_dir)
    with _unlocked(cfg):
        if "hydra" in cfg:
            del cfg["hydra"]
        for key, value in (inject or {}).items():
            cfg[key] = value
    try:
        if partial:
            _resolve_known(cfg)
        else:
            OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_one_line(exc)) from None
    return cfg


def _compose(name: str, overrides: Sequence[str], config_dir: str | Path | None) -> DictConfig:
    """Hydra's composition of ``name`` with ``overrides``, interpolations unresolved."""
    check_overrides(overrides)
    primary, extra = CONFIG_DIR, []
    if config_dir is not None:
        user = Path(config_dir).expanduser().resolve()
        if not user.is_dir():
            raise ConfigError(f"--config-dir {config_dir}: no such directory")
        # Hydra finds the primary config before it reads hydra.searchpath, so the tree that
        # holds `name`.yaml is the primary one and the other is searched after it.
        primary = _primary_dir(name, config_dir)
        other = CONFIG_DIR if primary == user else user
        extra = [f"hydra.searchpath=[file://{other}]"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(primary), version_base=None):
            return compose(config_name=name, overrides=[*extra, *overrides])
    except MissingConfigException as exc:
        raise ConfigError(_missing_option_message(exc, name, config_dir) or _one_line(exc)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        message = _one_line(exc)
        if message.startswith("unknown config key"):
            message = _unknown_key_message(message, name, overrides, config_dir)
        raise ConfigError(message) from None
    finally:
        GlobalHydra.instance().clear()


def _resolve_known(node: DictConfig | ListConfig) -> None:
    """Resolve, in place, every interpolation whose target is set; keep the others as text."""
    keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        if OmegaConf.is_interpolation(node, key):
            try:
                node[key] = node[key]
            except InterpolationToMissingValueError:
                pass
        else:
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig) and not child._is_missing():
                _resolve_known(child)


class _unlocked:
    """Context manager that lifts OmegaConf's struct flag for an edit."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self) -> DictConfig:
        OmegaConf.set_struct(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


def validate(cfg: DictConfig | dict[str, Any], schema: type, prefix: str = "") -> DictConfig:
    """``cfg`` merged onto ``schema``: unknown keys, wrong types and values outside a field's
    constraints raise :class:`ConfigError`; missing values stay missing (``???``).
    ``prefix`` is the dotted path of ``cfg`` in the whole config (``"model."``), for messages."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_schema_message(exc, prefix)) from None
    _check_values(merged, prefix)
    return merged


def _schema_message(exc: OmegaConfBaseException, prefix: str) -> str:
    msg = _one_line(exc, prefix)
    if msg.startswith("Key '") and "not in" in msg:  # a key the schema does not have
        key = f"{prefix}{getattr(exc, 'full_key', None) or msg.split(chr(39))[1]}"
        parent = getattr(exc, "parent_node", None)
        names = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
        guess = did_you_mean(str(getattr(exc, "key", "")), names)
        if guess is None:
            return f"unknown config key '{key}' (see the options with --cfg)"
        where = key.rpartition(".")[0]
        return (f"unknown config key '{key}': did you mean {where + '.' if where else ''}{guess}? "
                "(see the options with --cfg)")
    return msg


def missing_keys(cfg: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Dotted names of the values set to ``???``, in order; interpolations (resolved or not)
    do not count (OmegaConf's own ``missing_keys`` resolves them, and fails on one whose
    target is missing)."""
    out: list[str] = []
    keys = list(cfg.keys()) if isinstance(cfg, DictConfig) else list(range(len(cfg)))
    for key in keys:
        node = cfg._get_node(key)
        name = f"{prefix}[{key}]" if isinstance(cfg, ListConfig) else f"{prefix}{'.' if prefix else ''}{key}"
        if OmegaConf.is_interpolation(cfg, key):
            continue
        if node._is_missing():
            out.append(name)
        elif isinstance(node, DictConfig | ListConfig):
            out += missing_keys(node, name)
    return out


def to_schema(cfg: DictConfig | dict[str, Any], schema: type[T], prefix: str = "") -> T:
    """Validate ``cfg`` against the dataclass ``schema`` and return an instance of it.

    Unknown keys, wrong types, values outside their constraints and missing mandatory values
    raise :class:`ConfigError` (:class:`MissingValueError` for the last).
    """
    merged = validate(cfg, schema, prefix)
    missing = missing_keys(merged)
    if missing:
        raise MissingValueError([f"{prefix}{k}" for k in missing])
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(_schema_message(exc, prefix)) from None


def load_config(
    name: str,
    schema: type[T],
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> T:
    """Compose ``name`` with ``overrides`` and validate it as ``schema``."""
    return to_schema(compose_config(name, overrides, config_dir), schema)


def show_config(
    name: str,
    schema: type,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> DictConfig:
    """What ``--cfg`` prints: ``name`` composed and validated as far as it is set, with ``???``
    for the values still to give; needs no real path."""
    return validate(compose_config(name, overrides, config_dir, partial=True), schema)


def to_yaml(cfg: Any) -> str:
    """YAML text of a dataclass config or DictConfig (for ``--cfg`` and run folders)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-container copy of a dataclass config (for checkpoints and stores)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
