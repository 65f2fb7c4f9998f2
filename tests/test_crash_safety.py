"""Runs that survive kills and failing writes: run.resume=auto, SIGKILL at random moments, full disks.

The kill test reruns the same command (what a job scheduler does) after each SIGKILL, one of them while a
checkpoint is being written. To make that moment catchable, the child process gets a ``sitecustomize``
that slows ``os.fsync`` down (the checkpoint writer fsyncs its temporary file before renaming it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from tests.train_helpers import REPO, TINY, _jsonl, _run

KILL_ARGS = ["train.max_steps=10", "train.eval_every=2", "train.log_every=1", "train.threads=1", "run.resume=auto"]
SLOW_FSYNC = """import os, time
_fsync = os.fsync
def _slow(fd):
    time.sleep(0.4)
    _fsync(fd)
os.fsync = _slow
"""


def _start(demo_root: Path, run: Path, shim: Path | None) -> subprocess.Popen:
    path = f"{shim}{os.pathsep}{REPO}" if shim else str(REPO)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "train.py", *TINY, f"data.root={demo_root}", f"run.dir={run}",
                             *KILL_ARGS], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL ``process`` as soon as ``ready()`` holds; False when it finished first."""
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait(timeout=timeout)
    return False


def _writing_a_checkpoint(run: Path) -> bool:
    return any(run.glob(".*.pt.*.tmp"))


def _check_run_folder(run: Path) -> None:
    for path in run.glob("*.pt"):
        load_checkpoint(path)   # every checkpoint on disk loads
    if (run / "metrics.jsonl").exists():
        lines = (run / "metrics.jsonl").read_text().splitlines()
        for line in lines[:-1]:
            json.loads(line)    # at most the last line, being written at the kill, may be torn


def test_sigkill_at_random_moments_then_rerun_finishes_with_the_weights_of_an_uninterrupted_run(demo_root, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLOW_FSYNC)
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills, during_write = 0, 0
    plans = ["checkpoint", "random", "checkpoint", "random"]
    for plan in plans:
        started = time.time()
        process = _start(demo_root, run, shim)
        delay = rng.uniform(2.0, 8.0)
        ready = (lambda: _writing_a_checkpoint(run)) if plan == "checkpoint" else (lambda: time.time() - started > delay)  # noqa: B023
        if _kill_when(process, ready):
            kills += 1
            during_write += _writing_a_checkpoint(run)   # the temporary file the kill left behind
            _check_run_folder(run)
        else:
            break
    final = _start(demo_root, run, shim)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()[-2000:]
    assert kills >= 3 and during_write >= 1, (kills, during_write)
    assert not list(run.glob(".*.tmp"))

    rows = [json.dumps(r, sort_keys=True) for r in _jsonl(run / "metrics.jsonl")]
    assert len(rows) == len(set(rows))   # no duplicated (and, parsed above, no torn) lines
    steps = [json.loads(r)["step"] for r in rows if "D/loss" in json.loads(r) or "G/denoise" in json.loads(r)]
    assert steps == list(range(1, 11))

    reference = tmp_path / "uninterrupted"
    assert _start(demo_root, reference, None).wait(timeout=300) == 0
    killed, whole = load_checkpoint(run / "last.pt"), load_checkpoint(reference / "last.pt")
    assert killed["step"] == whole["step"] == 10
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
