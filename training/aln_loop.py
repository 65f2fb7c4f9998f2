"""ALN's training loop: one run, all its stages (``train.py`` builds a :class:`Trainer` and runs it to its end).

The loop is iteration based: every iteration is one D step; every ``train.n_critic``-th iteration is also a G
step (``training/stepper.py``). Logs every ``train.log_every`` steps (the loop's only host reads), validation and
checkpoints every ``train.eval_every`` steps and at each stage's end, ``best.pt`` chosen within a stage. The run
control (best-checkpoint rule, stop on a signal, save on interrupt, non-finite losses) is the one both trainers
share (``training/run_control.py``).
"""

from __future__ import annotations

import logging
import sys
import time

import torch
from tqdm import tqdm

from data.samples.dataset import faces_to_float
from data.samples.loaders import train_loader
from gan.checkpoint import restore_rng_state, rng_state
from gan.inference import tune_for_fixed_shapes
from gan.stages import plan_stages
from runconfig import ConfigError, RunConfig, resolve_device, to_dict
from training.aln_data import load_training_data
from training.distributed import Distributed
from training.run_control import INTERRUPTED, BestCheckpoint, StopFlag, check_finite, save_on_interrupt
from training.run_folder import RunFolder, RunLog
from training.stepper import ALNStepper

log = logging.getLogger("train")


