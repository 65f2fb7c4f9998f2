"""Ablation of the ALN variants, trained progressively as the paper did, at equal total budget.

    python experiments/ablation.py [--steps N] [--seeds 0 1 2] [--jobs 2] [--out runs/ablation] [KEY=VALUE ...]

Each variant is trained the way the paper trained it (§III-E, §V), at the same number of iterations
(``train.max_steps`` of the preset, or ``--steps``), for every seed:

* ``disc`` — the CD alone on clean faces, one stage;
* ``aeg_cd`` — the preset's stages up to ``aeg_cd`` (denoising pre-training, then the adversarial pair);
* ``aeg_cd_sz`` — all of the preset's stages (denoise -> aeg_cd -> aeg_cd_sz).

Every final checkpoint is scored with ``evaluate.py`` (ABAW protocol on the validation split): CCC of the
test-time path on the clean frames (the headline) and on the same frames degraded (fixed seeds), and the
restoration PSNR/SSIM of the mixed degradation against the clean faces. The table gives mean ± sample std
over seeds and is written to ``--out/ablation.md`` and ``--out/ablation.json``. Extra ``KEY=VALUE``
overrides go to every run. Runs already finished in ``--out`` are reused (delete the folder to redo them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("disc", "aeg_cd", "aeg_cd_sz")
COLUMNS = (("ccc_valence", "CCC V"), ("ccc_arousal", "CCC A"), ("deg_ccc_valence", "CCC V (degraded in)"),
           ("deg_ccc_arousal", "CCC A (degraded in)"), ("psnr_restored", "PSNR restored"),
           ("psnr_degraded", "PSNR degraded"), ("ssim_restored", "SSIM restored"), ("ssim_degraded", "SSIM degraded"))


def stages_for(variant: str, preset_stages: list[dict], scale: float = 1.0) -> list[dict]:
    """The preset's progressive stages that lead up to ``variant``; the last one runs to max_steps.

    ``scale`` shortens or lengthens earlier stages given in ``steps`` with the total budget (``--steps`` /
    preset steps), so every stage keeps its share of the run; stages given as a ``share`` scale by themselves.
    """
    if variant == "disc":
        return [{"variant": "disc", "steps": 0}]
    names = [s["variant"] for s in preset_stages]
    if variant not in names:
        kept = [*([s for s in preset_stages if s["variant"] == "denoise"][:1]), {"variant": variant}]
    else:
        kept = preset_stages[: names.index(variant) + 1]
    earlier = [{**s, "steps": max(1, round(s["steps"] * scale))} if s.get("steps") else dict(s) for s in kept[:-1]]
    return [*earlier, {**{k: v for k, v in kept[-1].items() if k != "share"}, "steps": 0}]


def flow(stages: list[dict]) -> str:
    def one(s: dict) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in s.items()) + "}"
    return "[" + ", ".join(one(s) for s in stages) + "]"


def run_one(variant: str, seed: int, args: argparse.Namespace, preset: dict, threads: int) -> dict:
    run_dir = Path(args.out) / f"{variant}-seed{seed}"
    metrics_path = run_dir / "eval" / "metrics.json"
    if not metrics_path.is_file():
        preset_steps = preset.get("train", {}).get("max_steps") or args.steps
        scale = args.steps / preset_steps if args.steps else 1.0
        stages = stages_for(variant, preset.get("train", {}).get("stages", []), scale)
        overrides = [f"model.variant={variant}", f"seed={seed}", f"run.dir={run_dir}", "run.overwrite=true",
                     f"train.stages={flow(stages)}", f"train.threads={threads}", *args.overrides]
        if args.steps:
            overrides.append(f"train.max_steps={args.steps}")
        log = (Path(args.out) / f"{variant}-seed{seed}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as fh:
            for cmd in ([sys.executable, "train.py", "--config", args.config, *overrides],
                        [sys.executable, "evaluate.py", "--checkpoint", str(run_dir / "last.pt"),
                         "--out", str(run_dir / "eval"), "--max-trace-plots", "0"]):
                print("+", " ".join(cmd), flush=True)
                subprocess.run(cmd, cwd=REPO, check=True, stdout=fh, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    m = json.loads(metrics_path.read_text())
    deg = m["views"].get("degraded", {})
    rest = m["restoration"].get("all", {})
    return {"variant": variant, "seed": seed, "step": m["step"],
            "ccc_valence": m["valence"]["ccc"], "ccc_arousal": m["arousal"]["ccc"],
            "deg_ccc_valence": deg.get("valence", {}).get("ccc"), "deg_ccc_arousal": deg.get("arousal", {}).get("ccc"),
            "psnr_restored": rest.get("psnr_restored") if variant != "disc" else None,
            "psnr_degraded": rest.get("psnr_degraded"),
            "ssim_restored": rest.get("ssim_restored") if variant != "disc" else None,
            "ssim_degraded": rest.get("ssim_degraded")}


def summarise(rows: list[dict]) -> dict:
    """{variant: {column: (mean, std, n)}} over seeds (sample std, ddof=1)."""
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out[variant] = {}
        for key, _ in COLUMNS:
            values = np.array([r[key] for r in mine if r[key] is not None], dtype=float)
            out[variant][key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                 len(values)) if len(values) else None
    return out


def format_table(summary: dict, steps: int, seeds: list[int]) -> str:
    head = "| variant | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [f"{steps} iterations per run, seeds {', '.join(map(str, seeds))}; mean ± std over seeds", "",
             head, "|" + "---|" * (len(COLUMNS) + 1)]
    for variant, cols in summary.items():
        cells = []
        for key, _ in COLUMNS:
            cell = cols[key]
            unit = " dB" if key.startswith("psnr") else ""
            digits = 2 if key.startswith("psnr") else 3
            cells.append("n/a" if cell is None else f"{cell[0]:.{digits}f} ± {cell[1]:.{digits}f}{unit}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="train.max_steps for every run (default: preset)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--out", default="runs/ablation", help="folder for the runs and the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (threads split between them)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    preset = yaml.safe_load(Path(args.config).read_text()) or {}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda job: run_one(*job, args, preset, threads), jobs))
    steps = rows[0]["step"]
    summary = summarise(rows)
    table = format_table(summary, steps, args.seeds)
    print(table)
    out = Path(args.out)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps({"runs": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
