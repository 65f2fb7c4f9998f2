"""Is it the cleaning? Per artefact, what each part of ALN adds to the valence and arousal kept under corruption.

    python -m experiments.robustness_attribution runs/study/robustness/robustness.json [--severities 1 3 5]

Reads a robustness report of the ablation's checkpoints (``disc``, ``disc_aug``, ``aeg_cd``, ``aeg_cd_sz``, with
their ``no-AEG`` rows; labels ``<variant>-seed<k>``) and prints two tables, each cell mean ± std over the seeds,
differences taken between runs of the same seed:

1. **The cleaning pass**: the AEG path minus the no-AEG path (the same checkpoint, its CD scoring the corrupted face
   with and without the cleaning), CCC V / A at the chosen severities.
2. **Attribution**, mCCC (mean CCC over severities 1-5) differences per artefact:
   * augmentation = ``disc_aug`` − ``disc`` (the same CD trained on the degradation mix instead of clean faces);
   * AEG over augmentation = ``aeg_cd`` − ``disc_aug`` (neither has z or audio; both saw the mix in training);
   * cleaning pass = ``aeg_cd`` − ``aeg_cd no-AEG``;
   * latent + audio = ``aeg_cd_sz`` − ``aeg_cd``.

   A cell whose mean is within one standard deviation of 0 is marked ``~``: the seeds' spread is as large as the
   difference.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from scoring.plots import markdown_table

NO_AEG = " no-AEG"
CONTRASTS = (("augmentation", "disc_aug", "disc"), ("AEG over augmentation", "aeg_cd", "disc_aug"),
             ("cleaning pass", "aeg_cd", "aeg_cd" + NO_AEG), ("latent + audio", "aeg_cd_sz", "aeg_cd"))


def _cell(values: list[float]) -> str:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{mean:+.3f} ± {std:.3f}" + (" ~" if abs(mean) <= std else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="robustness.json of evaluate.py --robustness")
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 3, 5])
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    ccc = defaultdict(dict)   # (variant, seed) -> {(artefact, severity): (V, A)}
    for row in report["results"]:
        match = re.fullmatch(r"(.+)-seed(\d+)( no-AEG)?", row["checkpoint"])
        if not match:
            continue
        variant = match.group(1) + (match.group(3) or "")
        ccc[(variant, int(match.group(2)))][(row["artefact"], row["severity"])] = (row["ccc_valence"],
                                                                                   row["ccc_arousal"])
    seeds = sorted({s for _, s in ccc})
    artefacts = list(dict.fromkeys(a for rows in ccc.values() for a, s in rows if s > 0))

    def paired(a: str, b: str, value) -> list[tuple[float, float]]:
        return [(value(ccc[(a, s)], d) - value(ccc[(b, s)], d)) for s in seeds
                if (a, s) in ccc and (b, s) in ccc for d in (0, 1)]

    rows = []
    for variant in ("aeg_cd", "aeg_cd_sz"):
        for artefact in artefacts:
            row = {"variant": variant, "artefact": artefact}
            for severity in args.severities:
                diffs = paired(variant, variant + NO_AEG, lambda r, d, key=(artefact, severity): r[key][d])
                row[f"s{severity} ΔV"], row[f"s{severity} ΔA"] = _cell(diffs[0::2]), _cell(diffs[1::2])
            rows.append(row)
    columns = ["variant", "artefact", *(f"s{s} Δ{d}" for s in args.severities for d in "VA")]
    print("The cleaning pass: AEG path minus no-AEG path, CCC (mean ± std over seeds; ~: within one std of 0)\n")
    print(markdown_table(rows, columns))

    def mccc(rows_of: dict, artefact: str, d: int) -> float:
        return float(np.mean([rows_of[(artefact, s)][d] for s in range(1, 6)]))

    table = []
    for artefact in [*artefacts, "all"]:
        row = {"artefact": artefact}
        for name, a, b in CONTRASTS:
            names = artefacts if artefact == "all" else [artefact]
            diffs = paired(a, b, lambda r, d, names=names: float(np.mean([mccc(r, n, d) for n in names])))
            row[f"{name} V"], row[f"{name} A"] = _cell(diffs[0::2]), _cell(diffs[1::2])
        table.append(row)
    print("\nAttribution: mCCC differences (severities 1-5; mean ± std over seeds; ~: within one std of 0)\n")
    print(markdown_table(table, ["artefact", *(f"{name} {d}" for name, _, _ in CONTRASTS for d in "VA")]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
