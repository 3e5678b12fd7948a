"""The layers import downwards only: `specdec/` (the contract) imports nothing from the orchestrator or the
services, the services import nothing from the orchestrator, and every package ships in the wheel."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"specdec": "specdec", "specdec.orchestrator": "orchestrator", "specdec.services": "services",
           "specdec.training": "training", "specdec.demo_pair": "demo_pair"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, as absolute dotted names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def imports_below(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("folder, forbidden", [
    ("specdec", ("specdec.orchestrator", "specdec.services", "specdec.training")),
    ("services", ("specdec.orchestrator", "specdec.training")),
    ("training", ("specdec.orchestrator",)),
])
def test_a_layer_imports_nothing_above_it(folder, forbidden):
    offending = [f"{path.relative_to(ROOT)} imports {module}"
                 for path in sources(folder) for module in sorted(imported_modules(path))
                 if any(imports_below(module, package) for package in forbidden)]
    assert not offending, "\n".join(offending)


def test_the_layering_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from specdec.orchestrator.rules import RULE_NAMES\n")
    assert "specdec.orchestrator.rules" in imported_modules(module)


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if folder == "specdec" and parts and f"specdec.{parts[0]}" in FOLDERS:
                continue
            if "__pycache__" not in parts:
                found.add(".".join((package, *parts)))
    assert found == listed
