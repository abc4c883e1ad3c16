"""The house's shape, checked from the source: every floor of `score` imports only its own floor and the floors
below it, no import cycle, and no library function longer than 60 lines or taking more than 6 parameters (unless
its docstring says why, in a line starting "Parameters:"; a CLI command's parameters are its options)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "score"

# Lowest first. A module belongs to the floor of the longest prefix that names it.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "rules: pure functions and plain data",
        (
            "score.config",
            "score.rewards",
            "score.scale",
            "score.intervals",
            "score.corrupt",
            "score.rubrics",
            "score.progress",
            "score.harness",
            "score.rl",
            "score.checkpoints",
        ),
    ),
    ("store: schemas, layout, manifests, the store, the lease; the stage contracts", ("score.store", "score.pipeline")),
    (
        "engines: models, search, prompts, queries, trackers, the trainer and its memory plan",
        (
            "score.models",
            "score.search",
            "score.prompts",
            "score.queries",
            "score.datasets",
            "score.tracking",
            "score.trainer",
            "score.memory_plan",
            "score.serve",
            "score.agent",
            "score.controller",
            "score.evaluator.claims",
        ),
    ),
    (
        "workspace: one run's config, store and engines; what a round reads from earlier ones; the runner",
        (
            "score.workspace",
            "score.history",
            "score.runner",
        ),
    ),
    (
        "roles: the solver and the evaluator as libraries; gold measures",
        ("score.solver", "score.evaluator", "score.gold"),
    ),
    ("stages: thin shells over the roles", ("score.stages",)),
    (
        "applications: eval, judge, report, inspect, the CLI",
        (
            "score.benchmark",
            "score.judging",
            "score.report",
            "score.inspection",
            "score.cli",
        ),
    ),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _floor(module: str) -> int:
    best = max(
        (
            (len(prefix), i)
            for i, (_, prefixes) in enumerate(FLOORS)
            for prefix in prefixes
            if module == prefix or module.startswith(prefix + ".")
        ),
        default=None,
    )
    if best is None:
        raise AssertionError(f"{module} has no floor: add it to FLOORS in tests/test_structure.py")
    return best[1]


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported score module, line, runtime) for every import in the file, in functions and type-only blocks too."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block)
        for n in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.append((target, node.lineno, id(node) not in type_only))
    return out


def test_every_floor_imports_only_itself_and_below():
    modules = _modules()
    upward = [
        f"{name}:{line} imports {target} ({FLOORS[_floor(target)][0].split(':')[0]} above "
        f"{FLOORS[_floor(name)][0].split(':')[0]})"
        for name, path in modules.items()
        for target, line, _ in _imports(name, path, modules)
        if _floor(target) > _floor(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t, _, runtime in _imports(name, path, modules) if runtime} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def _functions():
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT.parent), node


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return names + [f"*{v.arg}" for v in (a.vararg, a.kwarg) if v is not None]


def _is_cli_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command" for d in fn.decorator_list)


def test_functions_are_short_and_take_few_parameters():
    long = [
        f"{p}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for p, fn in _functions()
        if fn.end_lineno - fn.lineno + 1 > 60
    ]
    many = [
        f"{p}:{fn.lineno} {fn.name} ({len(_parameters(fn))} parameters)"
        for p, fn in _functions()
        if len(_parameters(fn)) > 6
        and not _is_cli_command(fn)
        and not any(line.strip().startswith("Parameters:") for line in (ast.get_docstring(fn) or "").splitlines())
    ]
    assert not long + many, "\n".join(long + many)
