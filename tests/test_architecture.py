"""The package's architecture, read from its source: no import cycles, and the layers that
ARCHITECTURE.md states.

Every module of ``simplenet_edu`` is parsed with :mod:`ast` (nothing is imported). An import counts
wherever it stands, at module level or inside a function; ``from . import x`` counts as importing the
submodule ``x`` when there is one, else the package itself; relative imports are resolved. The
registry's table of models (``core/registry.py``, ``MODELS``) names the modules it imports on first
use, so those count as its imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "simplenet_edu"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

# Bottom to top, as ARCHITECTURE.md draws them: a module imports its own layer and the layers below.
LAYERS = ("utils", "stages", "data", "evaluation", "core", "simplenet", "supersimplenet", "deploy", "course",
          "apps")
ENTRY_POINT = "__main__"             # `python -m simplenet_edu`: the command line, so part of apps
REGISTRY = "core.registry"           # the one upward reference: it names the models it loads
TORCH = {"torch", "torchvision", "timm"}
TORCH_FREE = ("deploy.runtime", "deploy.heatmaps")


# ------------------------------------------------------------------ reading the package


def module_files(root: Path = SOURCE) -> dict[str, Path]:
    """``{"core.fitted": path, "core": path of core/__init__.py, "": path of the package's __init__}``."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _in_function(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def read_imports(name: str, path: Path, modules: set[str]) -> tuple[dict[str, bool], set[str]]:
    """What module ``name`` imports: ``({internal module: at module level?}, {external top-level names})``.

    An internal target is the longest known module its dotted name starts with (``from ..data import
    x`` imports the package ``data`` unless ``data.x`` is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    internal: dict[str, bool] = {}
    external: set[str] = set()

    def add(dotted: str, top: bool) -> None:
        if dotted != PACKAGE and not dotted.startswith(PACKAGE + "."):
            external.add(dotted.split(".")[0])
            return
        parts = dotted.split(".")[1:]
        while ".".join(parts) not in modules:
            parts.pop()
        target = ".".join(parts)
        internal[target] = internal.get(target, False) or top

    for node in ast.walk(tree):
        top = not _in_function(node, parents)
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = [PACKAGE, *filter(None, package.split("."))]
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                is_module = submodule.startswith(PACKAGE + ".") and submodule[len(PACKAGE) + 1:] in modules
                add(submodule if is_module else base, top)
    internal.pop(name, None)
    return internal, external


def registry_models(path: Path) -> set[str]:
    """The modules that ``MODELS`` in ``core/registry.py`` names (``"simplenet.model:SimpleNet"``...)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "MODELS" for t in targets):
            table = ast.literal_eval(node.value)
            return {entry.split(":")[0] for pair in table.values() for entry in pair}
    raise AssertionError("core/registry.py has no MODELS table")


class Package:
    """The import graph of the package: ``edges[a]`` = ``{b: at module level?}``, ``external[a]``."""

    def __init__(self, root: Path = SOURCE):
        self.files = module_files(root)
        self.edges, self.external = {}, {}
        for name, path in self.files.items():
            self.edges[name], self.external[name] = read_imports(name, path, set(self.files))
        for target in registry_models(self.files[REGISTRY]):
            assert target in self.files, f"MODELS names {target}, which is no module"
            self.edges[REGISTRY].setdefault(target, False)

    def graph(self) -> dict[str, set[str]]:
        return {name: set(targets) for name, targets in self.edges.items()}


@pytest.fixture(scope="module")
def package() -> Package:
    return Package()


def label(name: str) -> str:
    return name or PACKAGE


# ------------------------------------------------------------------ cycles


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected group of modules that import each other
    (Tarjan's algorithm, iterative); empty when the graph has no cycle."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    groups.append(group)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first member of ``group`` (breadth-first inside the group)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    return paths[node] + [start]
                if child in group and child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"{group} is not a cycle")


def test_the_cycle_finder_finds_and_names_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"x": {"x"}, "y": set()}) == [["x", "x"]]
    # Two separate cycles, each named once; the shortest way round is the one reported.
    found = find_cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"a"}, "p": {"q"}, "q": {"p"}})
    assert sorted(found) == [["a", "b", "a"], ["p", "q", "p"]]


