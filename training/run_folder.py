"""The run folder: ``config.yaml``, checkpoints, ``metrics.jsonl`` and TensorBoard events under ``tb/``.

Everything a training run writes goes through this module, so there is one place that decides what a
folder may already hold, what a resume keeps, and how a checkpoint reaches the disk (atomically, and never
with non-finite weights).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from gan.checkpoint import save_checkpoint
from gan.stages import Stage
from runconfig import ConfigError, RunConfig, dump_yaml, to_dict


class RunFolder:
    """Owns ``run.dir``: refuses to mix two runs, writes the config and the checkpoints."""

    def __init__(self, cfg: RunConfig, resuming: bool):
        self.path = Path(cfg.run.dir)
        used = [n for n in ("last.pt", "metrics.jsonl") if (self.path / n).exists()]
        if used and not resuming and not cfg.run.overwrite:
            raise ConfigError(f"{self.path}: holds a run already ({', '.join(used)}); continue it with "
                              f"run.resume={self.path / 'last.pt'}, pick another run.dir, or set run.overwrite=true")
        if used and not resuming:
            for path in [*self.path.glob("*.pt"), self.path / "metrics.jsonl"]:
                path.unlink(missing_ok=True)
            shutil.rmtree(self.path / "tb", ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(dump_yaml(cfg))

    def save(self, name: str, state: dict) -> Path:
        """Write checkpoint ``name``; refuse (FloatingPointError) when the weights are not finite."""
        bad = [n for n, p in state["model"].items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(f"weights became non-finite ({bad[0]}); not overwriting {name}")
        path = self.path / name
        save_checkpoint(path, state)
        return path

    def keep_stage_checkpoint(self, stage: Stage) -> Path:
        """Copy ``last.pt`` to ``stage<k>-<variant>.pt`` at the end of a stage that is not the last."""
        target = self.path / f"stage{stage.name}.pt"
        shutil.copyfile(self.path / "last.pt", target)
        return target


class RunLog:
    """metrics.jsonl + TensorBoard, both keyed by the global step."""

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
        self._append({"step": step, **values})

    def stage(self, step: int, stage: Stage) -> None:
        """Mark a stage boundary: a ``stage_start`` line in metrics.jsonl and a text entry in TensorBoard."""
        self._append({"step": step, "event": "stage_start", "stage": stage.index, "variant": stage.variant,
                      "first_step": stage.start + 1, "last_step": stage.end})
        self.writer.add_text("stages", f"stage {stage.name}: steps {stage.start + 1}..{stage.end}", global_step=step)

    def hparams(self, cfg: RunConfig, metrics: dict[str, float], step: int) -> None:
        """TensorBoard's HParams entry of the run: the scalar settings of model, loss and train, and ``metrics``."""
        flat = {f"{section}.{k}": v for section in ("model", "loss", "train")
                for k, v in to_dict(getattr(cfg, section)).items() if isinstance(v, (int, float, str, bool))}
        self.writer.add_hparams({**flat, "seed": cfg.seed}, metrics, run_name="hparams", global_step=step)

    def _append(self, entry: dict) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        self.writer.close()


def _kept_on_resume(entry: dict, resume_step: int) -> bool:
    if entry.get("event") == "stage_start":
        return entry["step"] < resume_step
    return entry.get("step", 0) <= resume_step
