"""The package's import rules, read from the source (no import runs): the layering the code relies on.

* no import circle between rekko's modules, counting imports inside functions (a lazy import hides a
  circle, it does not remove it);
* ``rekko.pipeline`` (the stages) imports none of the engines' orchestration, the evaluation, the
  tuner or the orchestrator: ``rekko.build`` sits above both engines and the tuner;
* ``rekko.tuning`` imports neither the evaluation nor the orchestrator;
* no private name (``_x``) is imported from another package;
* an import inside a function names another rekko module only in the command-line layer, which keeps
  ``rekko --help`` from importing the whole library.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rekko"
#: modules that parse arguments and load the library on demand (start-up time): lazy rekko imports allowed
CLI_LAYER = ("rekko.cli", "rekko.cli_args", "rekko.demo", "rekko.build", "rekko.__main__", "rekko.serve")
#: lazy imports of rekko modules outside that layer, each for an optional or heavy dependency, with its reason
LAZY_ALLOWED = {
    ("rekko.enrich.settings", "rekko.enrich.transport"): "requests, only when an API URL is configured",
    ("rekko", "rekko.api"): "the public API behind `import rekko`, loaded on first use (no pandas at import)",
}
FORBIDDEN = {
    "rekko.pipeline": ("rekko.distributed", "rekko.evaluation", "rekko.tuning", "rekko.build"),
    "rekko.tuning": ("rekko.evaluation", "rekko.build", "rekko.distributed"),
    "rekko.recommend": ("rekko.pipeline", "rekko.evaluation", "rekko.tuning", "rekko.build"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports() -> list[tuple[str, str, str | None, bool, int]]:
    """(importer, imported module, imported name or None, inside a function, line) for every rekko import."""
    found = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                     for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                pairs = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                pairs = [(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module, a.name)
                         for a in node.names]
            else:
                continue
            for target, name in pairs:
                if target.split(".")[0] != "rekko":
                    continue
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                found.append((mod, target, name, id(node) in functions, node.lineno))
    return found


IMPORTS = _imports()


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, target, _, _, _ in IMPORTS:
        # a package's __init__ importing its own modules is how a package exposes them, not a circle
        if target != mod and not _in(target, mod):
            graph[mod].add(target)
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                circles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(MODULES):
        if v not in state:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_layers_import_only_downwards() -> None:
    bad = [f"{mod}:{line} imports {target}" for mod, target, _, _, line in IMPORTS
           for layer, banned in FORBIDDEN.items() if _in(mod, layer) and any(_in(target, b) for b in banned)]
    assert not bad, bad


def test_no_private_name_crosses_a_package() -> None:
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    bad = [f"{mod}:{line} imports {target}.{name}" for mod, target, name, _, line in IMPORTS
           if name and name.startswith("_") and not name.startswith("__") and package(mod) != package(target)]
    assert not bad, bad


def test_lazy_rekko_imports_only_in_the_command_line_layer() -> None:
    bad = [f"{mod}:{line} imports {target} inside a function" for mod, target, _, inside, line in IMPORTS
           if inside and not any(_in(mod, c) or mod.endswith(".cli") for c in CLI_LAYER)
           and (mod, target) not in LAZY_ALLOWED]
    assert not bad, bad


def test_the_checks_see_what_they_check() -> None:
    """The scan finds the imports it judges (a broken parser would pass every rule above)."""
    assert ("rekko.build", "rekko.tuning.auto", None, False) in {(m, t, None, i) for m, t, _, i, _ in IMPORTS}
    assert any(m == "rekko.cli" and i for m, _, _, i, _ in IMPORTS)
    assert len(MODULES) > 60
