"""The layout is the architecture: each layer imports only from the layers below it, and no import
(at module level or inside a function) closes a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import lite_rm

PACKAGE = Path(lite_rm.__file__).parent

# Lowest first. The package root (the public facade, imported first by Python anyway) is left out.
LAYERS = [
    ("lite_rm.errors", "lite_rm.files", "lite_rm.extras", "lite_rm.threads", "lite_rm.flags"),
    ("lite_rm.data",),
    ("lite_rm.scoring",),
    ("lite_rm.training",),
    ("lite_rm.exporting",),
    ("lite_rm.jobs",),
    ("lite_rm.cli",),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("lite_rm",) + path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lite_rm modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def test_every_module_has_a_layer() -> None:
    assert [m for m in _graph() if m != "lite_rm" and _layer(m) is None] == []


def test_no_import_from_a_higher_layer() -> None:
    upward = [(m, t) for m, targets in _graph().items() for t in targets
              if m != "lite_rm" and t != "lite_rm" and _layer(t) > _layer(m)]  # type: ignore[operator]
    assert upward == []


def test_no_import_circle() -> None:
    graph = {m: {t for t in targets if t != "lite_rm"} for m, targets in _graph().items()}
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            if circle := visit(target):
                return circle
        path.pop()
        done.add(module)
        return None

    circles = [c for m in sorted(graph) if (c := visit(m))]
    assert circles == []


def test_the_checker_sees_a_function_level_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lite_rm.cli import fail\n    from . import sibling\n")
    assert _imports("lite_rm.scoring.m", module, {"lite_rm.cli", "lite_rm.scoring.sibling"}) \
        == {"lite_rm.cli", "lite_rm.scoring.sibling"}


def test_the_torch_free_modules_stay_torch_free() -> None:
    """What the core install and the CLI's light paths import must not pull torch in."""
    import subprocess
    import sys

    modules = ["lite_rm", "lite_rm.scoring.scorer", "lite_rm.jobs.batch_scoring", "lite_rm.jobs.serving",
               "lite_rm.cli", "lite_rm.training.config", "lite_rm.training.checkpoint", "lite_rm.training.encoders",
               "lite_rm.training.run_folder", "lite_rm.training.pipeline", "lite_rm.training.launch"]
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
