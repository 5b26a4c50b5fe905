"""The import graph the README's ARCHITECTURE section promises, read from the source (every import, also
the ones inside functions): no cycles, trainers independent of the orchestrator, each heavy dependency behind
the module (or package) whose job it is, and the core never reaching up into stages or the entry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "trainers")

OWNERS = {
    "ray": ("orchestrator.runner", "orchestrator.runner."),
    "mlflow": ("orchestrator.tracking",),
    "sqlalchemy": ("orchestrator.tracking",),
    "optuna": ("orchestrator.search.",),
    "matplotlib": ("orchestrator.report.figures", "orchestrator.report.figures."),
    "hydra": ("orchestrator.cli",),
    "omegaconf": ("orchestrator.cli",),
    "tokenizers": ("orchestrator.prepare.tokenizer",),
}
"""Heavy dependency -> the module, or package prefix ending in '.', allowed to import it."""

ENTRY = ("orchestrator.cli", "orchestrator.commands", "orchestrator.__main__")
CORE = ("orchestrator.config", "orchestrator.errors", "orchestrator.planner", "orchestrator.hparams",
        "orchestrator.shape_rule", "orchestrator.fitting", "orchestrator.fitting.", "orchestrator.prepare.options",
        "orchestrator.compare.options", "orchestrator.pilot.options", "orchestrator.search.options",
        "orchestrator.cluster_options", "orchestrator.tracking_options",
        "trainers", "trainers.")
"""Pure layers: configs, accounting, planning rules, fitting maths, the trainers."""
CORE_EXCEPT = ("orchestrator.fitting.run",)
"""The fit stage lives beside the maths it drives (orchestrator/fitting/run.py)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, name: str, modules: dict[str, Path] | None = None) -> set[str]:
    """Every module `path` imports, at module level or inside a function, resolved to absolute names.
    `from package import submodule` counts the submodule, not the package's __init__."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = {f"{base}.{alias.name}" for alias in node.names}
            out.update(names)
            if modules is None or not names <= modules.keys():
                out.add(base)
    return out


def project_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path, name, modules) if m in modules and m != name}
    return graph


def in_group(name: str, group: tuple[str, ...]) -> bool:
    return any(name == g or (g.endswith(".") and name.startswith(g)) for g in group)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None (iterative DFS, colours)."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return [*path[path.index(child):], child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_graph_is_read_from_the_source():
    graph = project_graph()
    assert len(graph) > 40
    assert "orchestrator.tracking" in graph["orchestrator.runner"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(project_graph()) is None


def test_trainers_import_nothing_from_the_orchestrator():
    bad = sorted(f"{m} -> {d}" for m, deps in project_graph().items() if m.startswith("trainers")
                 for d in deps if d.startswith("orchestrator"))
    assert bad == []


@pytest.mark.parametrize("dependency", sorted(OWNERS))
def test_heavy_dependencies_live_behind_their_owner(dependency):
    importers = sorted(name for name, path in project_modules().items()
                       if any(m == dependency or m.startswith(dependency + ".") for m in imports_of(path, name)))
    assert importers, f"nothing imports {dependency}: update OWNERS"
    assert [m for m in importers if not in_group(m, OWNERS[dependency])] == []


def test_the_core_does_not_reach_up():
    bad = sorted(f"{m} -> {d}" for m, deps in project_graph().items()
                 if in_group(m, CORE) and not in_group(m, CORE_EXCEPT)
                 for d in deps if not in_group(d, CORE))
    assert bad == []


def test_only_the_entry_imports_the_entry():
    bad = sorted(f"{m} -> {d}" for m, deps in project_graph().items() if not in_group(m, ENTRY)
                 for d in deps if in_group(d, ENTRY))
    assert bad == []


def test_only_the_store_gateway_reaches_into_mlflows_client():
    """One gateway to the store (orchestrator/tracking.py): other modules call its Tracker's methods."""
    reach = [name for name, path in project_modules().items()
             if name != "orchestrator.tracking" and ".client." in path.read_text()]
    assert reach == []


REGISTRY = "orchestrator.fitting.methods"
"""The one module that names the fitting methods (fitting/methods.py): every other list of them is read from it."""


def method_names() -> set[str]:
    from orchestrator.fitting import methods  # the registry itself says which names count

    return {m.name for m in methods.REGISTRY}


def literals_naming_methods(path: Path, names: set[str]) -> list[str]:
    """Tuples, lists, sets and dicts (keys) written in `path` whose strings are all method names, two or more: a
    second list of the methods. One name (`registry.get("isoflop")`, `method == "vpnls"`) is not a list, nor is a
    table header that names two methods among its columns."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        items = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(
            node, (ast.Tuple, ast.List, ast.Set)) else []
        strings = [n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        named = [s for s in strings if s in names]
        if len(named) >= 2 and len(named) == len(strings):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {', '.join(named)}")
    return out


def test_one_registry_names_the_methods():
    names = method_names()
    assert {"parametric", "vpnls", "isoflop"} <= names
    found = [hit for name, path in sorted(project_modules().items()) if name != REGISTRY
             for hit in literals_naming_methods(path, names)]
    assert found == [], "method names listed outside fitting/methods.py:\n" + "\n".join(found)


RESULT = "orchestrator.fitting.result"
"""The one module that knows fit.json's keys (fitting/result.py): every other reader takes the FitResult."""
GOLDEN_FIT = ROOT / "tests" / "fitting" / "golden" / "fit.json"
SHARED_KEYS = {
    "status", "reason",  # every outcome record: hold-out entries, law forms, the floor check, runs, MLflow runs
    "name", "source", "seconds", "warnings", "checks", "trustworthy", "provenance", "n_runs", "budgets",
    # ^ compare.json's own keys (its sweeps, its provenance) and the compute model's JSON ("source")
    "E", "A", "B", "alpha", "beta", "a", "b", "ci",  # parameters in bootstrap intervals, compare.json's laws
    "holdout", "forms", "floor",  # each law form's hold-out, the law-forms mapping's "forms", the floor check's floor
    "n_points",  # the report's exponent rows (report/tables.exponent_rows)
}
"""fit.json keys that are also keys of other dicts the code reads: reading them proves nothing about fit.json."""


def fit_json_keys() -> set[str]:
    """fit.json's top-level keys and every method entry's keys, as the golden fit writes them; the method names
    themselves key every by-method mapping (FitResult.methods, the hold-out's methods) and have their own test."""
    golden = json.loads(GOLDEN_FIT.read_text())
    keys = set(golden) | {k for m in golden["method_order"] for k in golden[m]}
    return keys - set(golden["method_order"]) - SHARED_KEYS


def key_lookups(path: Path, keys: set[str]) -> list[str]:
    """`x["key"]` (read, not written) and `x.get("key", ...)` in `path` for any of `keys`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        if isinstance(key, str) and key in keys:
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {key!r}")
    return out


def test_only_the_result_module_indexes_fit_json():
    keys = fit_json_keys()
    assert {"method_order", "predictions", "frontier_curve", "headline_method", "profiles"} <= keys
    found = [hit for name, path in sorted(project_modules().items()) if name != RESULT
             for hit in key_lookups(path, keys)]
    assert found == [], "fit.json keys read outside fitting/result.py (take the FitResult):\n" + "\n".join(found)
    planted = ROOT / "tests" / "fitting" / "test_golden.py"  # the scan finds a lookup where there is one
    assert key_lookups(planted, keys), "the scan found no fit.json lookup in a test that reads fit.json"
