"""What the benchmarks and experiments share: the ``--device`` option and JSON reports.

Markdown tables come from ``scoring.plots.markdown_table`` (experiments.ablation, .capacity_table, .compare,
.alnt_feature_gap); the benchmarks print fixed-width text tables, each its own columns.

Every script runs as a module from the repository root (``python -m bench.scale ...``), so the project imports
without any edit of the module search path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fileio.atomic import write_text
from runconfig import ConfigError, resolve_device

__all__ = ["chosen_device", "device_option", "write_report"]


def device_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help=f"auto (CUDA when there is one) | cpu | cuda | cuda:N "
                                                          f"(default {default})")


def chosen_device(name: str) -> torch.device:
    """``--device``'s value as a device that exists here; otherwise exit 2 with one ``error: ...`` line."""
    try:
        return resolve_device(name)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def write_report(path: str | Path, report: dict) -> Path:
    """``report`` as indented JSON at ``path`` (atomically; values JSON lacks, such as paths, as text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(report, indent=2, default=str) + "\n")
