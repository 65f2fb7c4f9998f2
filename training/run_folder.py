"""The run folder: ``config.yaml``, checkpoints, ``metrics.jsonl`` and TensorBoard events under ``tb/``.

Everything a training run writes goes through this module, so there is one place that decides what a
folder may already hold, what a resume keeps, and how a checkpoint reaches the disk (atomically, and never
with non-finite weights).

Crash safety: a run killed at any moment (SIGKILL included) leaves every checkpoint loadable: each is
written to a temporary file and renamed over the old one, so a kill mid-write leaves the previous version
and a stray temporary file, which the next start removes. ``metrics.jsonl`` gets one whole line per write;
on resume the lines after the checkpoint's step, and a torn last line, are dropped by an atomic rewrite.
A write that fails (read-only folder, full disk) stops the run with a one-line error naming the file,
and leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from fileio.atomic import atomic_open
from gan.checkpoint import save_checkpoint
from gan.stages import Stage
from runconfig import ConfigError, RunConfig, RunFolderError, dump_yaml, to_dict

log = logging.getLogger(__name__)


FINAL_MODEL_NOTE = """This run trains the final model on {splits} for a fixed {steps} steps (data.train_splits), as the
paper did for its challenge submission (section III-E). No best.pt is written: with the validation split in
training there is nothing left to select on. Use last.pt. The val/ scores in metrics.jsonl are measured on
data the model trains on, so they are optimistic.
"""


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
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for stray in self.path.glob(".*.tmp"):   # a save or log rewrite that a kill interrupted
                stray.unlink()
            replace_file(self.path / "config.yaml", dump_yaml(cfg))
            if "val" in cfg.data.train_splits:
                replace_file(self.path / "FINAL_MODEL.txt", FINAL_MODEL_NOTE.format(
                    splits=" + ".join(cfg.data.train_splits), steps=cfg.train.max_steps))
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot write the run folder ({_reason(exc)})") from exc

    def save(self, name: str, state: dict) -> Path:
        """Write checkpoint ``name``; refuse (FloatingPointError) when the weights are not finite."""
        bad = [n for n, p in state["model"].items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(f"weights became non-finite ({bad[0]}); not overwriting {name}")
        path = self.path / name
        try:
            save_checkpoint(path, state)
        except OSError as exc:
            kept = " (the previous one is intact)" if path.exists() else ""
            raise RunFolderError(f"{path}: cannot write the checkpoint ({_reason(exc)}){kept}") from exc
        return path

    def save_validated(self, state: dict, best: bool, stage: Stage | None = None, stage_done: bool = False) -> None:
        """After a validation: ``best.pt`` when it is the best so far (flagged ``selected_on: val``, which
        evaluate.py reports), ``last.pt``, and at the end of a stage that is not the last its own copy."""
        if best:
            self.save("best.pt", {**state, "selected_on": "val"})
        self.save("last.pt", state)
        if stage_done and stage is not None and not stage.is_last:
            self.keep_stage_checkpoint(stage)

    def keep_stage_checkpoint(self, stage: Stage) -> Path:
        """Copy ``last.pt`` to ``stage<k>-<variant>.pt`` at the end of a stage that is not the last."""
        target = self.path / f"stage{stage.name}.pt"
        try:
            replace_file(target, (self.path / "last.pt").read_bytes())
        except OSError as exc:
            raise RunFolderError(f"{target}: cannot write the stage checkpoint ({_reason(exc)})") from exc
        return target


def metrics_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, parsed entry) of a ``metrics.jsonl``, in order; a torn line (a kill or a full disk mid-write) is
    dropped with a warning. The one reader of the file: resume keeps its lines through it, and the experiments
    that tabulate runs read them through it."""
    lines, torn = [], 0
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            lines.append((line, json.loads(line)))
        except ValueError:
            torn += bool(line.strip())
    if torn:
        log.warning("%s: dropped %d torn line(s) left by an interrupted write", path, torn)
    return lines


def metrics_entries(path: Path) -> list[dict]:
    """The parsed entries of a ``metrics.jsonl`` (:func:`metrics_lines` without the raw text)."""
    return [entry for _, entry in metrics_lines(path)]


class RunLog:
    """metrics.jsonl + TensorBoard, both keyed by the global step."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.jsonl = run_dir / "metrics.jsonl"
        if resume_step is not None and self.jsonl.exists():
            # drop entries written after the checkpoint we resume from: they will be written again
            # (a stage line at the resume step was written after that step's checkpoint: it comes again too)
            kept = [line for line, entry in self._whole_lines() if _kept_on_resume(entry, resume_step)]
            try:
                replace_file(self.jsonl, "".join(ln + "\n" for ln in kept))
            except OSError as exc:
                raise RunFolderError(f"{self.jsonl}: cannot rewrite the log ({_reason(exc)})") from exc
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

    def _whole_lines(self) -> list[tuple[str, dict]]:
        return metrics_lines(self.jsonl)

    def _append(self, entry: dict) -> None:
        """One whole line in one write call (no partial line unless the disk itself fails)."""
        line = (json.dumps(entry) + "\n").encode()
        try:
            fd = os.open(self.jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError("short write: the disk may be full")
            finally:
                os.close(fd)
        except OSError as exc:
            raise RunFolderError(f"{self.jsonl}: cannot append to the log ({_reason(exc)})") from exc

    def close(self) -> None:
        self.writer.close()


def _kept_on_resume(entry: dict, resume_step: int) -> bool:
    if entry.get("event") == "stage_start":
        return entry["step"] < resume_step
    return entry.get("step", 0) <= resume_step


def replace_file(path: Path, content: str | bytes) -> None:
    """Replace ``path`` by ``content`` atomically (:mod:`fileio.atomic`)."""
    data = content.encode() if isinstance(content, str) else content
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
