"""Train ALN: ``python train.py [--config PRESET] [--dry-run] [KEY=VALUE ...]``.

The default preset is ``configs/demo.yaml`` (variant ``aeg_cd_sz`` on the built-in demo data). Examples::

    python train.py                                   # demo run into runs/demo
    python train.py train.max_steps=200 run.dir=runs/quick
    python train.py --config configs/affwild2.yaml data.root=/data/Aff-Wild2
    python train.py run.resume=runs/demo/last.pt      # continue exactly where it stopped

The loop is iteration based: every iteration is one D step; every ``train.n_critic``-th iteration is
also a G step. The run folder receives ``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.jsonl`` and
TensorBoard events under ``tb/``. Ctrl-C or SIGTERM saves ``last.pt`` before leaving.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from data.audio import AudioStandardiser
from data.loaders import (
    build_dataset,
    collate,
    eval_loader,
    load_split,
    restoration_sets,
    scoring_dataset,
    train_loader,
)
from gan.checkpoint import (
    load_checkpoint,
    load_weights,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from gan.evaluation import (
    VIEW_TAGS,
    autocast,
    flat_restoration_tags,
    predict_batches,
    restoration_grid,
    restoration_scores,
)
from gan.losses import class_balance_weights, term_gradient_norms
from gan.metrics import score_va
from gan.models import ALN, set_requires_grad
from gan.objective import ALNObjective
from gan.stages import Stage, plan_stages
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

log = logging.getLogger("train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_PRESET), help="YAML preset (default: configs/demo.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=200")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, dict | None]:
    """Preset + overrides; when resuming, the checkpoint's config + the same overrides (no preset)."""
    resume = [o.split("=", 1)[1] for o in args.overrides if o.startswith("run.resume=")]
    if not resume or not resume[-1]:
        return load_config(args.config, args.overrides), None
    ckpt = load_checkpoint(resume[-1])
    return build_config(ckpt["config"], args.overrides), ckpt


def lr_factor(step: int, max_steps: int, decay_from: float) -> float:
    """1 until ``decay_from * max_steps``, then linear to 0 at ``max_steps`` (StarGAN's schedule)."""
    start = int(decay_from * max_steps)
    if step < start or max_steps <= start:
        return 1.0
    return max(0.0, (max_steps - step) / (max_steps - start))


