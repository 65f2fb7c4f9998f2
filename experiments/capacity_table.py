"""The capacity table of docs/results-demo.md from ``restoration_probe.py --severity-frames`` runs of several AEG widths.

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
from scoring.plots import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="JSON files of restoration_probe --out")
    runs = [json.loads(Path(p).read_text()) for p in parser.parse_args(argv).runs]
    fidelity = ["AEG width / res blocks", "steps × batch", "s per step (CPU)", "clean-face fidelity PSNR / SSIM"]
    rows = []
    for run in runs:
        a, clean = run["args"], run["protocol"]["clean-0"]
        rows.append(dict(zip(fidelity, (f"{a['width']} / {a['res_blocks']}", f"{a['steps']} × {a['batch']}",
                                        f"{run['seconds_per_step']:.2f}",
                                        f"{clean['psnr_restored']:.2f} dB / {clean['ssim_restored']:.3f}"), strict=True)))
    print(markdown_table(rows, fidelity))
    severity = ["artefact", "width", *(f"s{s}" for s in SEVERITIES)]
    rows = []
    for name in ARTEFACTS:
        for run in runs:
            row = {"artefact": name, "width": run["args"]["width"]}
            for s in SEVERITIES:
                cell = run["protocol"][f"{name}-{s}"]
                text = f"{cell['psnr_degraded']:.1f} → {cell['psnr_restored']:.1f}"
                row[f"s{s}"] = f"**{text}**" if cell["psnr_restored"] > cell["psnr_degraded"] else text
            rows.append(row)
    print(markdown_table(rows, severity), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
