"""The plain statements of docs/results-demo.md from a ``robustness.json``: where a variant beats a reference, where restoration helps.

    python -m experiments.robustness_compare runs/study/robustness/robustness.json [--reference disc]

For every variant other than the reference: at how many corrupted (artefact, severity) conditions its mean CCC over
seeds beats the reference's, and the conditions where it does not (with the gap); for every variant with an AEG: the
conditions where the restored face's PSNR is above the corrupted input's (with the gain in dB).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report")
    p.add_argument("--reference", default="disc")
    a = p.parse_args(argv)
    report = json.loads(open(a.report).read())
    variant = {c["label"]: c["variant"] for c in report["checkpoints"]}
    cells = defaultdict(list)
    for row in report["results"]:
        if row["severity"]:
            cells[(variant[row["checkpoint"]], row["artefact"], row["severity"])].append(row)

    def mean(v: str, artefact: str, severity: int, key: str) -> float | None:
        values = [r[key] for r in cells[(v, artefact, severity)] if r[key] is not None]
        return float(np.mean(values)) if values else None

    keys = sorted({(a_, s) for _, a_, s in cells}, key=lambda k: (list(dict.fromkeys(
        r["artefact"] for r in report["results"])).index(k[0]), k[1]))
    for v in dict.fromkeys(variant.values()):
        if v == a.reference:
            continue
        for dim in ("valence", "arousal"):
            gaps = {k: mean(v, *k, f"ccc_{dim}") - mean(a.reference, *k, f"ccc_{dim}") for k in keys
                    if mean(a.reference, *k, f"ccc_{dim}") is not None}
            worse = [f"{k[0]} {k[1]} ({g:+.3f})" for k, g in gaps.items() if g <= 0]
            print(f"{v} {dim}: beats {a.reference} at {len(gaps) - len(worse)} of {len(gaps)} conditions; not at: "
                  + (", ".join(worse) or "none"))
    for v in dict.fromkeys(variant.values()):
        gains = [(k, mean(v, *k, "psnr_restored") - mean(v, *k, "psnr_degraded")) for k in keys
                 if mean(v, *k, "psnr_restored") is not None and mean(v, *k, "psnr_degraded") is not None]
        if gains:
            better = [f"{k[0]} {k[1]} ({g:+.2f} dB)" for k, g in gains if g > 0]
            print(f"{v}: restored PSNR above the corrupted input at {len(better)} of {len(gains)} conditions: "
                  + (", ".join(better) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