def test_the_import_reader_resolves_relative_and_function_level_imports(tmp_path):
    root = tmp_path / PACKAGE
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "leaf.py").write_text("import os\n")
    (root / "sub" / "__init__.py").write_text("from .. import leaf\n")
    (root / "sub" / "mod.py").write_text(
        "import torch\nfrom . import helper_name\n\ndef f():\n    from ..leaf import g\n    import numpy\n")
    modules = set(module_files(root))
    assert modules == {"", "leaf", "sub", "sub.mod"}
    assert read_imports("sub", root / "sub" / "__init__.py", modules) == ({"leaf": True}, set())
    # `from . import helper_name` (no such module) imports the package sub; the function's import counts.
    assert read_imports("sub.mod", root / "sub" / "mod.py", modules) == \
        ({"sub": True, "leaf": False}, {"torch", "numpy"})


def test_the_package_has_no_import_cycle(package):
    cycles = [" -> ".join(map(label, cycle)) for cycle in find_cycles(package.graph())]
    assert not cycles, "import cycles: " + "; ".join(cycles)


# ------------------------------------------------------------------ layers


def layer_of(name: str) -> str | None:
    """The layer (top folder) of a module; ``None`` for the package's own ``__init__``."""
    if name == ENTRY_POINT:
        return "apps"
    return name.split(".")[0] or None


def test_every_folder_of_the_package_is_a_layer(package):
    folders = {layer_of(name) for name in package.files} - {None}
    assert folders == set(LAYERS)


def test_layers_import_only_their_own_layer_and_those_below(package):
    wrong = []
    for name, targets in package.edges.items():
        layer = layer_of(name)
        for target in targets:
            if name == REGISTRY and target in registry_models(package.files[REGISTRY]):
                continue
            if target == "":
                # The package's own __init__ (for __version__): it loads nothing but utils at import.
                continue
            if layer is not None and LAYERS.index(layer_of(target)) > LAYERS.index(layer):
                wrong.append(f"{label(name)} -> {label(target)}")
    assert not wrong, "imports of a higher layer: " + ", ".join(sorted(wrong))


def test_utils_imports_nothing_of_the_package(package):
    wrong = [f"{name} -> {label(target)}" for name, targets in package.edges.items() if layer_of(name) == "utils"
             for target in targets if layer_of(target) != "utils"]
    assert not wrong


def test_nothing_outside_apps_imports_apps(package):
    wrong = [f"{label(name)} -> {target}" for name, targets in package.edges.items() if layer_of(name) != "apps"
             for target in targets if layer_of(target) == "apps"]
    assert not wrong


def test_the_library_below_course_does_not_import_course(package):
    below = set(LAYERS[:LAYERS.index("course")]) | {None}
    wrong = [f"{label(name)} -> {target}" for name, targets in package.edges.items() if layer_of(name) in below
             for target in targets if layer_of(target) == "course"]
    assert not wrong


def test_the_package_itself_loads_only_utils_when_imported(package):
    # `import simplenet_edu` must stay light: the models load on first use (__getattr__).
    at_import = {target for target, top in package.edges[""].items() if top}
    assert {layer_of(target) for target in at_import} <= {"utils"}


def loaded_by(package: Package, start: str) -> set[str]:
    """Every module of the package that importing ``start`` and calling it may load: its imports
    wherever they stand, theirs, and so on; plus each loaded module's parent packages, which Python
    runs first (their module-level imports only: their functions are not called on the way)."""
    seen, todo = set(), [(start, False)]
    while todo:
        name, parent_only = todo.pop()
        if (name, parent_only) in seen or (name, False) in seen:
            continue
        seen.add((name, parent_only))
        todo += [(target, parent_only) for target, top in package.edges[name].items() if top or not parent_only]
        parts = name.split(".")
        todo += [(".".join(parts[:i]), True) for i in range(len(parts)) if name]
    return {name for name, _ in seen}


def test_the_torch_free_inference_path_loads_no_torch(package):
    for start in TORCH_FREE:
        modules = loaded_by(package, start)
        assert start in modules and "" in modules            # the package's __init__ runs first
        heavy = {f"{label(name)} imports {', '.join(sorted(package.external[name] & TORCH))}"
                 for name in modules if package.external[name] & TORCH}
        assert not heavy, f"{start} loads torch: " + "; ".join(sorted(heavy))


def test_loaded_by_follows_function_level_imports_but_not_a_parents_functions():
    fake = Package.__new__(Package)
    fake.edges = {"": {"heavy": False, "leaf": True}, "leaf": {}, "heavy": {},
                  "deploy": {}, "deploy.runtime": {"leaf": False}}
    assert loaded_by(fake, "deploy.runtime") == {"deploy.runtime", "deploy", "", "leaf"}
    fake.edges["deploy.runtime"] = {"heavy": False}
    assert "heavy" in loaded_by(fake, "deploy.runtime")
