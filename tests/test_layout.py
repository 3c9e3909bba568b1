"""The layering the README's "Layout" describes: which top-level package may import which.

Read from the source (every import, including those inside functions), so a hidden cycle through a
late import fails here too. Tests (``*_test.py``) are left out: they may import what they test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Package -> the project's packages its code may import (cli composes all; components imports none).
ALLOWED = {
    "components": set(),
    "pipeline": {"components"},
    "reports": {"components", "pipeline"},
    "serving": set(),
    "cli": {"components", "pipeline", "reports", "serving"},
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_code(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if not p.name.endswith("_test.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below(package: str) -> None:
    offending = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in package_code(package)
        for name in imported_modules(path)
        if name.split(".")[0] in ALLOWED and name.split(".")[0] not in ALLOWED[package] | {package}
    }
    assert not offending, sorted(offending)


def test_generic_server_leaves_the_drawing_page_to_the_entry_point() -> None:
    """Only `cli/serve.py` plugs `/ui` in; the server, REST and core modules never import it."""
    importers = {
        path.relative_to(REPO).as_posix()
        for package in ALLOWED
        for path in package_code(package)
        if {"serving.ui", "serving.ui.add_ui_routes"} & imported_modules(path)
    }
    assert importers == {"cli/serve.py"}


def test_modules_of_a_package_form_no_import_cycle() -> None:
    """No module reaches itself through the project's own imports (late imports included)."""
    modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts): path
        for package in ALLOWED
        for path in package_code(package)
        if path.name != "__init__.py"
    }
    edges = {name: {m for m in imported_modules(path) if m in modules and m != name} for name, path in modules.items()}

    def reaches(start: str) -> bool:
        seen, todo = set(), list(edges[start])
        while todo:
            current = todo.pop()
            if current == start:
                return True
            if current not in seen:
                seen.add(current)
                todo += edges[current]
        return False

    assert [name for name in modules if reaches(name)] == []
