"""``python -m training.cross_validate``: folds trained into run folders, finished ones skipped, an interrupted
one resumed, and the same fold table as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runconfig import ConfigError
from tests.fixtures import write_recording
from tests.train_helpers import REPO, TINY
from training.cross_validate import fold_list

STEPS = 120


def _common(root: Path) -> list[str]:
    tiny = [o for o in TINY if not o.startswith("data.demo")]
    return ["--config", str(REPO / "configs" / "sewa.yaml"), *tiny, f"data.root={root}", "data.sewa.num_folds=3",
            "data.sewa.delay_arousal=0", "data.sewa.delay_valence=0", f"train.max_steps={STEPS}",
            "train.eval_every=20", "train.threads=1"]


def _start(root: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.cross_validate", *_common(root), f"run.dir={out}",
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _step_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.endswith("}")]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def sewa_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sewa")
    for stem in [f"Train_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)]:
        write_recording(root, stem, n_frames=20, fps=10, label_seconds=1.9)
    return root


def test_a_killed_cross_validation_resumes_and_ends_with_the_uninterrupted_table(sewa_root, tmp_path):
    whole = tmp_path / "whole"
    done = _start(sewa_root, whole)
    output = done.communicate(timeout=900)[0]
    assert done.returncode == 0, output
    table = json.loads((whole / "folds.json").read_text())["folds"]
    assert [r["fold"] for r in table] == ["fold0", "fold1", "fold2", "mean", "std"]
    for k in range(3):
        assert (whole / f"fold{k}" / "config.yaml").is_file() and (whole / f"fold{k}" / "best.pt").is_file()
        metrics = json.loads((whole / "scores" / f"fold{k}" / "metrics.json").read_text())
        assert metrics["protocol"] == "avec2019" and metrics["fold"] == k and metrics["split"] == "test"
        assert metrics["optimistic"] is None      # best.pt was chosen on the validation fold, scored on the test fold
    assert (whole / "folds.md").read_text().startswith("| fold |")

    # the same command, stopped (SIGTERM, as a scheduler's preemption) while fold 2 trains
    cut = tmp_path / "cut"
    run = _start(sewa_root, cut)
    deadline = time.time() + 900
    while _step_logged(cut / "fold2") < 25 and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 130, output
    assert "rerun the same command" in output
    import torch

    stopped_at = torch.load(cut / "fold2" / "last.pt", weights_only=True)["step"]
    assert 0 < stopped_at < STEPS, stopped_at
    assert not (cut / "folds.json").exists()

    again = _start(sewa_root, cut)
    output = again.communicate(timeout=900)[0]
    assert again.returncode == 0, output
    assert "fold 0: finished" in output and "fold 1: finished" in output and "fold 2: resuming" in output
    assert json.loads((cut / "folds.json").read_text())["folds"] == table


def test_fold_lists_and_protocols_are_checked(sewa_root, tmp_path):
    assert fold_list(None, 5) == [0, 1, 2, 3, 4] and fold_list("3,1", 5) == [3, 1]
    for bad in ("5", "1,1", "a", ""):
        with pytest.raises(ConfigError, match="--folds"):
            fold_list(bad, 5)
    result = subprocess.run([sys.executable, "-m", "training.cross_validate", *_common(sewa_root),
                             "data.sewa.protocol=avec", f"run.dir={tmp_path / 'x'}"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 2 and "one fixed split" in result.stderr and "Traceback" not in result.stderr
