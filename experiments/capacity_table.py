"""The README's capacity table from ``restoration_probe.py --severity-frames`` runs of several AEG widths.

    python -m experiments.capacity_table runs/capacity/width16.json runs/capacity/width32.json runs/capacity/width64.json

Prints, per run: parameters, seconds per denoise step, the AEG's fidelity on clean faces, and per artefact the
corrupted -> restored PSNR at each severity (bold where the restored face is closer to the clean one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.samples.corruptions import ARTEFACTS, SEVERITIES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="JSON files of restoration_probe --out")
    runs = [json.loads(Path(p).read_text()) for p in parser.parse_args(argv).runs]
    print("| AEG width / res blocks | steps × batch | s per step (CPU) | clean-face fidelity PSNR / SSIM |")
    print("|---|---|---|---|")
    for run in runs:
        a, clean = run["args"], run["protocol"]["clean-0"]
        print(f"| {a['width']} / {a['res_blocks']} | {a['steps']} × {a['batch']} | {run['seconds_per_step']:.2f} | "
              f"{clean['psnr_restored']:.2f} dB / {clean['ssim_restored']:.3f} |")
    print()
    head = " | ".join(f"s{s}" for s in SEVERITIES)
    print(f"| artefact | width | {head} |")
    print("|---|---|" + "---|" * len(SEVERITIES))
    for name in ARTEFACTS:
        for run in runs:
            cells = []
            for s in SEVERITIES:
                row = run["protocol"][f"{name}-{s}"]
                cell = f"{row['psnr_degraded']:.1f} → {row['psnr_restored']:.1f}"
                cells.append(f"**{cell}**" if row["psnr_restored"] > row["psnr_degraded"] else cell)
            print(f"| {name} | {run['args']['width']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
