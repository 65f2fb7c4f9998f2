"""Tiny training runs on generated demo data, shared by the end-to-end and progressive-training tests.

The ``demo_root`` fixture lives in ``conftest.py``; these are the plain helpers around ``train.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import train

REPO = Path(__file__).resolve().parents[1]
# A child process still running after this long has hung: a guard, never what a test checks. The longest
# child of the suite (the 3-fold cross-validation) takes about 40 s on a 2-core machine, so the guard holds
# on a machine more than 10x slower, or as loaded.
HANG_GUARD_S = 3600
TINY = ["data.demo.num_train=3", "data.demo.num_val=2", "data.demo.frames=40", "data.demo.size=32",
        "model.image_size=32", "model.g_conv_dim=4", "model.g_res_blocks=1", "model.d_conv_dim=4",
        "train.batch_size=8", "train.log_every=2", "data.num_workers=0", "data.eval_batch_size=32",
        "train.stages=[]", "train.restoration_frames=32"]


def _run(demo_root: Path, run_dir: Path, *extra: str) -> int:
    return train.main([*TINY, f"data.root={demo_root}", f"run.dir={run_dir}", *extra])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _final_state(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)


def _interrupted_run(demo_root: Path, run: Path, stop_after: int, *extra: str) -> None:
    """Start a run and deliver a stop request (what SIGTERM/Ctrl-C does) during step ``stop_after``."""
    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={run}", *extra])
    trainer = train.Trainer(cfg, None)
    step_once = trainer.train_step

    def step_then_signal(batch):
        logs = step_once(batch)
        if trainer.step + 1 == stop_after:
            trainer.stop.requested = True
        return logs

    trainer.train_step = step_then_signal
    assert trainer.fit() == 130
