"""bench/ and experiments/ are packages of modules run as ``python -m bench.scale ...``: no ``sys.path`` edit,
every module imports from the repository root and has a ``main``, and a module runs from the command line."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.train_helpers import HANG_GUARD_S, REPO

MODULES = sorted(f"{p.parent.name}.{p.stem}" for folder in ("bench", "experiments")
                 for p in (REPO / folder).glob("*.py") if p.stem != "__init__")
HELPERS = {"bench.cli"}   # the scripts' shared helper, not a script


def test_no_script_edits_sys_path():
    offenders = [m for m in MODULES if "sys.path" in (REPO / (m.replace(".", "/") + ".py")).read_text()]
    assert len(MODULES) >= 20 and offenders == []


@pytest.mark.parametrize("package", ["bench", "experiments"])
def test_both_folders_are_regular_packages(package):
    """An ``__init__.py`` with a docstring, not a namespace package that any folder of that name would shadow."""
    module = importlib.import_module(package)
    assert module.__file__ is not None and module.__doc__, f"{package}/__init__.py is missing or has no docstring"


@pytest.mark.parametrize("name", sorted(set(MODULES) - HELPERS))
def test_every_module_imports_and_has_a_main(name):
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)), f"{name} has no main()"


def test_a_benchmark_runs_as_a_module_from_the_repository_root():
    """From the root, as the README says: the project imports without any path set-up (PYTHONPATH emptied)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.official_scoring", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "official_scoring" in done.stdout


def test_the_shared_device_option_and_report(tmp_path, capsys):
    """bench.cli: ``--device`` resolved with runconfig (a wrong one is one error line, exit 2); reports as JSON."""
    import argparse
    import json

    from bench.cli import chosen_device, device_option, write_report

    parser = argparse.ArgumentParser()
    device_option(parser)
    assert parser.parse_args([]).device == "auto"
    assert chosen_device(parser.parse_args(["--device", "cpu"]).device).type == "cpu"
    with pytest.raises(SystemExit) as stop:
        chosen_device("tpu")
    assert stop.value.code == 2 and capsys.readouterr().err.strip().startswith("error: unknown device 'tpu'")
    path = write_report(tmp_path / "sub" / "r.json", {"tree": tmp_path, "n": 1})
    assert json.loads(path.read_text()) == {"tree": str(tmp_path), "n": 1}
