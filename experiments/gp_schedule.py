"""What separates the penalty on every D step (``loss.gp_every=1``) from the lazy one (``gp_every=4``): a table
from the runs' own ``metrics.jsonl``.

    python -m experiments.gp_schedule RUN [RUN ...]      # run folders of python train.py loss.gp_every=K seed=S

Per run (its ``config.yaml`` gives ``gp_every`` and the seed): the last validation's CCC V/A, the last stage's best
mean CCC and its step (what ``best.pt`` holds), and the means over
the last stage's log steps (after its first quarter, so the stage's start-up is left out) of the critic's
Wasserstein estimate ``D/wasserstein``, its penalty ``D/gp``, the norm of its input gradient at real, fake and
interpolated inputs (``D/gradnorm_real``, ``_fake``, ``_interp``: the slope the penalty pulls to 1) and the norm of
the adversarial term's gradient in the generator (``G/gradnorm_adv``); and the last stage's largest Wasserstein
estimate and ``G/gradnorm_adv``. Then mean ± std over the seeds of each
setting. Runs logged before the critic's gradient norms were logged show "—" there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from scoring.plots import markdown_table
from training.run_folder import metrics_entries

TRACKED = ("D/wasserstein", "D/gp", "D/gradnorm_real", "D/gradnorm_fake", "D/gradnorm_interp", "G/gradnorm_adv")
PEAKED = ("D/wasserstein", "G/gradnorm_adv")


def run_row(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    lines = metrics_entries(run / "metrics.jsonl")
    last_stage = max(line.get("stage", 0) for line in lines if "event" not in line)
    start = next(line for line in lines if line.get("event") == "stage_start" and line["stage"] == last_stage)
    settle = start["first_step"] + (start["last_step"] - start["first_step"]) // 4
    logged = [line for line in lines if "event" not in line and line.get("stage") == last_stage
              and line["step"] >= settle]
    validated = [line for line in lines if "val/ccc_valence" in line]
    best = max((line for line in validated if start["first_step"] <= line["step"] <= start["last_step"]),
               key=lambda line: (line["val/ccc_valence"] + line["val/ccc_arousal"]) / 2, default=validated[-1])
    row = {"run": run.name, "gp_every": cfg["loss"]["gp_every"], "seed": cfg["seed"],
           "ccc_valence": validated[-1]["val/ccc_valence"], "ccc_arousal": validated[-1]["val/ccc_arousal"],
           "best_mean_ccc": (best["val/ccc_valence"] + best["val/ccc_arousal"]) / 2, "best_step": best["step"]}
    for key in TRACKED:
        values = [line[key] for line in logged if key in line]
        row[key] = float(np.mean(values)) if values else None
    for key in PEAKED:   # the largest value anywhere in the last stage: the earlier one-seed comparison's measure
        values = [line[key] for line in lines if "event" not in line and line.get("stage") == last_stage and key in line]
        row[f"max {key}"] = float(np.max(values)) if values else None
    return row


def _pm(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    rows = [run_row(run) for run in parser.parse_args(argv).runs]
    columns = ["run", "gp_every", "seed", "ccc_valence", "ccc_arousal", "best_mean_ccc", "best_step", *TRACKED,
               *(f"max {key}" for key in PEAKED)]
    print(markdown_table([{k: ("—" if r[k] is None else r[k]) for k in columns} for r in rows], columns, ".3f"))
    summary = [{"gp_every": k, "seeds": len(mine := [r for r in rows if r["gp_every"] == k]),
                **{c: _pm([r[c] for r in mine]) for c in columns[3:]}}
               for k in sorted({r["gp_every"] for r in rows})]
    print(markdown_table(summary, ["gp_every", "seeds", *columns[3:]]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
