"""Train/val/test splits for ``prepare``, and the id-list files that splits and exclusions read.

``data.split.method`` chooses how utterances are assigned; ``prepare`` assigns only the
utterances it could use (audio and text both fine), so the sizes asked for are the sizes made:

- ``hash``: ``val_size`` and ``test_size`` ids chosen by a stable hash of each id (the rest
  train); an id's split depends on the id and the set of usable ids, never on file order.
  Sizes left null scale with the corpus (``auto``): LJSpeech gets 100 / 500, a 385-clip
  sample 19 / 38, and a corpus of three clips one of each.
- ``standard``: LJSpeech-1.1's common 12,500 / 100 / 500 split. The 100 val and 500 test ids
  ship with neurotts (``ljspeech_split.txt``); every other id trains. On a corpus holding only
  part of LJSpeech the listed ids it has keep their split (a note says how many); one holding
  none of the val or none of the test ids is an error.
- ``lists``: the user's own id-list files; an id in none of them is not used.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from neurotts.config import ConfigError
from neurotts.data.config import SPLIT_METHODS, SplitConfig

STANDARD_SPLIT_FILE = Path(__file__).with_name("ljspeech_split.txt")
METHODS = SPLIT_METHODS  # the schema's choices for data.split.method


def read_id_list(path: str | Path, option: str) -> dict[str, int]:
    """Ids of an id-list file, each mapped to its line number.

    One id a line; ``#`` starts a comment, blank lines are skipped. A line holding more than
    one word (a pasted table, say) is an error naming the file and line.
    """
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{option}={path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{option}={path}: cannot read ({exc})") from None
    ids: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if len(words) > 1:
            raise ConfigError(f"{p}:{lineno}: expected one id per line, found {line.strip()!r}")
        if words:
            ids.setdefault(words[0], lineno)
    return ids


@lru_cache(maxsize=1)
def standard_split() -> dict[str, str]:
    """LJSpeech-1.1's standard val and test ids, id -> "val" | "test" (train: all others)."""
    out: dict[str, str] = {}
    for line in STANDARD_SPLIT_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        split, chapter, *clips = line.split()  # "val LJ001 0110 0234"
        out.update({f"{chapter}-{clip}": split for clip in clips})
    return out


def check_split_config(cfg: SplitConfig) -> None:
    """Problems visible before any data is read: one line each, naming the option."""
    if cfg.method not in METHODS:
        raise ConfigError(f"data.split.method={cfg.method!r}: choose one of {', '.join(METHODS)}")
    for name in ("val_size", "test_size"):
        value = getattr(cfg, name)
        if value is not None and cfg.method != "hash":
            raise ConfigError(f"data.split.{name}={value} applies to method=hash only "
                              f"(method={cfg.method} takes its sizes from its lists)")
        if value is not None and value < 0:
            raise ConfigError(f"data.split.{name}={value}: must be >= 0 (or null to scale)")
    for name in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(cfg.auto, name) < 1:
            raise ConfigError(f"data.split.auto.{name} must be in [0, 1)")
    if cfg.method == "lists":
        if all(getattr(cfg, f"{s}_list") is None for s in ("train", "val", "test")):
            raise ConfigError("data.split.method=lists needs data.split.train_list (and val_list, test_list)")
        for split in ("train", "val", "test"):
            path = getattr(cfg, f"{split}_list")
            if path is not None and not Path(path).expanduser().is_file():
                raise ConfigError(f"data.split.{split}_list={path}: no such file")


def split_sizes(n: int, cfg: SplitConfig, of: str = "usable utterances") -> tuple[int, int]:
    """(val, test) sizes for ``n`` usable utterances under method=hash.

    Explicit sizes are taken as asked, and are an error when they leave nothing to train on;
    null sizes scale with ``n`` (see the module docstring) and give way to explicit ones.
    ``of`` names what ``n`` counts, for the error.
    """
    if cfg.val_size is not None and cfg.test_size is not None:
        val, test = cfg.val_size, cfg.test_size
    else:
        room = max(n - 1 - (cfg.val_size or 0) - (cfg.test_size or 0), 0)  # keep one to train
        auto_val = min(cfg.auto.val_max, int(n * cfg.auto.val_fraction))
        auto_test = min(cfg.auto.test_max, int(n * cfg.auto.test_fraction))
        val = cfg.val_size if cfg.val_size is not None else min(max(auto_val, 1), room)
        room -= val if cfg.val_size is None else 0
        test = cfg.test_size if cfg.test_size is not None else min(max(auto_test, 1), room)
    if val + test >= n:
        asked = " + ".join(f"{name} {size}" if size is not None else
                           f"{name} unset, scaled to {auto}"
                           for name, size, auto in (("val", cfg.val_size, val),
                                                    ("test", cfg.test_size, test)))
        raise ConfigError(
            f"data.split sizes ({asked}) leave no training data from {n} {of}; lower "
            "data.split.val_size / data.split.test_size, or set them to null to scale with the "
            "corpus"
        )
    return val, test


def _by_hash(ids: list[str], cfg: SplitConfig) -> dict[str, str]:
    val, test = split_sizes(len(ids), cfg)
    # Rank by a hash of the id alone, so an id's split never depends on file order.
    ranked = sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
    out = {i: "test" for i in ranked[:test]}
    out.update({i: "val" for i in ranked[test : test + val]})
    out.update({i: "train" for i in ranked[test + val :]})
    return out


def _standard(ids: list[str]) -> dict[str, str]:
    listed = standard_split()
    out = {i: listed.get(i, "train") for i in ids}
    for split in ("val", "test"):
        if split not in out.values():
            total = sum(s == split for s in listed.values())
            raise ConfigError(
                f"data.split.method=standard: none of LJSpeech-1.1's {total} standard {split} ids "
                f"is among the {len(ids)} usable utterances; the standard split is for LJSpeech "
                "itself (use data.split.method=hash for other corpora)"
            )
    return out


def listed_ids(cfg: SplitConfig) -> dict[str, str]:
    """method=lists: id -> split from the list files (the first list naming an id wins)."""
    mapping: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = getattr(cfg, f"{split}_list")
        if path is not None:
            for uid in read_id_list(path, f"data.split.{split}_list"):
                mapping.setdefault(uid, split)
    return mapping


def assign_splits(ids: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Map each id to train/val/test by ``cfg.method``; under ``lists`` unlisted ids are absent."""
    check_split_config(cfg)
    if cfg.method == "hash":
        return _by_hash(ids, cfg)
    if cfg.method == "standard":
        return _standard(ids)
    mapping = listed_ids(cfg)
    return {i: mapping[i] for i in ids if i in mapping}


def split_note(splits: dict[str, str], cfg: SplitConfig) -> str | None:
    """One line for the summary when the split is not plainly what the user asked for."""
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    if cfg.method == "hash" and (cfg.val_size is None or cfg.test_size is None):
        return (f"split sizes scaled to {len(splits)} usable utterances: val {counts['val']}, "
                f"test {counts['test']} (set data.split.val_size / test_size to choose)")
    if cfg.method == "standard":
        listed = standard_split()
        want = {s: sum(v == s for v in listed.values()) for s in ("val", "test")}
        if counts["val"] < want["val"] or counts["test"] < want["test"]:
            return (f"standard split: {counts['val']} of its {want['val']} val and "
                    f"{counts['test']} of its {want['test']} test ids are in this corpus "
                    "(the others are missing or rejected); every other utterance trains")
    return None