def join_the_job(cfg: RunConfig) -> tuple[Distributed, torch.device]:
    """This process's place in the (possibly data-parallel) job and its device, with the process-wide settings:
    cuDNN autotuning, threads, the seed, and one voice (rank 0 reports progress, the others only warnings)."""
    device = resolve_device(cfg.train.device)
    dist = Distributed.from_environment(device)
    device = dist.device(device)
    tune_for_fixed_shapes(device)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    try:   # checked before any data is loaded; the stepper keeps this process's shard
        dist.shard(cfg.train.batch_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return dist, device


class Trainer:
    """One training run, all its stages: data, stepper, validator and run folder, and the loop over them."""

    def __init__(self, cfg: RunConfig, ckpt: dict | None):
        self.cfg = cfg
        self.dist, self.device = join_the_job(cfg)
        main = self.dist.is_main
        self.folder = RunFolder(cfg, resuming=ckpt is not None) if main else None
        self.plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
        self.data = load_training_data(cfg, self.plan, self.device, self.dist, ckpt)
        self.train_set, self.validator = self.data.train_set, self.data.validator
        self.stepper = ALNStepper(cfg.train, cfg.model, cfg.loss, cfg.seed, cfg.data.audio.dim, self.data.balance,
                                  self.device, self.dist)
        self.stepper.build_stage(self.plan[ckpt.get("stage", 0)] if ckpt else self.plan[0])
        self.step, self.validation_seconds = 0, 0.0   # validation's wall time in this process (the done: line)
        # every rank keeps the same best score, so a rank-0 checkpoint resumes on any rank
        self.best = BestCheckpoint(selectable="val" not in cfg.data.train_splits)
        if ckpt:
            self.stepper.load_state_dict(ckpt, cfg.run.resume)
            restore_rng_state(ckpt["rng"])
            self.step, self.best = ckpt["step"], self.best.resumed(ckpt)
            log.info("resumed from %s at step %d (stage %s)", cfg.run.resume, self.step, self.stage.name)
        elif cfg.run.init_from:
            self.stepper.start_from(cfg.run.init_from)
        self.runlog = RunLog(self.folder.path, self.step if ckpt else None) if main else None
        self.stop = StopFlag()      # set by a signal handler of this process (training/run_control.py)
        self.stop_agreed = False    # some process's stop request, as agreed on at the latest log step

    @property
    def stage(self):
        return self.stepper.stage

    def state(self) -> dict:
        """The checkpoint: everything a bit-exact resume, evaluate.py and predict.py need."""
        return {"step": self.step, "config": to_dict(self.cfg), **self.stepper.state_dict(), "rng": rng_state(),
                "audio_stats": self.data.standardiser.state_dict(), "balance_table": self.stepper.balance,
                **self.best.state()}

    def enter_next_stage(self) -> None:
        self.stepper.next_stage(self.plan[self.stage.index + 1])
        self.best.reset()   # best.pt is chosen within a stage
        if self.runlog:
            self.runlog.stage(self.step, self.stage)
        log.info("stage %s: steps %d..%d", self.stage.name, self.stage.start + 1, self.stage.end)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One iteration on ``batch`` (a loader's batch, on any device, faces uint8 or float): moved to the
        training device, faces converted there."""
        batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return self.stepper.train_step(faces_to_float(batch), self.step)

    def log_step(self, logs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scalars of this step, averaged over processes (= the global batch's), rank 0 writes them; the stop flag
        agreed on in the same all-reduce. The loop's only host reads are here (and in validation)."""
        averaged, stop = self.dist.log_mean_and_stop(logs, self.stop.requested, self.device)
        self.stop_agreed = self.stop.requested if stop is None else float(stop) > 0
        values = {k: float(v) for k, v in averaged.items()}
        check_finite(values, self.step)
        values["lr/g" if self.stepper.opt_d is None else "lr/d"] = self.stepper.learning_rate()
        values["stage"] = self.stage.index
        if self.device.type == "cuda":   # this process's peak since start: what a batch size or image size costs
            values["sys/gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.runlog:
            self.runlog.scalars(self.step, values)
        return values

    def validate_and_save(self, stage_done: bool) -> dict[str, float]:
        """Validation and the checkpoints after it; ``best.pt`` is chosen within a critic-training stage. Every rank
        validates its share and gets the same scores; rank 0 alone writes (the others wait at the next collective)."""
        started = time.perf_counter()
        # a denoise stage trains no CD: its V/A would be an untrained network's, so it scores restoration only
        scores = self.validator.run(self.stepper.model, self.step, self.stage.index, self.runlog,
                                    affect=self.stage.trains_critic)
        self.validation_seconds += time.perf_counter() - started
        ccc = {d: scores[d]["ccc"] for d in scores}
        best = self.stage.trains_critic and self.best.consider(ccc, self.step)
        if self.dist.is_main:
            self.folder.save_validated(self.state(), best, self.stage, stage_done)
        return ccc

    def fit(self) -> int:
        t, main = self.cfg.train, self.dist.is_main
        if self.step >= t.max_steps:
            log.info("checkpoint is already at step %d >= train.max_steps=%d; nothing to do", self.step, t.max_steps)
            return 0
        stream = iter(train_loader(self.train_set, t.batch_size, self.cfg.seed, self.step, self.cfg.data.num_workers,
                                   pin_memory=self.device.type == "cuda", shard=self.stepper.shard))
        if self.step == self.stage.start and main:
            self.runlog.stage(self.step, self.stage)
        progress, last_val, started = Progress(t.max_steps, self.step, main), {}, time.time()
        self.stepper.model.train()
        try:
            while self.step < t.max_steps:
                if self.step >= self.stage.end:
                    self.enter_next_stage()
                    self.stepper.model.train()
                progress.stage(self.stage.name)
                logs = self.train_step(next(stream))
                self.step += 1
                stage_done = self.step == self.stage.end
                logged = self.step % t.log_every == 0 or stage_done
                values = self.log_step(logs) if logged else None
                validated = self.validate_and_save(stage_done) if self.step % t.eval_every == 0 or stage_done else {}
                last_val = validated or last_val
                progress.step(values, validated)
                if self.stop.requested if not self.dist.enabled else (logged and self.stop_agreed):
                    progress.close()
                    return save_on_interrupt(self.folder, self.state(), self.step) if main else INTERRUPTED
        finally:
            progress.close()
            del stream
        if main:
            self.runlog.hparams(self.cfg, {f"hparam/ccc_{d}": v for d, v in last_val.items()}, self.step)
            self.runlog.close()
            print(f"done: {self.step} steps in {(time.time() - started) / 60:.1f} min (validation "
                  f"{self.validation_seconds / 60:.1f} min of it); {self.best.summary()}; run folder "
                  f"{self.folder.path}", file=sys.stderr)
        return 0


class Progress:
    """Rank 0's console bar: the stage, the last logged losses and the last validation's CCC."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, mininterval=1.0, file=sys.stderr,
                        disable=not enabled)
        self.postfix: dict[str, str] = {}

    def stage(self, name: str) -> None:
        self.bar.set_description(name, refresh=False)

    def step(self, logged: dict[str, float] | None, validated: dict[str, float]) -> None:
        self.bar.update(1)
        if logged:
            self.postfix.update({k: f"{logged[k]:.3f}" for k in ("D/loss", "G/loss", "G/denoise") if k in logged})
        if validated:
            self.postfix["val_ccc"] = f"V {validated['valence']:.3f} A {validated['arousal']:.3f}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()
