"""Imports go one way (docs/design.md, "Layering"), so the folder tree reads as the architecture.

Packages, bottom up: ``fileio`` (the one atomic write) uses nothing of the project and every package may use
it; ``scoring`` (metrics, protocols, post-processing, plots) uses nothing else of the project; ``data`` uses only
itself; ``gan`` may use ``scoring``; ``runconfig`` composes the configs of ``data`` and
``gan``; ``training`` (the pieces of ``train.py``) may use all of these; ``evaluation`` (checkpoints scored, the official
protocols and the robustness protocol: the pieces of ``evaluate.py``) may use ``training`` too (the sequence models'
predictor), never the other way; no package imports an entry point.
Inside ``data`` the subpackages are layered too: ``datasets`` < ``preprocess`` < ``samples``, and
``formats`` sits on ``datasets`` only. Function-level imports count; relative imports are refused because they
would hide a cross-package import from this check.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train", "evaluate", "predict"}
PACKAGES = ("fileio", "data", "gan", "scoring", "training", "evaluation", "baselines")

#: what each package (or module prefix) may import from the project, by top-level module or dotted prefix
ALLOWED = {
    "fileio": {"fileio"},
    "scoring": {"scoring", "fileio"},
    "data": {"data", "fileio"},
    "gan": {"gan", "scoring", "fileio"},
    "training": {"training", "data", "gan", "scoring", "baselines", "runconfig", "fileio"},
    "evaluation": {"evaluation", "training", "data", "gan", "scoring", "baselines", "runconfig", "fileio"},
    "baselines": {"baselines", "scoring", "fileio"},   # the baseline systems: models and losses on tensors
}
#: layers inside data: a module of the key may import data modules under these prefixes only
DATA_LAYERS = {
    "data.datasets": {"fileio", "data.errors", "data.datasets"},
    "data.formats": {"fileio", "data.errors", "data.datasets", "data.formats"},
    "data.preprocess": {"fileio", "data.errors", "data.datasets", "data.preprocess"},
    "data.samples": {"fileio", "data.errors", "data.datasets", "data.preprocess", "data.samples"},
}
PROJECT = {*PACKAGES, *ENTRY_POINTS, "runconfig"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("<relative import>")
            elif node.module:
                names.add(node.module)
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _project_imports(path: Path) -> set[str]:
    return {m for m in _imported_modules(path) if m == "<relative import>" or m.split(".")[0] in PROJECT}


def _under(module: str, prefixes: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _package_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {package}/"
    return files


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_its_layer_allows(package):
    offences = []
    for path in _package_files(package):
        bad = {m for m in _project_imports(path) if not _under(m, ALLOWED[package])}
        if bad:
            offences.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offences == []


def test_data_subpackages_are_layered():
    offences = []
    for path in _package_files("data"):
        name = _module_name(path)
        layer = next((prefix for prefix in DATA_LAYERS if _under(name, {prefix})), None)
        if layer is None:
            continue   # data/errors.py and the command-line modules (prepare, summary) sit on top
        bad = {m for m in _project_imports(path) if not _under(m, DATA_LAYERS[layer])}
        if bad:
            offences.append(f"{name} imports {sorted(bad)}")
    assert offences == []


def test_every_subpackage_is_a_package():
    """An __init__.py in every folder, so setuptools' package discovery installs all of them."""
    for package in PACKAGES:
        for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            if folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), f"{folder.relative_to(ROOT)} lacks __init__.py"


def test_runconfig_uses_only_data_gan_and_baselines():
    bad = {m for m in _project_imports(ROOT / "runconfig.py") if not _under(m, {"data", "gan", "baselines"})}
    assert bad == set()


def test_evaluate_does_not_import_train():
    assert "train" not in {m.split(".")[0] for m in _imported_modules(ROOT / "evaluate.py")}


def test_only_the_atomic_write_renames_files():
    """One atomic write (fileio/atomic.py): no other module renames a file into place."""
    sources = [p for package in PACKAGES for p in _package_files(package)]
    sources += [ROOT / f"{name}.py" for name in (*ENTRY_POINTS, "runconfig")]
    callers = sorted(str(p.relative_to(ROOT)) for p in sources if "os.replace(" in p.read_text())
    assert callers == ["fileio/atomic.py"]


def test_the_check_sees_a_wrong_way_import(tmp_path):
    """The checker itself: a module that imports upward is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from gan.models import ALN\nfrom .x import y\n")
    found = _project_imports(bad)
    assert {m for m in found if not _under(m, ALLOWED["data"])} == {"gan.models", "<relative import>"}


def test_no_module_over_500_lines():
    """docs/design.md, "Layering": modules stay small enough to read in one sitting; tests, benchmarks and scripts included."""
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", "build", ".git"} & set(p.relative_to(ROOT).parts)]
    assert len(sources) > 50
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_no_module_name_is_used_twice():
    """A file name says which module it is: outside tests, no two modules share one (``__init__.py`` aside)."""
    sources = [p for p in ROOT.rglob("*.py")
               if not {".venv", "build", ".git", "tests"} & set(p.relative_to(ROOT).parts) and p.name != "__init__.py"]
    by_name: dict[str, list[str]] = {}
    for path in sources:
        by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
