"""Validation scores at every validation step of one or more runs, with the stage each step belongs to: a table
from the runs' own ``metrics.jsonl``.

    python -m experiments.learning_curve RUN [RUN ...] [--tags val/ccc_valence val_clean_input/ccc_valence]

One row per validation step: the step, the stage's variant, and per tag the mean ± sample std over the runs
that validated at that step (e.g. the folds of one cross-validation), with the number of runs. Used to see in
which stage a dimension starts to be learnt (docs/results-demo.md, the SEWA-layout folds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scoring.plots import markdown_table
from training.run_folder import metrics_entries

DEFAULT_TAGS = ("val/ccc_valence", "val/ccc_arousal")


def curve(run: Path) -> tuple[dict[int, dict], dict[int, str]]:
    """({step: validation line}, {step: variant of the stage it belongs to}) of one run folder."""
    lines = metrics_entries(run / "metrics.jsonl")
    stages = [line for line in lines if line.get("event") == "stage_start"]
    validated = {line["step"]: line for line in lines if "event" not in line and "val/ccc_valence" in line}
    variant = {}
    for step in validated:
        inside = [s for s in stages if s["first_step"] <= step <= s["last_step"]]
        variant[step] = inside[-1]["variant"] if inside else "-"
    return validated, variant


def table(runs: list[Path], tags: list[str]) -> list[dict]:
    curves = [curve(run) for run in runs]
    steps = sorted({step for validated, _ in curves for step in validated})
    rows = []
    for step in steps:
        row = {"step": step, "stage": next(v[step] for _, v in curves if step in v)}
        for tag in tags:
            values = [validated[step][tag] for validated, _ in curves if tag in validated.get(step, {})]
            if not values:
                row[tag] = "—"
            elif len(values) == 1:
                row[tag] = f"{values[0]:.3f}"
            else:
                row[tag] = f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
        row["runs"] = sum(step in validated for validated, _ in curves)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.learning_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a metrics.jsonl)")
    parser.add_argument("--tags", nargs="+", default=list(DEFAULT_TAGS), help="logged validation tags")
    args = parser.parse_args(argv)
    rows = table(args.runs, args.tags)
    print(markdown_table(rows, list(rows[0])) if rows else "no validation line found", end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
