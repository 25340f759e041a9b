"""The layer order of ``src/lumbar``, and a check that every import follows it.

Bottom to top (a module may import from its own layer and the layers below, never from above):

0. foundation: errors, paths, the registries (backbones, metrics, procedures), the paper's numbers, and
   small pure helpers (selection, split, roi, progress, gpucheck, limits)
1. data and models: DICOM, de-identification, labels, datasets, storage, versions, tracking, services,
   the cluster client, distribution, models
2. training and evaluation: train, evaluate, pretrain, gradcam
3. results: compare, report
4. steps (the adapters the Kubeflow components call)
5. cli (above it, outside the package: components/, pipelines/, launch/)

Every import counts, also those inside functions (``ast`` finds them all), and no module may take part in an
import cycle, whatever the layers. A module missing from :data:`LAYERS` fails the test: place it when adding it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layer of each module (a package entry covers its submodules unless they have their own).
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        ("lumbar", "lumbar.errors", "lumbar.paths", "lumbar.backbones", "lumbar.metrics", "lumbar.procedures",
         "lumbar.paper", "lumbar.selection", "lumbar.split", "lumbar.roi", "lumbar.progress", "lumbar.gpucheck",
         "lumbar.limits", "lumbar.profiles"),
        0,
    ),
    **dict.fromkeys(
        ("lumbar.storage", "lumbar.weights", "lumbar.versions", "lumbar.tracking", "lumbar.dicom", "lumbar.deid",
         "lumbar.labels", "lumbar.dataset_a", "lumbar.dataset_b", "lumbar.dataset_c", "lumbar.data", "lumbar.synth",
         "lumbar.grading", "lumbar.label_server", "lumbar.services", "lumbar.kfp_backend", "lumbar.cluster",
         "lumbar.distribute", "lumbar.models", "lumbar.spider"),
        1,
    ),
    **dict.fromkeys(("lumbar.train", "lumbar.evaluate", "lumbar.pretrain", "lumbar.gradcam", "lumbar.baselines"), 2),
    **dict.fromkeys(("lumbar.compare", "lumbar.report"), 3),
    "lumbar.steps": 4,
    "lumbar.cli": 5,
}  # fmt: skip
LAYER_NAMES = ("foundation", "data and models", "training and evaluation", "results", "steps", "cli")


def module_name(path: Path, root: Path) -> str:
    """``lumbar.cli.train`` for ``<root>/lumbar/cli/train.py``; a package is named by its ``__init__.py``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the file imports anywhere (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")  # ``import lumbar.cli.train``: the longest prefix that is a module of ours
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                found.add(".".join(parts[:end]))
                return

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from lumbar import paper`` imports the module lumbar.paper; ``from lumbar.x import f``, lumbar.x
                submodule = f"{target}.{alias.name}"
                add(submodule if submodule in modules else target)
    found.discard(name)
    return found


def import_graph(root: Path, package: str = "lumbar") -> dict[str, set[str]]:
    """Each module of ``package`` under ``root`` and the package modules it imports."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    return {name: imported_modules(path, name, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(module: str) -> int | None:
    """The layer of a module: its own entry in :data:`LAYERS`, else its package's (``lumbar.cli.train``: cli).

    The top package ``lumbar`` covers no submodule: each module of the core is placed by name.
    """
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    return LAYERS.get(module)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer (layer) -> imported (layer)`` for every import from a lower layer into a higher one."""
    out = []
    for module, imports in sorted(graph.items()):
        for imported in sorted(imports):
            low, high = layer_of(module), layer_of(imported)
            if low is not None and high is not None and high > low:
                out.append(f"{module} ({LAYER_NAMES[low]}) -> {imported} ({LAYER_NAMES[high]})")
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC)


def test_every_module_has_a_layer(graph):
    unplaced = [m for m in graph if layer_of(m) is None]
    assert not unplaced, f"place these modules in tests/test_layers.py LAYERS: {unplaced}"


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_go_down_the_layers(graph):
    assert upward_imports(graph) == []


def test_the_graph_sees_function_level_and_relative_imports(graph):
    # evaluate_model imports the model loader inside its body; the CLI's package imports its commands relatively
    assert "lumbar.models" in graph["lumbar.evaluate"]
    assert "lumbar.cli.train" in graph["lumbar.cli"]


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "lumbar" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_fail_on_a_cycle_and_on_an_upward_import(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "metrics.py": "def rate():\n    from lumbar.compare import best  # upward, and closes a cycle\n",
            "compare.py": "from lumbar.metrics import rate\n",
            "train.py": "from . import metrics\n",
        },
    )
    graph = import_graph(root)
    assert graph["lumbar.train"] == {"lumbar.metrics"}
    assert find_cycle(graph) in (
        ["lumbar.compare", "lumbar.metrics", "lumbar.compare"],
        ["lumbar.metrics", "lumbar.compare", "lumbar.metrics"],
    )
    assert upward_imports(graph) == ["lumbar.metrics (foundation) -> lumbar.compare (results)"]
    (root / "lumbar" / "metrics.py").write_text("def rate():\n    return 0\n")
    fixed = import_graph(root)
    assert find_cycle(fixed) is None and upward_imports(fixed) == []