class RunLog:
    """metrics.jsonl + TensorBoard, both keyed by the global step; only rank 0 would own one."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.jsonl = run_dir / "metrics.jsonl"
        if resume_step is not None and self.jsonl.exists():
            # drop entries written after the checkpoint we resume from: they will be written again
            # (a stage line at the resume step was written after that step's checkpoint: it comes again too)
            kept = [ln for ln in self.jsonl.read_text().splitlines()
                    if ln.strip() and _kept_on_resume(json.loads(ln), resume_step)]
            self.jsonl.write_text("".join(ln + "\n" for ln in kept))
        # events after the checkpoint's step belong to the interrupted run and will be written again
        self.writer = SummaryWriter(str(run_dir / "tb"),
                                    purge_step=None if resume_step is None else resume_step + 1)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")

    def stage(self, step: int, stage: Stage) -> None:
        """Mark a stage boundary: a ``stage_start`` line in metrics.jsonl and a text entry in TensorBoard."""
        entry = {"step": step, "event": "stage_start", "stage": stage.index, "variant": stage.variant,
                 "first_step": stage.start + 1, "last_step": stage.end}
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        self.writer.add_text("stages", f"stage {stage.name}: steps {stage.start + 1}..{stage.end}", global_step=step)

    def close(self) -> None:
        self.writer.close()


def _kept_on_resume(entry: dict, resume_step: int) -> bool:
    if entry.get("event") == "stage_start":
        return entry["step"] < resume_step
    return entry.get("step", 0) <= resume_step


class Trainer:
    """Owns the model, optimisers, data stream and run folder of one training run (all its stages)."""

    def __init__(self, cfg: RunConfig, ckpt: dict | None):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.run_dir = Path(cfg.run.dir)
        used = [n for n in ("last.pt", "metrics.jsonl") if (self.run_dir / n).exists()]
        if used and not ckpt and not cfg.run.overwrite:
            raise ConfigError(f"{self.run_dir}: holds a run already ({', '.join(used)}); continue it with "
                              f"run.resume={self.run_dir / 'last.pt'}, pick another run.dir, or set run.overwrite=true")
        if used and not ckpt:
            for path in [*self.run_dir.glob("*.pt"), self.run_dir / "metrics.jsonl"]:
                path.unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_yaml(cfg))

        mcfg, dcfg = cfg.model, cfg.data
        self.plan = plan_stages(cfg.train.stages, mcfg.variant, cfg.train.max_steps)
        standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"]) if ckpt else None
        train_split, self.standardiser = load_split(dcfg, "train", standardiser)
        val_split, _ = load_split(dcfg, "val", self.standardiser)
        degrade = dcfg.degrade if dcfg.degrade.enabled else None
        # the generator always gets a "degraded" input; with degradations off it is the clean face itself
        uses_aeg = any(stage.model_variant != "disc" for stage in self.plan)
        self.train_set = build_dataset(train_split, mcfg.image_size, dcfg.degrade if uses_aeg else None)
        self.val_set = scoring_dataset(val_split, mcfg.image_size, degrade)
        self.restoration_sets = (restoration_sets(val_split, mcfg.image_size, degrade, cfg.train.restoration_frames)
                                 if degrade and cfg.train.restoration_frames else {})
        self.audio_dim = dcfg.audio.dim
        self.balance = (ckpt["balance_table"] if ckpt else
                        class_balance_weights(torch.from_numpy(self.train_set.labels), cfg.loss.balance_bins,
                                              cfg.loss.balance_clip))
        self.step, self.best_score, self.best_step = 0, -float("inf"), -1
        if ckpt:
            self._build_stage(self.plan[ckpt.get("stage", 0)])
            self._restore(ckpt)
        else:
            self._build_stage(self.plan[0])
            if cfg.run.init_from:
                copied, fresh = self.model.start_from_stage(load_checkpoint(cfg.run.init_from)["model"])
                log.info("initialised %d tensors from %s; %d new (%s)", copied, cfg.run.init_from, len(fresh),
                         ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))
        grid_idx = np.linspace(0, len(self.val_set) - 1, min(cfg.train.grid_size, len(self.val_set))).astype(int)
        self.grid_batch = collate([self.val_set[int(i)] for i in grid_idx])
        self.runlog = RunLog(self.run_dir, self.step if ckpt else None)
        self.stop_requested = False

    # ------------------------------------------------------------------ state

    def _build_stage(self, stage: Stage, previous: ALN | None = None) -> None:
        """The model, objective and optimisers of ``stage``; from ``previous``'s weights when given."""
        self.stage = stage
        mcfg = dataclasses.replace(self.cfg.model, variant=stage.model_variant)
        self.model = ALN(mcfg, self.audio_dim).to(self.device)
        if previous is not None:
            copied, fresh = self.model.start_from_stage(previous.state_dict())
            log.info("stage %s: %d tensors from the previous stage, %d new (%s)", stage.name, copied, len(fresh),
                     ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))
        self.objective = ALNObjective(self.model, self.cfg.loss, self.balance.to(self.device))
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        self.opt_d = (torch.optim.Adam(self.model.cd.parameters(), lr=t.lr_d, betas=betas)
                      if stage.trains_critic else None)
        self.opt_g = (torch.optim.Adam(self.model.aeg.parameters(), lr=t.lr_g, betas=betas)
                      if self.model.aeg else None)
        self.best_score, self.best_step = -float("inf"), -1   # best.pt is chosen within a stage
        self._last_g_logs: dict[str, torch.Tensor] = {}   # latest G step's G/..., repeated until the next one
        if t.compile:
            self._compile()

    def _restore(self, ckpt: dict) -> None:
        load_weights(self.model, ckpt["model"], self.cfg.run.resume)
        if self.opt_d:
            self.opt_d.load_state_dict(ckpt["opt_d"])
        if self.opt_g:
            self.opt_g.load_state_dict(ckpt["opt_g"])
        restore_rng_state(ckpt["rng"])
        self.step, self.best_score, self.best_step = ckpt["step"], ckpt["best_score"], ckpt["best_step"]
        self._last_g_logs = {k: torch.tensor(v) for k, v in ckpt.get("last_g_logs", {}).items()}
        log.info("resumed from %s at step %d (stage %s)", self.cfg.run.resume, self.step, self.stage.name)

    def _compile(self) -> None:
        """Compile the AEG; the CD too unless WGAN-GP needs its double backward, which compile lacks."""
        self.model.aeg.compile() if self.model.aeg else None
        if self.cfg.loss.adversarial != "wgan-gp" or not self.model.aeg:
            self.model.cd.compile()

    def state(self) -> dict:
        return {
            "step": self.step,
            "config": to_dict(self.cfg),
            "stage": self.stage.index,
            "variant": self.stage.model_variant,   # the weights' variant (config's model.variant is the run's last)
            "audio_dim": self.audio_dim,
            "model": self.model.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else {},
            "opt_g": self.opt_g.state_dict() if self.opt_g else {},
            "rng": rng_state(),
            "audio_stats": self.standardiser.state_dict(),
            "balance_table": self.balance,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "last_g_logs": {k: float(v) for k, v in self._last_g_logs.items()},
        }

    def save(self, name: str) -> Path:
        bad = [n for n, p in self.model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(f"weights became non-finite ({bad[0]}); not overwriting {name}")
        path = self.run_dir / name
        save_checkpoint(path, self.state())
        return path

    def enter_next_stage(self) -> None:
        """Stage boundary: build the next stage's model from this one's weights, with fresh optimisers."""
        previous = self.model
        self._build_stage(self.plan[self.stage.index + 1], previous)
        self.runlog.stage(self.step, self.stage)
        log.info("stage %s: steps %d..%d", self.stage.name, self.stage.start + 1, self.stage.end)

    # ------------------------------------------------------------------ steps

    def set_learning_rates(self) -> None:
        """Per-stage schedule, a pure function of the step (stored in every checkpoint): no scheduler state."""
        t, stage = self.cfg.train, self.stage
        factor = lr_factor(self.step - stage.start, stage.steps, t.lr_decay_from)
        for opt, base in ((self.opt_d, stage.lr or t.lr_d), (self.opt_g, stage.lr or t.lr_g)):
            for group in opt.param_groups if opt else ():
                group["lr"] = base * factor

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One iteration: a D step, and a G step every n_critic iterations (a denoise stage: an AEG step)."""
        m, obj, t = self.model, self.objective, self.cfg.train
        self.set_learning_rates()
        if not self.stage.trains_critic:
            with autocast(self.device, t.amp):
                loss, logs = obj.denoise_loss(batch)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
            return logs
        with autocast(self.device, t.amp):
            d_loss, logs = obj.discriminator_loss(batch)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        logs["D/loss"] = d_loss.detach()
        if m.aeg is not None and (self.step + 1) % t.n_critic == 0:
            set_requires_grad(m.cd, False)
            with autocast(self.device, t.amp):
                terms, g_logs = obj.generator_terms(batch)
            g_loss = sum(terms.values())
            self.opt_g.zero_grad(set_to_none=True)
            if self._last_g_step_before_log():
                g_logs.update(term_gradient_norms(terms, list(m.aeg.parameters())))
            g_loss.backward()
            self.opt_g.step()
            set_requires_grad(m.cd, True)
            g_logs["G/loss"] = g_loss.detach()
            self._last_g_logs = g_logs
        logs.update(self._last_g_logs)   # G/... of the latest G step, so every log step shows them
        return logs

    def _last_g_step_before_log(self) -> bool:
        """True for the G step after which no other G step comes before the next log step."""
        t = self.cfg.train
        done = self.step + 1
        next_log = min(-(-done // t.log_every) * t.log_every, self.stage.end)
        return next_log - done < t.n_critic

    def validate(self) -> dict[str, dict[str, float]]:
        loader = eval_loader(self.val_set, self.cfg.data.eval_batch_size)
        preds = predict_batches(self.model, loader, self.device, self.cfg.train.amp)
        if not np.isfinite(preds.pred).all():
            raise FloatingPointError(f"validation predictions are not finite at step {self.step}")
        scores = preds.scores("population")
        values = {f"val/{m}_{dim}": scores[dim][m] for dim in scores for m in ("ccc", "pcc", "rmse")}
        for view, pred in preds.views().items():
            values.update({f"{VIEW_TAGS[view]}/ccc_{dim}": s["ccc"] for dim, s in score_va(pred, preds.gold).items()})
        if preds.psnr_restored is not None:
            values.update({"val/psnr_restored": preds.psnr_restored, "val/psnr_degraded": preds.psnr_degraded,
                           "val/ssim_restored": preds.ssim_restored, "val/ssim_degraded": preds.ssim_degraded})
        if self.restoration_sets:
            table = restoration_scores(self.model, self.restoration_sets, self.device, self.cfg.data.eval_batch_size)
            values.update(flat_restoration_tags(table))
        values["stage"] = self.stage.index
        self.runlog.scalars(self.step, values)
        w = self.runlog.writer
        w.add_histogram("val/pred_valence", preds.pred[:, 0], self.step)
        w.add_histogram("val/pred_arousal", preds.pred[:, 1], self.step)
        w.add_image("val/restoration_clean_degraded_restored_cycle",
                    restoration_grid(self.model, self.grid_batch, self.device), self.step)
        return scores

    # ------------------------------------------------------------------ loop

    def fit(self) -> int:
        t = self.cfg.train
        if self.step >= t.max_steps:
            log.info("checkpoint is already at step %d >= train.max_steps=%d; nothing to do", self.step, t.max_steps)
            return 0
        loader = train_loader(self.train_set, t.batch_size, self.cfg.seed, self.step, self.cfg.data.num_workers,
                              pin_memory=self.device.type == "cuda")
        stream = iter(loader)
        bar = tqdm(total=t.max_steps, initial=self.step, desc=self.cfg.model.variant, dynamic_ncols=True,
                   mininterval=1.0, file=sys.stderr)
        postfix: dict[str, str] = {}
        last_val: dict[str, float] = {}
        self.model.train()
        if self.step == self.stage.start:
            self.runlog.stage(self.step, self.stage)
        started = time.time()
        try:
            while self.step < t.max_steps:
                if self.step >= self.stage.end:
                    self.enter_next_stage()
                    self.model.train()
                bar.set_description(f"{self.stage.name}", refresh=False)
                batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                         for k, v in next(stream).items()}
                logs = self.train_step(batch)
                self.step += 1
                bar.update(1)
                stage_done = self.step == self.stage.end
                if self.step % t.log_every == 0 or stage_done:
                    values = {k: float(v) for k, v in logs.items()}
                    if not all(np.isfinite(v) for v in values.values()):
                        bad = next(k for k, v in values.items() if not np.isfinite(v))
                        raise FloatingPointError(f"{bad} is not finite at step {self.step}")
                    values["lr/g" if self.opt_d is None else "lr/d"] = (self.opt_d or self.opt_g).param_groups[0]["lr"]
                    values["stage"] = self.stage.index
                    self.runlog.scalars(self.step, values)
                    postfix.update({k: f"{values[k]:.3f}" for k in ("D/loss", "G/loss", "G/denoise") if k in values})
                if self.step % t.eval_every == 0 or stage_done:
                    scores = self.validate()
                    last_val = {d: scores[d]["ccc"] for d in scores}
                    postfix["val_ccc"] = f"V {last_val['valence']:.3f} A {last_val['arousal']:.3f}"
                    score = float(np.mean(list(last_val.values())))
                    if self.stage.trains_critic and score > self.best_score:
                        self.best_score, self.best_step = score, self.step
                        self.save("best.pt")
                    self.save("last.pt")
                    if stage_done and not self.stage.is_last:
                        shutil.copyfile(self.run_dir / "last.pt", self.run_dir / f"stage{self.stage.name}.pt")
                bar.set_postfix(postfix, refresh=False)
                if self.stop_requested:
                    path = self.save("last.pt")
                    bar.close()
                    print(f"interrupted at step {self.step}; saved {path}; continue with run.resume={path}",
                          file=sys.stderr)
                    return 130
        finally:
            bar.close()
            del stream
        self.runlog.writer.add_hparams(_flat_hparams(self.cfg), {f"hparam/ccc_{d}": v for d, v in last_val.items()},
                                       run_name="hparams", global_step=self.step)
        self.runlog.close()
        minutes = (time.time() - started) / 60
        print(f"done: {self.step} steps in {minutes:.1f} min; best mean val CCC {self.best_score:.3f} at step "
              f"{self.best_step}; run folder {self.run_dir}", file=sys.stderr)
        return 0


def _flat_hparams(cfg: RunConfig) -> dict:
    flat = {}
    for section in ("model", "loss", "train"):
        for k, v in to_dict(getattr(cfg, section)).items():
            if isinstance(v, (int, float, str, bool)):
                flat[f"{section}.{k}"] = v
    flat["seed"] = cfg.seed
    return flat


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


if __name__ == "__main__":
    sys.exit(main())
