"""Starting a run from a trained model's weights (``init_from=RUN|CKPT``): fine-tuning.

At step 0 of a run (never when it resumes: its own checkpoints win), the base checkpoint is
read and checked before any work: the same model kind, the same audio settings and mel
normalisation switch (a model trained on other features would learn them anew, not be
fine-tuned). Then, tensor by tensor of the new model's state dict:

``loaded``   the base has a tensor of that name and shape: copied.
``mapped``   the symbol embedding: row by row by symbol (:mod:`neurotts.text.symbol_map`),
             so a changed symbol table keeps what the base knows of the shared symbols.
``new``      the base has no tensor of that name (e.g. a layer the new config adds, a speaker
             embedding): keeps its fresh initialisation.
``skipped``  a base tensor not used: its name is not in the new model, or its shape differs
             (another layer size); the new model's tensor keeps its fresh initialisation.

The base's EMA weights are used when it kept them (they are what it synthesises with). The
optimizer, schedule and step start fresh. What happened is printed as a table, written to
``init_from.tsv`` in the run folder (one row per tensor and per mapped symbol) and kept in
every checkpoint of the run (``init_from``, see :mod:`neurotts.checkpoint`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from rich.text import Text
from torch import nn

from neurotts import checkpoint as ckpt
from neurotts.checkpoint import Key
from neurotts.config import to_dict
from neurotts.data.store import FeatureStore
from neurotts.models.registry import entry
from neurotts.text.symbol_map import SymbolMap, map_embedding, map_symbols
from neurotts.training.datacheck import DataCheck, check_finetune_data
from neurotts.training.errors import FineTuneError

# The audio settings that decide what a mel frame means; the rest (trimming, the longest
# clip kept) only decides which stretches of audio there are.
FEATURE_KEYS = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax",
                "log_floor")
STATUSES = ("loaded", "mapped", "new", "skipped")
TSV_NAME = "init_from.tsv"
NOT_IN_NEW = "not in new model"


@dataclass
class TensorRow:
    name: str
    shape: tuple[int, ...]  # in the new model (in the base for a skipped base tensor)
    status: str  # one of STATUSES
    reason: str


@dataclass
class InitReport:
    """What a run took from its base checkpoint."""

    base: Path
    base_step: int
    weights: str  # "ema" | "model": which of the base's weights were used
    rows: list[TensorRow] = field(default_factory=list)
    symbols: SymbolMap | None = None
    data: DataCheck | None = None

    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.rows)

    def values(self, status: str) -> int:
        """Tensor elements of the new model with ``status`` (skipped base tensors excluded)."""
        return sum(_numel(r.shape) for r in self.rows if r.status == status
                   and r.reason != NOT_IN_NEW)

    def summary(self) -> dict[str, Any]:
        """Plain data for the checkpoint (loadable with ``weights_only=True``)."""
        out: dict[str, Any] = {"base": str(self.base), "base_step": self.base_step,
                               "weights": self.weights, "tensors": dict(self.counts())}
        if self.symbols is not None:
            out["symbols"] = {"rules": dict(self.symbols.counts()),
                              "new": {r.symbol: r.describe() for r in self.symbols.new()},
                              "removed": list(self.symbols.removed)}
        if self.data is not None:
            out["data_check"] = self.data.as_dict()
        return out

    def tsv(self) -> str:
        lines = ["kind\tname\tshape\tstatus\treason"]
        lines += [f"tensor\t{r.name}\t{'x'.join(map(str, r.shape))}\t{r.status}\t{r.reason}"
                  for r in self.rows]
        if self.symbols is not None:
            lines += [f"symbol\t{r.symbol!r}\t\t{r.rule}\t{r.describe()}" for r in self.symbols.rows]
            lines += [f"symbol\t{s!r}\t\tremoved\tnot in the new symbol table"
                      for s in self.symbols.removed]
        return "\n".join(lines) + "\n"

    def table(self) -> Table:
        """One row per (status, reason): how many tensors and values, a few names."""
        table = Table(title=Text(f"init_from {self.base} (step {self.base_step}, "
                                 f"{self.weights} weights)"), title_justify="left")
        for column in ("status", "tensors", "values", "reason", "e.g."):
            table.add_column(column, justify="right" if column in ("tensors", "values") else "left")
        groups: dict[tuple[str, str], list[TensorRow]] = {}
        for row in self.rows:
            groups.setdefault((row.status, _reason_kind(row.reason)), []).append(row)
        for (status, reason), rows in sorted(groups.items(), key=lambda g: STATUSES.index(g[0][0])):
            names = ", ".join(r.name for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
            table.add_row(status, str(len(rows)), f"{sum(_numel(r.shape) for r in rows):,}",
                          Text(reason), Text(names))
        for status in STATUSES:  # a status no tensor has still gets its line: "new 0"
            if not any(s == status for s, _ in groups):
                table.add_row(status, "0", "0", "", "")
        return table

    def lines(self) -> list[str]:
        """Plain lines under the table: the symbol mapping."""
        if self.symbols is None:
            return []
        counts = self.symbols.counts()
        out = [f"symbols: {len(self.symbols.rows)} in the new table: "
               + ", ".join(f"{counts[rule]} {rule}" for rule in counts)
               + f"; {len(self.symbols.removed)} base symbols not in it"]
        new = self.symbols.new()
        if new:
            shown = ", ".join(f"{r.symbol!r}<-{r.describe()}" for r in new[:12])
            out.append(f"new symbols start from: {shown}{', ...' if len(new) > 12 else ''} "
                       f"(all in {TSV_NAME})")
        if self.symbols.removed:
            out.append(f"base symbols not in the new table: {_listed(self.symbols.removed)}")
        return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _reason_kind(reason: str) -> str:
    """The reason without its per-tensor shapes, to group rows by."""
    return reason.split(":")[0]


def _listed(symbols: Any, limit: int = 20) -> str:
    items = [repr(s) for s in symbols]
    return " ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


# ------------------------------------------------------------------------------ base checks


def load_base(spec: str) -> tuple[Path, dict[str, Any]]:
    """The base checkpoint: a file, or a run folder resolved as synthesis resolves it."""
    try:
        path = ckpt.resolve_checkpoint(spec)
        return path, ckpt.load_checkpoint(path)
    except ckpt.CheckpointError as exc:
        raise FineTuneError(f"init_from={spec}: {exc}") from None


def check_base(path: Path, base: dict[str, Any], kind: str, store: FeatureStore,
               normalize_mels: bool) -> None:
    """Refuse a base of another model kind or trained on other features, in one line."""
    if base[Key.MODEL_NAME] != kind:
        raise FineTuneError(f"init_from={path}: a {base[Key.MODEL_NAME]} checkpoint, but this run "
                            f"trains model={kind}; give a {kind} run or checkpoint")
    mine, theirs = to_dict(store.audio), base[Key.AUDIO]
    differ = [f"{k} {theirs.get(k)} vs {mine.get(k)}" for k in FEATURE_KEYS
              if theirs.get(k) != mine.get(k)]
    base_norm = bool(base[Key.MEL_NORM]["enabled"])
    if base_norm != normalize_mels:
        differ.append(f"data.normalize_mels {str(base_norm).lower()} vs {str(normalize_mels).lower()}")
    if differ:
        raise FineTuneError(f"init_from={path}: audio settings differ between the base and "
                            f"{store.root} (base vs new: {', '.join(differ)}); prepare the new "
                            "corpus with the base's audio settings")


# ------------------------------------------------------------------------------ transfer


@torch.no_grad()
def transfer(model: nn.Module, base_state: dict[str, torch.Tensor], base_symbols: list[str],
             new_symbols: list[str], embedding_key: str | None) -> tuple[list[TensorRow],
                                                                         SymbolMap | None]:
    """Copy what fits from ``base_state`` into ``model`` (in place) and say what happened to
    each tensor; the symbol embedding (``embedding_key``) is mapped by symbol."""
    own = model.state_dict()
    rows, symbols = [], None
    for name, tensor in own.items():
        shape = tuple(tensor.shape)
        if name == embedding_key and name in base_state and base_state[name].shape[1:] == tensor.shape[1:]:
            symbols = map_symbols(base_symbols, new_symbols)
            tensor.copy_(map_embedding(base_state[name].float(), base_symbols, symbols))
            counts = symbols.counts()
            rows.append(TensorRow(name, shape, "mapped", f"by symbol: {counts['shared']} shared, "
                                  f"{len(new_symbols) - counts['shared']} new, "
                                  f"{len(symbols.removed)} removed"))
        elif name not in base_state:
            rows.append(TensorRow(name, shape, "new", "not in base: keeps its fresh init"))
        elif tuple(base_state[name].shape) != shape:
            rows.append(TensorRow(name, shape, "skipped", "shape differs: base "
                                  f"{tuple(base_state[name].shape)} vs new {shape}; keeps its fresh init"))
        else:
            tensor.copy_(base_state[name])
            rows.append(TensorRow(name, shape, "loaded", "same name and shape"))
    rows += [TensorRow(name, tuple(t.shape), "skipped", NOT_IN_NEW)
             for name, t in base_state.items() if name not in own]
    return rows, symbols


def initialise(init_from: str, model: nn.Module, kind: str, store: FeatureStore,
               normalize_mels: bool) -> InitReport:
    """Check the base named by ``init_from`` and load it into ``model`` (in place), with the
    data check of the new corpus."""
    path, base = load_base(init_from)
    check_base(path, base, kind, store, normalize_mels)
    use_ema = base.get(Key.EMA) is not None
    state = base[Key.EMA] if use_ema else base[Key.MODEL]
    base_symbols = list(base[Key.SYMBOLS])
    embedding = entry(kind).symbol_embedding
    rows, symbols = transfer(model, state, base_symbols, list(store.symbols), embedding)
    report = InitReport(path, int(base[Key.STEP]), "ema" if use_ema else "model", rows, symbols)
    report.data = check_finetune_data(store, base_symbols, base[Key.AUDIO],
                                      uses_symbols=embedding is not None)
    return report


def few_loaded_warning(report: InitReport) -> list[str]:
    """A warning when most of the new model did not come from the base (another model size:
    the experiment or model.* differs from the base's)."""
    loaded = report.values("loaded") + report.values("mapped")
    total = loaded + report.values("new") + report.values("skipped")
    if total == 0 or loaded / total >= 0.5:
        return []
    return [f"warning: only {loaded / total:.0%} of this model's values came from the base; "
            "most tensors differ in shape or name: use the base's model settings (experiment, "
            "model.*) to fine-tune it"]


def write_report(run_dir: Path, report: InitReport) -> Path:
    from neurotts.files import atomic_write_text

    path = run_dir / TSV_NAME
    atomic_write_text(path, report.tsv())
    if report.data is not None:
        atomic_write_text(run_dir / "data_check.txt", "\n".join(report.data.lines()) + "\n")
    return path
