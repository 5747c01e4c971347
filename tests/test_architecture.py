"""The structure of the package: inference stands on its own, models know nothing of training
or data, no two modules import each other (directly or around a circle), the config machinery
stands below every domain, and every command has the same shape (a schema and a run function
in its domain's home, named in the CLI's one table)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurotts"


def loaded_after_import(*modules: str) -> set[str]:
    """The neurotts modules in ``sys.modules`` after importing ``modules`` in a fresh
    interpreter (a subprocess, so this test's own imports do not count)."""
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(json.dumps(sorted(m for m in sys.modules if m.startswith('neurotts'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def under(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


def test_inference_does_not_import_training() -> None:
    loaded = loaded_after_import("neurotts.synthesis.run", "neurotts.evaluation.run",
                                 "neurotts.vocoders", "neurotts.checkpoint")
    assert "neurotts.synthesis.engine" in loaded  # the check itself ran
    assert under(loaded, "neurotts.training") == set()


def test_models_import_no_training_data_or_cli() -> None:
    models = sorted(module_name(p) for p in (PACKAGE / "models").rglob("*.py"))
    assert "neurotts.models.registry" in models and len(models) >= 8
    loaded = loaded_after_import(*models)
    for forbidden in ("neurotts.training", "neurotts.data", "neurotts.cli",
                      "neurotts.evaluation", "neurotts.synthesis"):
        assert under(loaded, forbidden) == set(), forbidden


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Edges module -> neurotts module it imports, from every import statement in the file
    (inside functions too: a lazy import still couples the two modules)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                # `from pkg import mod` imports the submodule mod when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for target in targets:
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_import_graph_has_no_cycles() -> None:
    graph = import_graph()
    assert "neurotts.models.registry" in graph["neurotts.checkpoint"]  # the parser sees edges
    assert cycles(graph) == []


def test_cycle_finder_finds_a_lazy_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", ["generate", "steps", "kernel", "fold"])
def test_wavenet_generation_files_stay_small(name: str) -> None:
    lines = (PACKAGE / "models" / "wavenet" / f"{name}.py").read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{name}.py has {lines} lines"


def test_config_machinery_imports_no_domain_module() -> None:
    graph = import_graph()
    assert "neurotts.errors" in graph["neurotts.config"]  # the parser sees its edges
    assert graph["neurotts.config"] == {"neurotts.errors"}
    loaded = loaded_after_import("neurotts.config")
    assert loaded == {"neurotts", "neurotts.config", "neurotts.errors"}


def test_cli_imports_no_domain_module_until_a_command_runs() -> None:
    """The table names schemas and run functions by strings: ``neurotts --help`` stays fast."""
    loaded = loaded_after_import("neurotts.cli")
    assert "neurotts.cli" in loaded
    assert loaded <= {"neurotts", "neurotts.cli", "neurotts.config", "neurotts.errors"}


def test_every_command_has_a_schema_and_a_run_in_its_domain() -> None:
    import typer

    from neurotts.cli import COMMANDS, app, resolve

    registered = {c.name for c in typer.main.get_command(app).commands.values()}
    assert registered == set(COMMANDS)  # one table covers every command
    configs = {p.stem for p in (PACKAGE / "configs").glob("*.yaml")}
    for name, command in COMMANDS.items():
        assert command.config is None or command.config in configs, name
        schema, run = resolve(command.schema), resolve(command.run)
        assert dataclasses.is_dataclass(schema), name
        assert callable(run) and run.__module__ != "neurotts.cli", name
        assert schema.__module__ != "neurotts.cli", name
        assert list(inspect.signature(run).parameters)[:2] == ["cfg", "console"], name


def test_no_two_modules_define_a_class_of_the_same_name() -> None:
    homes: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                homes.setdefault(node.name, []).append(module_name(path))
    assert "FeatureStore" in homes  # the walk saw the package
    assert {n: m for n, m in homes.items() if len(m) > 1} == {}



def test_every_registered_model_has_its_training_task() -> None:
    """One list of models (the registry); each finds its task module by name."""
    from neurotts.models.registry import MODELS
    from neurotts.training.tasks import task_class

    for name in MODELS:
        task = task_class(name)
        assert callable(task) and task.__module__ == f"neurotts.training.{name}_task"
