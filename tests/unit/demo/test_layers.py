"""The demo tools sit above the product (STYLE.md layers): ``demo`` may import product packages,
no product package imports ``demo``; only the composition root (``callcenter.cli``) wires it in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("callcenter", "asr", "dialog", "campaigns", "web")
COMPOSITION_ROOT = ROOT / "callcenter" / "cli"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_product_package_imports_demo():
    offenders = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            if COMPOSITION_ROOT in path.parents:
                continue
            if any(name == "demo" or name.startswith("demo.") for name in _imports(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_demo_command_wires_the_history_in():
    assert "demo.history" in _imports(COMPOSITION_ROOT / "demo.py")
