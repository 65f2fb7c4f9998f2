"""Imports go one way (DESIGN §2): data and gan never import each other nor the entry points."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train", "evaluate", "predict", "runconfig", "plots"}


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports would hide a cross-package import from this check
                names.add("<relative import>")
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


def test_packages_do_not_import_each_other_or_entry_points():
    forbidden = {"data": {"gan", "<relative import>"} | ENTRY_POINTS,
                 "gan": {"data", "<relative import>"} | ENTRY_POINTS}
    offences = []
    for package, banned in forbidden.items():
        files = sorted((ROOT / package).glob("*.py"))
        assert files, f"no modules found in {package}/"
        for path in files:
            bad = _imported_top_modules(path) & banned
            if bad:
                offences.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offences == []


def test_evaluate_does_not_import_train():
    assert "train" not in _imported_top_modules(ROOT / "evaluate.py")
