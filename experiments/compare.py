"""Every system of docs/baselines.md on the same data, scored by the same protocol: one markdown table.

    python -m experiments.compare                 # train what is missing, score everything, write the table
    python -m experiments.compare --retrain       # train every system afresh
    python -m experiments.compare --systems aln,aln_t,pandit_d

Each row is ALN or a preset of ``configs/baselines/``: trained by ``python train.py --config PRESET`` (skipped
when its run folder already holds a finished ``last.pt``) and scored by ``python evaluate.py --checkpoint
RUN/last.pt`` with the dataset's official protocol (the demo: ABAW's, over the concatenated frames of the
validation videos). ``last.pt`` (fixed steps), not ``best.pt``: a checkpoint selected on the validation split
and scored on it would be optimistic. Every number of the table comes from the ``metrics.json`` of the
command in its row; the table goes to ``docs/comparison.md`` (``--out``) and is printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fileio.atomic import write_text
from scoring.plots import markdown_table

REPO = Path(__file__).resolve().parents[1]


@dataclass
class System:
    name: str
    paper: str
    inputs: str
    preset: str          # path relative to the repository
    overrides: tuple[str, ...] = ()   # an ablation of the preset (with its own run.dir)

    def config(self):
        from train import load_config

        return load_config(str(REPO / self.preset), list(self.overrides))

    def run_dir(self) -> Path:
        return REPO / self.config().run.dir

    def max_steps(self) -> int:
        return int(self.config().train.max_steps)

    def train_command(self) -> list[str]:
        preset = [] if self.preset == "configs/demo.yaml" else ["--config", self.preset]
        return ["python", "train.py", *preset, *self.overrides]


SYSTEMS = [
    System("aln", "Aspandi et al. 2020 (ALN, per frame)", "faces + eGeMAPS", "configs/demo.yaml"),
    System("aln_t", "ALN-T (ours; the ALN paper's §V)", "ALN features", "configs/baselines/aln_t.yaml"),
    System("aln_t_va", "ALN-T ablation", "ALN's V/A only", "configs/baselines/aln_t.yaml",
           ("sequence.aln_parts=[va]", "run.dir=runs/aln_t_va")),
    System("aln_t_no_va", "ALN-T ablation", "ALN's z, audio, CD", "configs/baselines/aln_t.yaml",
           ("sequence.aln_parts=[z,audio,cd]", "run.dir=runs/aln_t_no_va")),
    *[System(f"pandit_{m}", "Pandit et al. (" + m.upper() + ")", "eGeMAPS" + (" subset" if m == "e" else ""),
             f"configs/baselines/pandit_{m}.yaml") for m in "abcde"],
    *[System(f"raju_{m}", f"Raju et al. ({m.upper()})", "faces + eGeMAPS", f"configs/baselines/raju_{m}.yaml")
      for m in ("eaf", "aed", "emafn")],
    System("temporal_attention", "Aminbeidokhti 2020, ch. 2", "faces", "configs/baselines/temporal_attention.yaml"),
    System("augmented_ensemble", "Aminbeidokhti 2020, ch. 3", "faces + eGeMAPS",
           "configs/baselines/augmented_ensemble.yaml"),
]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def finished(system: System) -> bool:
    """The run folder holds a finished ``last.pt`` of the preset as it is now.

    Settings are compared key by key (``run.*`` aside); a key the checkpoint predates must hold its default,
    which is the behaviour the run had. ALN-T also trains again when its ALN checkpoint is newer than it."""
    import torch

    from runconfig import RunConfig, to_dict

    last = system.run_dir() / "last.pt"
    if not last.is_file():
        return False
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    cfg = system.config()
    now, then, default = _flat(to_dict(cfg)), _flat(ckpt["config"]), _flat(to_dict(RunConfig()))
    changed = [k for k, v in now.items() if not k.startswith("run.") and then.get(k, default.get(k)) != v]
    if changed:
        print(f"{system.name}: {last} was trained with other settings ({', '.join(changed[:4])}); training again")
        return False
    source = cfg.sequence.aln_checkpoint if cfg.sequence.features == "aln" else ""
    source = REPO / source if source else None
    if source and source.is_file() and source.stat().st_mtime > last.stat().st_mtime:
        print(f"{system.name}: {source} is newer than {last}; training again")
        return False
    return int(ckpt["step"]) >= system.max_steps()


def run(command: list[str], log: Path) -> None:
    print("$ " + shlex.join(command), flush=True)
    started = time.time()
    with log.open("w") as fh:
        done = subprocess.run([sys.executable, *command[1:]], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed (exit {done.returncode}); its output is in {log}")
    print(f"  {time.time() - started:.0f} s", flush=True)


def score(system: System, retrain: bool) -> dict:
    run_dir = system.run_dir()
    train_cmd = system.train_command()
    if retrain or not finished(system):
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run(train_cmd, run_dir.parent / f"{system.name}.train.log")
    out = run_dir / "eval-compare"
    rel = run_dir.relative_to(REPO)
    eval_cmd = ["python", "evaluate.py", "--checkpoint", str(rel / "last.pt"), "--out", str(rel / "eval-compare")]
    run(eval_cmd, run_dir.parent / f"{system.name}.eval.log")
    metrics = json.loads((out / "metrics.json").read_text())
    row = {"system": system.name, "paper": system.paper, "inputs": system.inputs, "steps": metrics["step"]}
    for dim in ("valence", "arousal"):
        for m in ("ccc", "pcc", "rmse"):
            row[f"{m.upper()} {dim[0].upper()}"] = metrics[dim][m]
    row["commands"] = f"`{shlex.join(train_cmd)}`; `{shlex.join(eval_cmd)}`"
    return row


COLUMNS = ["system", "paper", "inputs", "steps", "CCC V", "CCC A", "PCC V", "PCC A", "RMSE V", "RMSE A", "commands"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="", help="comma-separated names (default: all): "
                        + ", ".join(s.name for s in SYSTEMS))
    parser.add_argument("--retrain", action="store_true", help="train every chosen system afresh")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "comparison.md")
    args = parser.parse_args(argv)
    wanted = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(wanted) - {s.name for s in SYSTEMS})
    if unknown:
        parser.error(f"unknown systems {unknown}; choose among {[s.name for s in SYSTEMS]}")
    chosen = [s for s in SYSTEMS if not wanted or s.name in wanted]   # table order: ALN first (ALN-T reads it)
    rows = [score(s, args.retrain) for s in chosen]
    table = markdown_table(rows, COLUMNS, ".3f")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = ("Demo data, validation split (32 videos), official ABAW protocol over the concatenated frames; "
              "`last.pt` of each run. Generated by `python -m experiments.compare`.\n\n")
    write_text(args.out, header + table + "\n")
    print(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
