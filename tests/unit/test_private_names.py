"""No module uses another module's private names: what is shared is public (no leading underscore,
with a docstring), so a module's underscored names can change without reading the rest of the
code. Checked on the source with ast: ``from x import _name`` and ``module._name`` on an imported
module. A private module (``llm_budget._json``) may be imported: its public names are what it
shares. The standard library's few documented underscored functions (``os._exit``) are allowed.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["layers", "functions", "localdev", "client/src", "bench", "scripts", "tests"]
# Where the project's own modules are imported from (pytest.ini's pythonpath, the client's src).
IMPORT_ROOTS = [ROOT / "layers/budget", ROOT, ROOT / "client/src", ROOT / "tests"]
SKIPPED = {"tiktoken_cache", "__pycache__", ".venv", "build"}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_module(dotted: str) -> bool:
    """True when `dotted` names a module or package: the project's by its files, others by their spec."""
    parts = dotted.split(".")
    for root in IMPORT_ROOTS:
        path = root.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return True
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def stdlib(dotted: str) -> bool:
    return dotted.split(".")[0] in sys.stdlib_module_names


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a `from ... import` names, relative imports resolved against the file's folder."""
    if not node.level:
        return node.module or ""
    folder = path.parent
    for _ in range(node.level - 1):
        folder = folder.parent
    root = next(r for r in IMPORT_ROOTS if folder.is_relative_to(r))
    package = ".".join(folder.relative_to(root).parts)
    return ".".join(p for p in (package, node.module) if p)


def violations(path: Path, source: str | None = None) -> list[str]:
    """Each use of another module's private name in the file at `path` (or `source` as that file)."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    where = path.relative_to(ROOT)
    found = []
    modules: dict[str, str] = {}  # a local name bound to an imported module -> the module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                modules[bound] = alias.name if alias.asname else bound
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node, path)
            for alias in node.names:
                dotted = f"{source}.{alias.name}"
                if private(alias.name) and not is_module(dotted):
                    found.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
                elif is_module(dotted):
                    modules[alias.asname or alias.name] = dotted
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and private(node.attr)):
            continue
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if not (isinstance(base, ast.Name) and base.id in modules):
            continue
        owner = ".".join([modules[base.id], *reversed(chain[1:])])
        if is_module(owner) and not stdlib(owner) and not is_module(f"{owner}.{node.attr}"):
            found.append(f"{where}:{node.lineno}: {owner}.{node.attr}")
    return found


def python_files():
    for folder in CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not SKIPPED.intersection(path.relative_to(ROOT).parts):
                yield path


def test_no_module_uses_another_modules_private_names():
    found = [v for path in python_files() for v in violations(path)]
    assert found == [], (
        "private names used across modules (make them public, with a docstring):\n" + "\n".join(found)
    )


def test_the_check_finds_both_forms():
    probe = ROOT / "tests" / "unit" / "probe.py"  # never written: its source is given
    source = (
        "from localdev.template import plain_values, _nothing\n"
        "from localdev import template\n"
        "import localdev.dynamodb as dynamodb\n"
        "import os\n"
        "template._hidden(dynamodb._also, os._exit, template.__name__)\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(probe, source)] == [
        "from localdev.template import _nothing",
        "localdev.template._hidden",
        "localdev.dynamodb._also",
    ]
