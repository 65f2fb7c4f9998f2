"""Ablation of the ALN variants at equal steps: ``python experiments/ablation.py [--steps N] [KEY=VALUE ...]``.

Trains ``disc``, ``aeg_cd`` and ``aeg_cd_sz`` with the same preset, seed, steps and degradations (each a
plain ``train.py`` run in ``--out/<variant>``), scores each final checkpoint with ``evaluate.py``, and
prints a markdown table: CCC / PCC / RMSE for valence and arousal on the clean validation frames
(the headline), CCC on degraded validation frames, and the PSNR of the degraded and the restored
validation faces against the clean ones. The table is also written to ``--out/ablation.md`` and
``--out/ablation.json``. Extra ``KEY=VALUE`` overrides go to every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("disc", "aeg_cd", "aeg_cd_sz")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def last_validation(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val/ccc_valence" in r][-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="train.max_steps for every variant (default: preset)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--out", default="runs/ablation", help="folder for the three runs and the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = {}
    for variant in args.variants:
        run_dir = out / variant
        overrides = [f"model.variant={variant}", f"run.dir={run_dir}", *args.overrides]
        if args.steps:
            overrides.append(f"train.max_steps={args.steps}")
        run([sys.executable, "train.py", "--config", args.config, *overrides])
        run([sys.executable, "evaluate.py", "--checkpoint", str(run_dir / "last.pt"), "--out", str(run_dir / "eval")])
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
        val = last_validation(run_dir)
        results[variant] = {
            "step": metrics["step"],
            "valence": metrics["valence"], "arousal": metrics["arousal"],
            "ccc_degraded": {d: val.get(f"val_degraded/ccc_{d}") for d in ("valence", "arousal")},
            "psnr_degraded": val.get("val/psnr_degraded"), "psnr_restored": val.get("val/psnr_restored"),
        }
    table = format_table(results)
    print(table)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def format_table(results: dict) -> str:
    head = ("| variant | steps | CCC V | CCC A | PCC V | PCC A | RMSE V | RMSE A | CCC V (degraded in) "
            "| CCC A (degraded in) | PSNR degraded | PSNR restored |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for variant, r in results.items():
        v, a = r["valence"], r["arousal"]
        restored = "n/a (no AEG)" if variant == "disc" else f"{r['psnr_restored']:.2f} dB"
        lines.append(
            f"| {variant} | {r['step']} | {v['ccc']:.3f} | {a['ccc']:.3f} | {v['pcc']:.3f} | {a['pcc']:.3f} "
            f"| {v['rmse']:.3f} | {a['rmse']:.3f} | {r['ccc_degraded']['valence']:.3f} "
            f"| {r['ccc_degraded']['arousal']:.3f} | {r['psnr_degraded']:.2f} dB | {restored} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
