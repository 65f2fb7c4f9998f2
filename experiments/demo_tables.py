"""The default-run tables of docs/results-demo.md from a run folder's ``metrics.jsonl``.

    python -m experiments.demo_tables runs/demo [--steps 2400 3000] [--stage-end 1800]

Prints two markdown tables: validation CCC per scoring view (the test path, CD on the clean face with its
``z``, the test path on degraded frames, CD on degraded frames without the AEG) at each of ``--steps``
(default: the last validated step and the one 600 before it), and the restoration PSNR/SSIM per artefact
(``restoration/...`` tags) at ``--stage-end`` and at the last step. Every number is a value the run logged;
nothing is recomputed, so the tables are what TensorBoard shows for that run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.run_folder import metrics_entries

VIEWS = [
    ("val", "test path (AEG cleans the clean frame, CD scores it)"),
    ("val_clean_input", "CD on the clean face with its `z` (what D trains on)"),
    ("val_degraded", "test path on degraded frames"),
    ("val_degraded_no_aeg", "CD on degraded frames without the AEG"),
]
ARTEFACTS = ["blur", "downscale", "colour", "noise", "all", "clean"]


def read_metrics(run: Path) -> dict[int, dict]:
    """Every logged value by step (several records of one step are merged)."""
    by_step: dict[int, dict] = {}
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (is {run} a run folder of train.py?)")
    for record in metrics_entries(path):
        by_step.setdefault(int(record["step"]), {}).update(record)
    return by_step


def ccc_table(by_step: dict[int, dict], steps: list[int]) -> str:
    rows = ["| view | step | CCC V | CCC A |", "|---|---|---|---|"]
    for prefix, label in VIEWS:
        for step in steps:
            values = by_step.get(step, {})
            v, a = values.get(f"{prefix}/ccc_valence"), values.get(f"{prefix}/ccc_arousal")
            if v is not None and a is not None:
                rows.append(f"| {label} | {step:,} | {v:.3f} | {a:.3f} |")
    return "\n".join(rows)


def _cell(values: dict, artefact: str) -> str:
    key = "restoration/{}_{}_" + artefact
    if key.format("psnr", "restored") not in values:
        return "–"
    restored = f"{values[key.format('psnr', 'restored')]:.2f} dB / {values[key.format('ssim', 'restored')]:.3f}"
    if artefact == "clean":
        return restored
    return (f"{values[key.format('psnr', 'degraded')]:.2f} → {values[key.format('psnr', 'restored')]:.2f} dB / "
            f"{values[key.format('ssim', 'degraded')]:.3f} → {values[key.format('ssim', 'restored')]:.3f}")


def restoration_table(by_step: dict[int, dict], steps: list[int]) -> str:
    rows = ["| artefact | " + " | ".join(f"step {s:,}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for artefact in ARTEFACTS:
        name = "clean (fidelity)" if artefact == "clean" else artefact
        rows.append(f"| {name} | " + " | ".join(_cell(by_step.get(s, {}), artefact) for s in steps) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", help="validation steps of the CCC table")
    parser.add_argument("--stage-end", type=int, default=1800, help="the other step of the restoration table")
    args = parser.parse_args(argv)
    by_step = read_metrics(args.run)
    validated = sorted(s for s, v in by_step.items() if "val/ccc_valence" in v)
    restored = sorted(s for s, v in by_step.items() if "restoration/psnr_restored_all" in v)
    if not validated or not restored:
        raise SystemExit(f"{args.run}/metrics.jsonl has no validation CCC or restoration scores yet")
    steps = args.steps or [s for s in (validated[-1] - 600, validated[-1]) if s in by_step]
    print(ccc_table(by_step, steps))
    print()
    print(restoration_table(by_step, [args.stage_end, restored[-1]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
