"""What the benchmarks and experiments share: the ``--device`` option, JSON reports, markdown tables.

Every script runs as a module from the repository root (``python -m bench.scale ...``), so the project imports
without any edit of the module search path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fileio.atomic import write_text
from runconfig import resolve_device
from scoring.plots import markdown_table

__all__ = ["chosen_device", "device_option", "markdown_table", "write_report"]


def device_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help=f"auto (CUDA when there is one) | cpu | cuda | cuda:N "
                                                          f"(default {default})")


def chosen_device(name: str) -> torch.device:
    """``--device``'s value as a device that exists here; a one-line error (runconfig.ConfigError) otherwise."""
    return resolve_device(name)


def write_report(path: str | Path, report: dict) -> Path:
    """``report`` as indented JSON at ``path`` (atomically; values JSON lacks, such as paths, as text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(report, indent=2, default=str) + "\n")
