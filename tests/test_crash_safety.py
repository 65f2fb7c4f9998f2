"""Runs that survive kills and failing writes: run.resume=auto, SIGKILL at planned moments, full disks.

The kill test reruns the same command (what a job scheduler does) after each SIGKILL. The moments are
defined by the run's own progress (the N-th line of metrics.jsonl, the N-th checkpoint write), never by
wall time, so every planned kill happens on a machine of any speed (tests/progress_triggers.py).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from tests import progress_triggers
from tests.train_helpers import HANG_GUARD_S, REPO, TINY, _jsonl, _run

STEPS = 10
KILL_ARGS = [f"train.max_steps={STEPS}", "train.eval_every=2", "train.log_every=1", "train.threads=1",
             "run.resume=auto"]


def _start(demo_root: Path, run: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**(env or {**os.environ, "PYTHONPATH": str(REPO)}), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "train.py", *TINY, f"data.root={demo_root}", f"run.dir={run}",
                             *KILL_ARGS], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _writing_a_checkpoint(run: Path) -> bool:
    return any(run.glob(".*.pt.*.tmp"))


def _saved_step(run: Path) -> int:
    return load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").exists() else 0


def _check_run_folder(run: Path) -> None:
    for path in run.glob("*.pt"):
        load_checkpoint(path)   # every checkpoint on disk loads
    if (run / "metrics.jsonl").exists():
        lines = (run / "metrics.jsonl").read_text().splitlines()
        for line in lines[:-1]:
            json.loads(line)    # at most the last line, being written at the kill, may be torn


def _kill_plan(seed: int) -> list[str]:
    """Four kinds of kill in a seeded order, two of them during a checkpoint write."""
    kinds = ["checkpoint", "line", "checkpoint", "line"]
    random.Random(seed).shuffle(kinds)
    return kinds


def _moment(kind: str, remaining_steps: int, rng: random.Random) -> int:
    """A seeded N that the rest of the run is sure to reach: at least one log line per remaining step
    (log_every=1) and one checkpoint write per two (eval_every=2, and the last step saves)."""
    return rng.randint(1, remaining_steps if kind == "line" else -(-remaining_steps // 2))


def test_sigkill_at_planned_moments_then_rerun_finishes_with_the_weights_of_an_uninterrupted_run(demo_root, tmp_path):
    shim = progress_triggers.install(tmp_path / "shim")
    run = tmp_path / "killed"
    rng = random.Random(0)
    observed = []
    for kind in _kill_plan(0):
        before = _saved_step(run)
        moment = _moment(kind, STEPS - before, rng)
        process = _start(demo_root, run, progress_triggers.environment(shim, kind, moment, "kill"))
        code = process.wait(timeout=HANG_GUARD_S)
        assert code == -9, (kind, moment, code, process.stderr.read().decode()[-2000:])   # the kill happened
        observed.append((kind, moment, before, _writing_a_checkpoint(run)))
        _check_run_folder(run)
    # a kill in a checkpoint write leaves its temporary file (and the previous checkpoint); one after a line does not
    assert [(kind, mid_write) for kind, _, _, mid_write in observed] == [
        (kind, kind == "checkpoint") for kind in _kill_plan(0)], observed
    print("kills (kind, N, resumed from step, during a write):", observed)
    final = _start(demo_root, run)
    assert final.wait(timeout=HANG_GUARD_S) == 0, final.stderr.read().decode()[-2000:]
    assert not list(run.glob(".*.tmp"))

    rows = [json.dumps(r, sort_keys=True) for r in _jsonl(run / "metrics.jsonl")]
    assert len(rows) == len(set(rows))   # no duplicated (and, parsed above, no torn) lines
    steps = [json.loads(r)["step"] for r in rows if "D/loss" in json.loads(r) or "G/denoise" in json.loads(r)]
    assert steps == list(range(1, STEPS + 1))

    reference = tmp_path / "uninterrupted"
    assert _start(demo_root, reference).wait(timeout=HANG_GUARD_S) == 0
    killed, whole = load_checkpoint(run / "last.pt"), load_checkpoint(reference / "last.pt")
    assert killed["step"] == whole["step"] == STEPS
    for name, tensor in whole["model"].items():
        assert torch.equal(killed["model"][name], tensor), name


def test_resume_auto_starts_fresh_then_continues(demo_root, tmp_path):
    run = tmp_path / "auto"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2", "run.resume=auto") == 0
    assert _run(demo_root, run, "train.max_steps=4", "train.eval_every=2", "run.resume=auto") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    steps = [r["step"] for r in _jsonl(run / "metrics.jsonl") if "D/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def test_a_torn_log_line_is_dropped_on_resume(demo_root, tmp_path, caplog):
    run = tmp_path / "torn"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "D/lo')   # what a kill or a full disk can leave
    assert _run(demo_root, run, f"run.resume={run / 'last.pt'}", "train.max_steps=4", "train.eval_every=2") == 0
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    assert "dropped 1 torn line" in caplog.text


@pytest.mark.parametrize("failure", [PermissionError(13, "Permission denied"), OSError(28, "No space left on device")])
def test_a_failing_checkpoint_write_is_one_clear_error_and_keeps_the_previous_checkpoint(demo_root, tmp_path, capsys,
                                                                                        monkeypatch, failure):
    run = tmp_path / "full"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    before = (run / "last.pt").read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise failure   # after part of the file is written, as a full disk does

    monkeypatch.setattr(torch, "save", failing_save)
    capsys.readouterr()
    code = _run(demo_root, run, f"run.resume={run / 'last.pt'}", "train.max_steps=4", "train.eval_every=2")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert errors == [f"error: {run / 'last.pt'}: cannot write the checkpoint ({failure.strerror}) "
                      "(the previous one is intact)"]
    assert (run / "last.pt").read_bytes() == before and load_checkpoint(run / "last.pt")["step"] == 2
    assert not list(run.glob(".*.tmp"))


def test_a_failing_log_write_is_one_clear_error(demo_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "log"
    real_open = os.open

    def no_log(path, flags, *args):
        if str(path).endswith("metrics.jsonl"):
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_log)
    code = _run(demo_root, run, "train.max_steps=2", "train.eval_every=2")
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {run / 'metrics.jsonl'}: cannot append to the log (Read-only file system)"]
