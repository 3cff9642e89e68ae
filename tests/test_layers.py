"""The house has floors: library modules never import the command line above them."""

from __future__ import annotations

import ast
from pathlib import Path

import cosmobench

PACKAGE = Path(cosmobench.__file__).parent


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_module_outside_cli_imports_the_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        found = {
            n
            for n in _imports(ast.parse(path.read_text()))
            if n == "cosmobench.cli" or n.startswith("cosmobench.cli.")
        }
        if found:
            offenders.append(f"{rel}: {', '.join(sorted(found))}")
    assert not offenders, offenders


def test_the_check_sees_a_cli_import():
    tree = ast.parse("def f():\n    from cosmobench.cli.app import console\n")
    assert "cosmobench.cli.app" in _imports(tree)


def test_the_command_line_starts_without_torch():
    """Building every command's options reads the configs only: ``--help`` and option errors
    stay fast (torch, zarr and galsim load when a command runs)."""
    import subprocess
    import sys

    code = (
        "import sys, cosmobench.cli; "
        "print(sorted(m for m in ('torch', 'zarr', 'galsim') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
