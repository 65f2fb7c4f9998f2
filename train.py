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
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.preprocess.audio import AudioStandardiser
from data.samples.dataset import faces_to_float
from data.samples.loaders import build_dataset, load_split, train_loader
from gan.checkpoint import load_checkpoint, restore_rng_state, rng_state
from gan.inference import tune_for_fixed_shapes
from gan.losses import class_balance_weights
from gan.stages import plan_stages
from runconfig import (
    DEFAULT_PRESET,
    ConfigError,
    RunConfig,
    build_config,
    dump_yaml,
    load_config,
    resolve_device,
    run_cli,
    to_dict,
)
from training.distributed import Distributed
from training.run_folder import RunFolder, RunLog
from training.sequence_loop import train_sequences
from training.stepper import ALNStepper
from training.validation import Validator

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


class Trainer:
    """One training run, all its stages: data, stepper, validator and run folder, and the loop over them."""

    def __init__(self, cfg: RunConfig, ckpt: dict | None):
        self.cfg = cfg
        device = resolve_device(cfg.train.device)
        self.dist = Distributed.from_environment(device)
        self.device = self.dist.device(device)
        tune_for_fixed_shapes(self.device)
        if not self.dist.is_main:   # one voice: rank 0 reports progress, the others only warnings
            logging.getLogger().setLevel(logging.WARNING)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        try:   # checked before any data is loaded; the stepper keeps this process's shard
            self.dist.shard(cfg.train.batch_size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.folder = RunFolder(cfg, resuming=ckpt is not None) if self.dist.is_main else None
        self.plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
        balance = self._load_data(ckpt)
        self.stepper = ALNStepper(cfg, cfg.data.audio.dim, balance, self.device, self.dist)
        self.step, self.best_score, self.best_step = 0, -float("inf"), -1
        self.validation_seconds = 0.0   # wall time spent in validation by this process (the done: line)
        self.stepper.build_stage(self.plan[ckpt.get("stage", 0)] if ckpt else self.plan[0])
        if ckpt:
            self._restore(ckpt)
        elif cfg.run.init_from:
            copied, fresh = self.stepper.model.start_from_stage(load_checkpoint(cfg.run.init_from)["model"])
            self.dist.broadcast_module(self.stepper.model)
            log.info("initialised %d tensors from %s; %d new (%s)", copied, cfg.run.init_from, len(fresh),
                     ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))
        self.runlog = RunLog(self.folder.path, self.step if ckpt else None) if self.dist.is_main else None
        self.stop_requested = False   # set by a signal handler of this process
        self.stop_agreed = False      # some process's stop request, as agreed on at the latest log step

    def _load_data(self, ckpt: dict | None) -> torch.Tensor:
        """Training set, validator and the class-balance table, computed once on rank 0 and shared.

        Rank 0 loads first: it generates the demo data and fills the feature caches, fits the audio
        standardiser and the balance table; the other ranks then read the caches with rank 0's statistics.
        """
        cfg, dist = self.cfg, self.dist
        standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"]) if ckpt else None
        if dist.is_main:
            train_split, standardiser = load_split(cfg.data, "training", standardiser)
        standardiser = AudioStandardiser.from_state_dict(dist.broadcast_object(
            standardiser.state_dict() if dist.is_main else None))
        if not dist.is_main:
            train_split, _ = load_split(cfg.data, "training", standardiser)
        self.standardiser = standardiser
        # the generator always gets a "degraded" input; with degradations off it is the clean face itself
        uses_aeg = any(stage.model_variant != "disc" for stage in self.plan)
        # uint8 faces from the loader's workers; the float conversion runs on the training device (train_step)
        self.train_set = build_dataset(train_split, cfg.model.image_size, cfg.data.degrade if uses_aeg else None,
                                       faces_as_uint8=True)
        val_split, _ = load_split(cfg.data, "val", standardiser)   # every rank validates its share
        self.validator = Validator(cfg, val_split, self.device, dist)
        balance = ckpt["balance_table"] if ckpt else (
            class_balance_weights(torch.from_numpy(self.train_set.labels), cfg.loss.balance_bins, cfg.loss.balance_clip)
            if dist.is_main else None)
        return dist.broadcast_object(balance)

    @property
    def stage(self):
        return self.stepper.stage

    def _restore(self, ckpt: dict) -> None:
        self.stepper.load_state_dict(ckpt, self.cfg.run.resume)
        restore_rng_state(ckpt["rng"])
        self.step, self.best_score, self.best_step = ckpt["step"], ckpt["best_score"], ckpt["best_step"]
        log.info("resumed from %s at step %d (stage %s)", self.cfg.run.resume, self.step, self.stage.name)

    def state(self) -> dict:
        """The checkpoint: everything a bit-exact resume, evaluate.py and predict.py need."""
        return {"step": self.step, "config": to_dict(self.cfg), **self.stepper.state_dict(), "rng": rng_state(),
                "audio_stats": self.standardiser.state_dict(), "balance_table": self.stepper.balance,
                "best_score": self.best_score, "best_step": self.best_step}

    def enter_next_stage(self) -> None:
        self.stepper.next_stage(self.plan[self.stage.index + 1])
        self.best_score, self.best_step = -float("inf"), -1   # best.pt is chosen within a stage
        if self.runlog:
            self.runlog.stage(self.step, self.stage)
        log.info("stage %s: steps %d..%d", self.stage.name, self.stage.start + 1, self.stage.end)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One iteration on ``batch`` (a loader's batch, on any device, faces uint8 or float): moved to the
        training device, faces converted there."""
        batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return self.stepper.train_step(faces_to_float(batch), self.step)

    def log_step(self, logs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scalars of this step, averaged over processes (= the global batch's); rank 0 writes them.

        The only host reads of the loop happen here (and in validation). The stop flag of a data-parallel
        job is agreed on in the same all-reduce (``stop_agreed``).
        """
        averaged, stop = self.dist.log_mean_and_stop(logs, self.stop_requested, self.device)
        self.stop_agreed = self.stop_requested if stop is None else float(stop) > 0
        values = {k: float(v) for k, v in averaged.items()}
        bad = next((k for k, v in values.items() if not np.isfinite(v)), None)
        if bad:
            raise FloatingPointError(f"{bad} is not finite at step {self.step}")
        values["lr/g" if self.stepper.opt_d is None else "lr/d"] = self.stepper.learning_rate()
        values["stage"] = self.stage.index
        if self.device.type == "cuda":   # this process's peak since start: what a batch size or image size costs
            values["sys/gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.runlog:
            self.runlog.scalars(self.step, values)
        return values

    def validate_and_save(self, stage_done: bool) -> dict[str, float]:
        """Validation, ``best.pt`` (chosen within a critic-training stage), ``last.pt``, stage checkpoint.

        Every rank validates its share of the frames and ends with the same scores; rank 0 alone logs and
        writes the checkpoints (the others wait for it at the next collective while it saves).
        """
        started = time.perf_counter()
        # a denoise stage trains no CD: its V/A would be an untrained network's, so it scores restoration only
        scores = self.validator.run(self.stepper.model, self.step, self.stage.index, self.runlog,
                                    affect=self.stage.trains_critic)
        self.validation_seconds += time.perf_counter() - started
        ccc = {d: scores[d]["ccc"] for d in scores}
        score = float(np.mean(list(ccc.values()))) if ccc else -float("inf")
        best = self.stage.trains_critic and score > self.best_score and "val" not in self.cfg.data.train_splits
        if best:   # every rank keeps the same best score, so a rank-0 checkpoint resumes on any rank
            self.best_score, self.best_step = score, self.step
        if not self.dist.is_main:
            return ccc
        if best:
            self.folder.save("best.pt", {**self.state(), "selected_on": "val"})   # evaluate.py flags scores on it
        self.folder.save("last.pt", self.state())
        if stage_done and not self.stage.is_last:
            self.folder.keep_stage_checkpoint(self.stage)
        return ccc

    def fit(self) -> int:
        t = self.cfg.train
        if self.step >= t.max_steps:
            log.info("checkpoint is already at step %d >= train.max_steps=%d; nothing to do", self.step, t.max_steps)
            return 0
        stream = iter(train_loader(self.train_set, t.batch_size, self.cfg.seed, self.step, self.cfg.data.num_workers,
                                   pin_memory=self.device.type == "cuda", shard=self.stepper.shard))
        main = self.dist.is_main
        if self.step == self.stage.start and main:
            self.runlog.stage(self.step, self.stage)
        bar = tqdm(total=t.max_steps, initial=self.step, dynamic_ncols=True, mininterval=1.0, file=sys.stderr,
                   disable=not main)
        postfix: dict[str, str] = {}
        last_val: dict[str, float] = {}
        self.stepper.model.train()
        started = time.time()
        try:
            while self.step < t.max_steps:
                if self.step >= self.stage.end:
                    self.enter_next_stage()
                    self.stepper.model.train()
                bar.set_description(f"{self.stage.name}", refresh=False)
                logs = self.train_step(next(stream))
                self.step += 1
                bar.update(1)
                stage_done = self.step == self.stage.end
                logged = self.step % t.log_every == 0 or stage_done
                if logged:
                    values = self.log_step(logs)
                    postfix.update({k: f"{values[k]:.3f}" for k in ("D/loss", "G/loss", "G/denoise") if k in values})
                if self.step % t.eval_every == 0 or stage_done:
                    last_val = self.validate_and_save(stage_done) or last_val
                    if last_val:
                        postfix["val_ccc"] = f"V {last_val['valence']:.3f} A {last_val['arousal']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                if self.stop_requested if not self.dist.enabled else (logged and self.stop_agreed):
                    bar.close()
                    if main:
                        path = self.folder.save("last.pt", self.state())
                        print(f"interrupted at step {self.step}; saved {path}; continue with run.resume={path}",
                              file=sys.stderr)
                    return 130
        finally:
            bar.close()
            del stream
        if main:
            self.runlog.hparams(self.cfg, {f"hparam/ccc_{d}": v for d, v in last_val.items()}, self.step)
            self.runlog.close()
            minutes = (time.time() - started) / 60
            print(f"done: {self.step} steps in {minutes:.1f} min (validation {self.validation_seconds / 60:.1f} min of "
                  f"it); best mean val CCC {self.best_score:.3f} at step {self.best_step}; run folder "
                  f"{self.folder.path}", file=sys.stderr)
        return 0


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
    if cfg.system != "aln":   # a baseline of papers/: whole-recording sequences (training/sequence_loop.py)
        try:
            return train_sequences(cfg, ckpt)
        except FloatingPointError as exc:
            print(f"error: training diverged: {exc}; last.pt holds the last finite state", file=sys.stderr)
            return 3
    trainer = Trainer(cfg, ckpt)

    def request_stop(signum, _frame):
        trainer.stop_requested = True
        log.warning("signal %d: stopping after this step and saving last.pt", signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        return trainer.fit()
    except FloatingPointError as exc:
        print(f"error: training diverged: {exc}; last.pt holds the last finite state", file=sys.stderr)
        return 3
    finally:
        trainer.dist.close()


if __name__ == "__main__":
    sys.exit(main())
