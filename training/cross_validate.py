"""Train and score every SEWA cross-validation fold with one command; rerunning it finishes what a kill left.

    python -m training.cross_validate --config configs/sewa.yaml [--folds 0,1,2,3,4] [--jobs N]
        [--nproc-per-node N] run.dir=OUT [KEY=VALUE ...]

Fold *k* trains with ``train.py --config PRESET data.fold=k run.dir=OUT/fold<k> run.resume=auto`` (a normal run
folder). A fold whose ``last.pt`` has reached ``train.max_steps`` is skipped; an interrupted one continues from its
``last.pt`` (bit-exact, as any ``run.resume``), so the same command after a kill or a preemption completes the
work. Then every fold's selected checkpoint (``best.pt``, chosen on the fold's validation fold; ``last.pt`` when
there is none) is scored by ``evaluate.py`` on its test fold with the official AVEC 2019 protocol, and the fold
table (one row per fold, then mean and sample std) is written to ``OUT/folds.md``, ``OUT/folds.csv`` and
``OUT/folds.json``; ``OUT/scores/`` keeps each fold's official files, metrics and the optimistic-score flag.

``--jobs N`` trains N folds at once in separate processes, splitting the CPU threads between them (a CPU
machine). ``--nproc-per-node N`` trains each fold with ``torchrun --standalone --nproc_per_node N``: every fold
uses all N ranks, one fold after the other. (Running this command itself under torchrun is refused: each rank
would start its own copy of every fold.) Baseline presets (``configs/baselines/*.yaml``) work the same way with
``data.dataset=sewa``.

Training and scoring run as subprocesses of the entry points ``train.py`` and ``evaluate.py``: a package never
imports an entry point, and a fold's process is then exactly what a user would have run by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from fileio.atomic import atomic_open, write_json
from runconfig import ConfigError, load_config, run_cli

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("cross_validate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.cross_validate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML preset (e.g. configs/sewa.yaml)")
    parser.add_argument("--folds", default=None, help="comma-separated test folds (default: all of sewa.num_folds)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once (CPU; threads split between them)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="train each fold with torchrun on N ranks")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every fold; run.dir=OUT")
    args = parser.parse_intermixed_args(argv)   # options may come after KEY=VALUE overrides too
    if args.jobs < 1 or args.nproc_per_node < 1:
        parser.error("--jobs and --nproc-per-node must be >= 1")
    return args


def fold_list(spec: str | None, num_folds: int) -> list[int]:
    """``"0,2,4"`` -> [0, 2, 4], checked against ``sewa.num_folds``; None -> every fold."""
    if spec is None:
        return list(range(num_folds))
    try:
        folds = [int(f) for f in spec.split(",") if f.strip()]
    except ValueError:
        raise ConfigError(f"--folds takes comma-separated fold numbers, got {spec!r}") from None
    bad = [f for f in folds if not 0 <= f < num_folds]
    if bad or not folds or len(set(folds)) != len(folds):
        raise ConfigError(f"--folds {spec!r}: folds must be distinct numbers in [0, {num_folds - 1}] "
                          f"(sewa.num_folds={num_folds})")
    return folds


def fold_state(run_dir: Path, max_steps: int) -> str:
    """``"done"`` (last.pt at max_steps), ``"partial"`` (a last.pt short of it) or ``"new"``."""
    last = run_dir / "last.pt"
    if not last.is_file():
        return "new"
    try:
        step = int(torch.load(last, map_location="cpu", weights_only=True)["step"])
    except Exception as exc:   # a checkpoint torn by a kill: train.py's resume reports it precisely
        log.warning("%s: unreadable (%s); the fold is resumed and train.py decides", last, exc)
        return "partial"
    return "done" if step >= max_steps else "partial"


class FoldRunner:
    """Launches the folds' training processes; stops launching (and forwards the signal) when told to stop."""

    def __init__(self, args: argparse.Namespace, out: Path, max_steps: int):
        self.args, self.out, self.max_steps = args, out, max_steps
        self.threads = max(1, (os.cpu_count() or 1) // args.jobs)
        self.stopping = False
        self.children: set[subprocess.Popen] = set()

    def command(self, fold: int) -> list[str]:
        overrides = [o for o in self.args.overrides if not o.startswith(("run.dir=", "data.fold=", "run.resume="))]
        fold_args = ["--config", self.args.config, *overrides, f"data.fold={fold}",
                     f"run.dir={self.out / f'fold{fold}'}", "run.resume=auto"]
        if self.args.jobs > 1:
            fold_args.append(f"train.threads={self.threads}")
        if self.args.nproc_per_node > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={self.args.nproc_per_node}", "train.py", *fold_args]
        return [sys.executable, "train.py", *fold_args]

    def train(self, fold: int) -> int:
        """Train (or resume, or skip) one fold; its output goes to ``OUT/fold<k>.log``."""
        run_dir = self.out / f"fold{fold}"
        state = fold_state(run_dir, self.max_steps)
        if state == "done":
            print(f"fold {fold}: finished ({run_dir / 'last.pt'} at step {self.max_steps}); skipped", flush=True)
            return 0
        if self.stopping:
            return 130
        print(f"fold {fold}: {'resuming' if state == 'partial' else 'training'} -> {run_dir} "
              f"(log {self.out / f'fold{fold}.log'})", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)} if self.args.jobs > 1 else dict(os.environ)
        started = time.perf_counter()
        with (self.out / f"fold{fold}.log").open("a") as fh:
            child = subprocess.Popen(self.command(fold), cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)   # signals reach it through stop() only
            self.children.add(child)
            code = child.wait()
            self.children.discard(child)
        minutes = (time.perf_counter() - started) / 60
        print(f"fold {fold}: {'done' if code == 0 else f'stopped (exit {code})'} after {minutes:.1f} min", flush=True)
        return code

    def stop(self, signum, _frame) -> None:
        """SIGTERM / SIGINT: launch no more folds and pass the signal on; each train.py saves and exits."""
        self.stopping = True
        for child in list(self.children):
            if child.poll() is None:
                child.send_signal(signum)


