"""What import-linter cannot see of the layers (``make test`` runs ``lint-imports`` for the
rest, see "Layers" in docs/design.rst): no module imports another module's private
names or reads a private attribute that only another module defines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "flask_taskq"


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        ours = node.level > 0 or (node.module or "").split(".")[0] == "flask_taskq"
        if not ours:
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_imports(path)]
    assert found == [], "private names imported across modules (give them a public name):\n" + (
        "\n".join(found)
    )


#: Private names of other libraries that are theirs to use: Flask documents
#: ``_get_current_object`` on its proxies, and ``os._exit`` is how a forked child leaves.
#: redis-py's ``_parser`` and its hiredis ``_reader`` are read by ``broker/direct.py``
#: only when they are what it checked them to be (``_HiredisParser``), else it falls back
#: to redis-py's public reading (docs/performance.md, producer second round).
FOREIGN = {"_get_current_object", "_exit", "_parser", "_reader"}


def _private_attributes(path: Path) -> list[str]:
    """``obj._name`` where no class or assignment of this module defines ``_name``."""
    tree = ast.parse(path.read_text(), str(path))
    defined = set(FOREIGN)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") or node.attr in defined:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reads_another_modules_private_attributes() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_attributes(path)]
    assert found == [], "private attributes of other modules' objects:\n" + "\n".join(found)
