"""Figures and tables for ``evaluate.py`` and ``predict.py``: traces over time, density scatters, markdown.

Rendering is headless (the Agg backend is selected here, before pyplot is imported) so evaluation runs on
servers and in tests without a display; every figure is closed after saving so long evaluation loops do not
accumulate memory. CCC values in panel titles come from ``scoring.metrics`` (population convention), the same
function that writes ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from fileio.atomic import atomic_open
from scoring.metrics import as_columns, ccc  # noqa: E402

PRED_COLOR = "#d62728"   # red: predictions
GOLD_COLOR = "#1f1f1f"   # near black: gold labels
DPI = 100
TRACE_PANEL_INCHES = (9.0, 2.5)     # 900 x 250 px per dimension
SCATTER_PANEL_INCHES = (4.0, 4.0)   # 400 x 400 px per dimension
AXIS_LIMITS = (-1.05, 1.05)


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def plot_traces(path: str | Path, times: np.ndarray, pred: np.ndarray, gold: np.ndarray | None,
                dims: Sequence[str], title: str) -> Path:
    """Prediction (and gold, when known) over time, one stacked panel per dimension.

    Args:
        path: PNG file to write (parent folders are created).
        times: (N,) frame times in seconds.
        pred: (N, D) predictions, column d named ``dims[d]``.
        gold: (N, D) gold labels or None (``predict.py`` has none); NaN rows show as gaps.
        dims: dimension names.
        title: figure title.

    Returns:
        The written path.
    """
    dims = list(dims)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    pred = as_columns(pred, len(dims), "pred")
    if pred.shape[0] != times.size:
        raise ValueError(f"times has {times.size} entries but pred has {pred.shape[0]} rows")
    if gold is not None:
        gold = as_columns(gold, len(dims), "gold")
        if gold.shape != pred.shape:
            raise ValueError(f"gold {gold.shape} and pred {pred.shape} differ in shape")
    width, height = TRACE_PANEL_INCHES
    fig, axes = plt.subplots(len(dims), 1, figsize=(width, height * len(dims)), sharex=True, squeeze=False)
    for d, (ax, name) in enumerate(zip(axes[:, 0], dims, strict=True)):
        if gold is not None:
            # drawn above the (usually noisier) prediction so it stays visible
            ax.plot(times, gold[:, d], color=GOLD_COLOR, linewidth=1.3, label="gold", zorder=3)
        ax.plot(times, pred[:, d], color=PRED_COLOR, linewidth=1.5, label="prediction", zorder=2)
        ax.set_ylim(*AXIS_LIMITS)
        ax.set_ylabel(name)
        ax.axhline(0.0, color="0.8", linewidth=0.6, zorder=0)
        ax.grid(True, alpha=0.3)
        if d == 0:
            ax.legend(loc="upper right", fontsize="small", ncol=2)
    if times.size:
        axes[-1, 0].set_xlim(times.min(), max(times.max(), times.min() + 1e-9))
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_scatter(path: str | Path, pred: np.ndarray, gold: np.ndarray, dims: Sequence[str], title: str) -> Path:
    """Per-dimension 2-D density (hexbin, log colour) of prediction against gold, with the identity line.

    Frame-level scatters of tens of thousands of points saturate; a log-density shows where most frames
    sit and whether predictions are shrunk toward the mean (slope below the identity). Rows whose gold or
    prediction is NaN are skipped; the panel title carries the CCC over the remaining rows.

    Args:
        path: PNG file to write (parent folders are created).
        pred: (N, D) predictions.
        gold: (N, D) gold labels, NaN for missing.
        dims: dimension names.
        title: figure title.

    Returns:
        The written path.
    """
    dims = list(dims)
    pred = as_columns(pred, len(dims), "pred")
    gold = as_columns(gold, len(dims), "gold")
    if gold.shape != pred.shape:
        raise ValueError(f"gold {gold.shape} and pred {pred.shape} differ in shape")
    width, height = SCATTER_PANEL_INCHES
    fig, axes = plt.subplots(1, len(dims), figsize=(width * len(dims), height + 0.4), squeeze=False)
    lo, hi = AXIS_LIMITS
    for d, (ax, name) in enumerate(zip(axes[0], dims, strict=True)):
        keep = np.isfinite(gold[:, d]) & np.isfinite(pred[:, d])
        x, y = gold[keep, d], pred[keep, d]
        if x.size:
            density = ax.hexbin(x, y, gridsize=40, extent=(lo, hi, lo, hi), norm=LogNorm(), mincnt=1,
                                cmap="viridis")
            fig.colorbar(density, ax=ax, fraction=0.046, pad=0.04, label="frames")
            label = f"{name}: CCC {ccc(y, x):.3f} (n={x.size})"
        else:
            label = f"{name}: no labelled frames"
        ax.plot([lo, hi], [lo, hi], color=PRED_COLOR, linewidth=1.0, linestyle="--")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("gold")
        ax.set_ylabel("prediction")
        ax.set_title(label, fontsize="medium")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _cell(value, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> str:
    """GitHub-flavoured markdown table of ``rows`` restricted to ``columns``, in that order.

    Floats (Python or numpy) use ``floatfmt``; missing keys and None give empty cells; ``|`` in text is
    escaped so a cell cannot split the row. The text ends with a newline.

    Example:
        >>> print(markdown_table([{"model": "a", "ccc": 0.5}], ["model", "ccc"]), end="")
        | model | ccc |
        | --- | --- |
        | a | 0.500 |
    """
    lines = ["| " + " | ".join(_cell(c, floatfmt) for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), floatfmt) for c in columns) + " |")
    return "\n".join(lines) + "\n"