def score(out: Path, folds: list[int]) -> int:
    """``evaluate.py`` on every fold's selected checkpoint; the fold table is copied to ``OUT/``."""
    checkpoints = []
    for fold in folds:
        run_dir = out / f"fold{fold}"
        checkpoints.append(str(run_dir / "best.pt") if (run_dir / "best.pt").is_file() else str(run_dir / "last.pt"))
    scores = out / "scores"
    cmd = [sys.executable, "evaluate.py", "--checkpoint", *checkpoints, "--out", str(scores),
           "--max-trace-plots", "0"]
    print("scoring: " + " ".join(cmd[1:]), flush=True)
    code = subprocess.run(cmd, cwd=REPO).returncode
    if code != 0:
        return code
    for name in ("folds.md", "folds.csv", "folds.json"):
        if len(folds) > 1:
            with atomic_open(out / name, "wb") as fh:
                fh.write((scores / name).read_bytes())
    if len(folds) == 1:   # one checkpoint: evaluate.py writes metrics.json instead of a fold table
        metrics = json.loads((scores / "metrics.json").read_text())
        write_json(out / "folds.json", {"folds": [metrics]}, indent=2)
    return 0


def cross_validate(args: argparse.Namespace) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("run python -m training.cross_validate itself without torchrun; give --nproc-per-node N "
                          "to train each fold on N ranks")
    cfg = load_config(args.config, args.overrides)
    if cfg.data.dataset != "sewa":
        raise ConfigError(f"cross-validation runs over SEWA's folds; this config trains on {cfg.data.dataset!r} "
                          "(set data.dataset=sewa)")
    if cfg.data.sewa.protocol != "folds":
        raise ConfigError(f"sewa.protocol={cfg.data.sewa.protocol} has one fixed split, not folds: train it with "
                          f"python train.py --config {args.config} ... and score it with python evaluate.py "
                          "--checkpoint RUN/best.pt")
    folds = fold_list(args.folds, cfg.data.sewa.num_folds)
    out = Path(cfg.run.dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = FoldRunner(args, out, cfg.train.max_steps)
    previous = {s: signal.signal(s, runner.stop) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            codes = list(pool.map(runner.train, folds))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = {f: c for f, c in zip(folds, codes, strict=True) if c != 0}
    if failed:
        print(f"not finished: fold(s) {', '.join(map(str, failed))}; rerun the same command to complete them",
              file=sys.stderr)
        return 130 if runner.stopping else max(failed.values())
    code = score(out, folds)
    print(f"{len(folds)} fold(s) in {(time.perf_counter() - started) / 60:.1f} min; fold table: {out / 'folds.md'}")
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return run_cli(lambda: cross_validate(args))


if __name__ == "__main__":
    sys.exit(main())
