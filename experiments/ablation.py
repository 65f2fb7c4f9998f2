"""Ablation of the ALN variants, trained progressively as the paper did, at equal critic iterations.

    python -m experiments.ablation [--critic-steps C] [--denoise-steps D] [--seeds 0 1 2] [--jobs 2]
        [--out runs/ablation] [KEY=VALUE ...]

Every variant's critic (the CD) gets the same number of iterations C, so the variants differ in what the
CD sees, not in how long it learnt; the AEG's denoising pre-training (D iterations, no critic) comes on top
for the variants that have an AEG, as in the paper (§III-E, §V):

* ``disc`` — the CD alone on clean faces: C iterations, one stage;
* ``disc_aug`` — the CD alone on the degradation mix the AEG variants' generator sees (plain augmentation): the same;
* ``aeg_cd`` — denoise D, then the adversarial pair for C iterations;
* ``aeg_cd_sz`` — denoise D, then ``aeg_cd`` and ``aeg_cd_sz`` sharing the C iterations in the preset's ratio
  (the demo preset: 300 : 900, so a quarter of C for ``aeg_cd``).

The defaults are the preset's own budget (demo: C = 1,200, D = 1,800). Every final checkpoint is scored with
``evaluate.py`` (ABAW protocol on the validation split): CCC of the test-time path on the clean frames (the
headline) and on the same frames degraded (fixed seeds), and the restoration PSNR/SSIM of the mixed
degradation against the clean faces. The table gives mean ± sample std over seeds and is written to
``--out/ablation.md`` and ``--out/ablation.json``. Extra ``KEY=VALUE`` overrides go to every run. Runs already
finished in ``--out`` are reused (delete the folder to redo them). ``evaluate.py --checkpoint
OUT/*/last.pt --robustness`` then scores them all against the corruption protocol.
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

from bench.cli import write_report
from fileio.atomic import write_text
from scoring.plots import markdown_table

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("disc", "disc_aug", "aeg_cd", "aeg_cd_sz")
WITHOUT_AEG = ("disc", "disc_aug")
COLUMNS = (("ccc_valence", "CCC V"), ("ccc_arousal", "CCC A"), ("deg_ccc_valence", "CCC V (degraded in)"),
           ("deg_ccc_arousal", "CCC A (degraded in)"), ("psnr_restored", "PSNR restored"),
           ("psnr_degraded", "PSNR degraded"), ("ssim_restored", "SSIM restored"), ("ssim_degraded", "SSIM degraded"))


def preset_budget(preset: dict) -> tuple[int, int, float]:
    """(critic iterations, denoise iterations, ``aeg_cd``'s part of the critic iterations) of a preset."""
    train = preset.get("train", {})
    total = int(train.get("max_steps", 0))
    lengths = {}
    for stage in train.get("stages", []):
        lengths[stage["variant"]] = stage.get("steps") or round(stage.get("share", 0.0) * total)
    denoise = lengths.get("denoise", 0)
    critic = total - denoise
    return critic, denoise, (lengths.get("aeg_cd", 0) / critic if critic and "aeg_cd_sz" in lengths else 0.0)


def stages_for(variant: str, preset_stages: list[dict], critic: int, denoise: int, aeg_cd_part: float
               ) -> tuple[list[dict], int]:
    """``(train.stages, train.max_steps)`` giving ``variant`` ``critic`` CD iterations after ``denoise`` ones.

    The denoise stage keeps the preset's other settings (its learning rate); ``aeg_cd_sz`` spends
    ``aeg_cd_part`` of the critic iterations in ``aeg_cd`` first, as the preset does.
    """
    if variant in WITHOUT_AEG:
        return [{"variant": variant, "steps": 0}], critic
    preset_denoise = next((s for s in preset_stages if s["variant"] == "denoise"), {"variant": "denoise"})
    stages = [{**{k: v for k, v in preset_denoise.items() if k != "share"}, "steps": denoise}] if denoise else []
    if variant == "aeg_cd_sz" and aeg_cd_part > 0:
        stages.append({"variant": "aeg_cd", "steps": max(1, round(critic * aeg_cd_part))})
    stages.append({"variant": variant, "steps": 0})
    return stages, denoise + critic


def flow(stages: list[dict]) -> str:
    def one(s: dict) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in s.items()) + "}"
    return "[" + ", ".join(one(s) for s in stages) + "]"


def run_one(variant: str, seed: int, args: argparse.Namespace, preset: dict, threads: int) -> dict:
    run_dir = Path(args.out) / f"{variant}-seed{seed}"
    metrics_path = run_dir / "eval" / "metrics.json"
    if not metrics_path.is_file():
        stages, max_steps = stages_for(variant, preset.get("train", {}).get("stages", []), *args.budget)
        overrides = [f"model.variant={variant}", f"seed={seed}", f"run.dir={run_dir}", "run.overwrite=true",
                     f"train.stages={flow(stages)}", f"train.max_steps={max_steps}", f"train.threads={threads}",
                     *args.overrides]
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
    return {"variant": variant, "seed": seed, "step": m["step"], "checkpoint": str(run_dir / "last.pt"),
            "ccc_valence": m["valence"]["ccc"], "ccc_arousal": m["arousal"]["ccc"],
            "deg_ccc_valence": deg.get("valence", {}).get("ccc"), "deg_ccc_arousal": deg.get("arousal", {}).get("ccc"),
            "psnr_restored": rest.get("psnr_restored") if variant not in WITHOUT_AEG else None,
            "psnr_degraded": rest.get("psnr_degraded"),
            "ssim_restored": rest.get("ssim_restored") if variant not in WITHOUT_AEG else None,
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


def format_table(summary: dict, budget: tuple[int, int, float], seeds: list[int]) -> str:
    critic, denoise, part = budget
    rows = []
    for variant, cols in summary.items():
        row = {"variant": variant}
        for key, label in COLUMNS:
            cell = cols[key]
            unit = " dB" if key.startswith("psnr") else ""
            digits = 2 if key.startswith("psnr") else 3
            row[label] = "n/a" if cell is None else f"{cell[0]:.{digits}f} ± {cell[1]:.{digits}f}{unit}"
        rows.append(row)
    return (f"{critic} critic iterations per run (aeg_cd_sz: {round(critic * part)} of them in aeg_cd), plus "
            f"{denoise} denoise iterations for the AEG variants; seeds {', '.join(map(str, seeds))}; "
            "mean ± std over seeds\n\n" + markdown_table(rows, ["variant", *(label for _, label in COLUMNS)]).rstrip("\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic-steps", type=int, default=None,
                        help="CD iterations of every run (default: the preset's non-denoise iterations)")
    parser.add_argument("--denoise-steps", type=int, default=None,
                        help="denoise iterations before them, AEG variants only (default: the preset's)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--out", default="runs/ablation", help="folder for the runs and the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (threads split between them)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    preset = yaml.safe_load(Path(args.config).read_text()) or {}
    critic, denoise, part = preset_budget(preset)
    args.budget = (args.critic_steps or critic, denoise if args.denoise_steps is None else args.denoise_steps, part)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda job: run_one(*job, args, preset, threads), jobs))
    summary = summarise(rows)
    table = format_table(summary, args.budget, args.seeds)
    print(table)
    out = Path(args.out)
    write_text(out / "ablation.md", table + "\n")
    write_report(out / "ablation.json", {"budget": dict(zip(("critic", "denoise", "aeg_cd_part"), args.budget,
                                                            strict=True)), "runs": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
