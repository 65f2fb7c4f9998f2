"""Train ALN: ``python train.py [--config PRESET] [--dry-run] [KEY=VALUE ...]``.

The default preset is ``configs/demo.yaml`` (variant ``aeg_cd_sz`` on the built-in demo data). Examples::

    python train.py                                   # demo run into runs/demo
    python train.py train.max_steps=200 run.dir=runs/quick
    python train.py --config configs/affwild2.yaml data.root=/data/Aff-Wild2
    python train.py run.resume=runs/demo/last.pt      # continue exactly where it stopped

The loop is iteration based: every iteration is one D step; every ``train.n_critic``-th iteration is
also a G step. The run folder receives ``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.jsonl`` and
TensorBoard events under ``tb/``. Ctrl-C or SIGTERM saves ``last.pt`` before leaving (a data-parallel job at
the next log step, every process at the same step).

Data-parallel training: ``torchrun --standalone --nproc_per_node=N train.py [KEY=VALUE ...]`` (one
process per GPU, or N CPU processes with gloo), across machines with ``--nnodes``/``--rdzv_endpoint``.
``train.batch_size`` is the global batch; each process takes its share of the same sample stream; every
process validates its share of the validation frames; rank 0 alone writes the run folder
(``training/distributed.py`` says how gradients are synchronised).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from gan.checkpoint import load_checkpoint
from runconfig import DEFAULT_PRESET, RunConfig, build_config, dump_yaml, load_config, run_cli
from training.aln_loop import Trainer
from training.run_control import run_to_end
from training.sequence_loop import SequenceTrainer

log = logging.getLogger("train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_PRESET), help="YAML preset (default: configs/demo.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=200")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, dict | None]:
    """Preset + overrides; when resuming, the checkpoint's config + the same overrides (no preset).

    ``run.resume=auto`` continues from ``run.dir``'s ``last.pt`` when there is one and starts afresh
    otherwise, so a job scheduler can rerun the same command after a kill or a preemption.
    """
    resume = [o.split("=", 1)[1] for o in args.overrides if o.startswith("run.resume=")]
    if resume and resume[-1] == "auto":
        fresh = load_config(args.config, [*args.overrides, "run.resume="])
        last = Path(fresh.run.dir) / "last.pt"
        if not last.is_file():
            log.info("run.resume=auto: no %s; starting a fresh run", last)
            return dataclasses.replace(fresh, run=dataclasses.replace(fresh.run, overwrite=True)), None
        log.info("run.resume=auto: continuing from %s", last)
        resume = [str(last)]
        args.overrides = [*args.overrides, f"run.resume={last}"]
    if not resume or not resume[-1]:
        return load_config(args.config, args.overrides), None
    ckpt = load_checkpoint(resume[-1])
    return build_config(ckpt["config"], args.overrides), ckpt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        return run_cli(lambda: run(args))
    except KeyboardInterrupt:  # before the loop installs its handler (data generation, feature extraction)
        print("interrupted before training started; nothing to save", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    cfg, ckpt = resolve_config(args)
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        return 0
    if cfg.system != "aln":   # a baseline system: whole-recording sequences (training/sequence_loop.py)
        return run_to_end(SequenceTrainer(cfg, ckpt))
    trainer = Trainer(cfg, ckpt)
    try:
        return run_to_end(trainer)
    finally:
        trainer.dist.close()


if __name__ == "__main__":
    sys.exit(main())
