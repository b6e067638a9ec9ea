"""The package's imports run one way: capture -> graph -> ModelHistory -> readers -> entry points.

Every ``import`` / ``from ... import`` in every module of the package (also
inside functions) is read with ``ast`` and mapped to the stage it comes from
and the stage it reaches; an edge not in :data:`MAY_IMPORT` fails, and so does
importing a private (underscore) name from another stage.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchlens_like"
FOUNDATION = {"nested", "model_state", "records", "registry", "version", "tf_runtime",
              "environment", "model_builders", "units", "figure_files"}

MAY_IMPORT = {
    "nested": set(),
    "model_state": set(),
    "records": {"nested", "registry"},
    "registry": set(),
    "version": set(),
    "tf_runtime": set(),
    "environment": set(),
    "model_builders": set(),
    "units": set(),
    "figure_files": set(),
    "capture": FOUNDATION,
    "graph": FOUNDATION,
    "validate": FOUNDATION | {"graph"},
    "render": FOUNDATION | {"graph"},
    "io": FOUNDATION | {"graph"},
    "analysis": FOUNDATION | {"graph"},
    "interventions": FOUNDATION | {"capture", "graph", "validate"},
    "gradients": FOUNDATION | {"capture", "graph", "interventions"},
    "api": FOUNDATION | {"capture", "graph", "validate", "render", "io", "interventions",
                         "gradients"},
    "extract": FOUNDATION | {"api", "graph", "io", "analysis"},
    "testing": FOUNDATION | {"api", "validate"},
    "cli": FOUNDATION | {"api", "graph", "render", "validate", "io", "extract", "analysis",
                         "testing", "interventions"},
    "__init__": FOUNDATION | {"api", "graph", "render", "validate", "io", "extract", "analysis",
                              "testing", "interventions", "gradients"},
    "__main__": {"cli"},
}
"""``{stage: stages it may import}``: a stage is a subpackage or a top-level module."""


def _stage(module):
    """``torchlens_like.graph.layer`` -> ``graph``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path):
    """``(line, imported module, names)`` for every import in one source file."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package_parts = list(relative.parts)[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = [alias.name for alias in node.names]
            if node.level and not node.module:
                found.extend((node.lineno, f"{target}.{name}", []) for name in names)
            else:
                found.append((node.lineno, target, names))
    return found


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        source = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source = source.removesuffix(".__init__")
        for line, target, names in _imports(path):
            if target == "torchlens_like" or target.startswith("torchlens_like."):
                yield f"{path.relative_to(PACKAGE.parent)}:{line}", source, target, names


def test_the_walker_sees_relative_and_function_level_imports():
    edges = {(_stage(source), _stage(target)) for _, source, target, _ in _edges()}
    assert ("api", "capture") in edges and ("graph", "graph") in edges
    assert ("validate", "graph") in edges


def test_no_import_runs_backwards():
    wrong = []
    for where, source, target, _ in _edges():
        stage, reached = _stage(source), _stage(target)
        if stage not in MAY_IMPORT:
            wrong.append(f"{where}: stage '{stage}' is not in MAY_IMPORT; add it with the "
                         "stages it may read")
        elif reached != stage and reached not in MAY_IMPORT[stage]:
            wrong.append(f"{where}: {source} imports {target} ({stage} -> {reached})")
    assert wrong == []


def test_no_private_names_imported_from_another_stage():
    wrong = [f"{where}: {source} imports {name} from {target}"
             for where, source, target, names in _edges()
             for name in names
             if name.startswith("_") and _stage(source) != _stage(target)]
    assert wrong == []


@pytest.mark.parametrize("stage", ["graph", "capture"])
def test_graph_and_capture_never_import_a_reader_or_the_entry_points(stage):
    readers = {"validate", "render", "io", "extract", "analysis", "api", "cli", "interventions",
               "gradients"}
    assert not MAY_IMPORT[stage] & readers
    assert not MAY_IMPORT["graph"] & {"capture"} and not MAY_IMPORT["capture"] & {"graph"}


def test_graph_and_records_import_no_framework_themselves():
    for path in [*sorted((PACKAGE / "graph").rglob("*.py")), PACKAGE / "records.py"]:
        roots = {target.split(".")[0] for _, target, _ in _imports(path)}
        assert not roots & {"torch", "tensorflow", "keras", "numpy"}, path


def _submodules(package_dir):
    return {p.stem for p in package_dir.glob("*.py")} | {
        p.name for p in package_dir.iterdir() if (p / "__init__.py").exists()}


def test_no_module_imports_from_the_package_that_imports_it():
    """A package's ``__init__`` imports its modules; they import their siblings, never names
    of the ``__init__`` itself, which is only half run while it imports them (a circle)."""
    wrong = []
    for where, source, target, names in _edges():
        parent = source.rpartition(".")[0]
        if source.endswith("__init__") or not parent:
            continue
        package_dir = PACKAGE.parent.joinpath(*parent.split("."))
        if not (package_dir / "__init__.py").exists():
            continue
        if target == parent:
            from_init = [name for name in names if name not in _submodules(package_dir)]
        elif target.rpartition(".")[0] == parent and not names:
            from_init = [target.rpartition(".")[2]] if target.rpartition(".")[2] not in \
                _submodules(package_dir) else []
        else:
            from_init = []
        if from_init:
            wrong.append(f"{where}: {source} imports {', '.join(from_init)} from its own "
                         f"package {parent}")
    assert wrong == []
