"""Signals delivered at moments defined by a child process's own progress, never by wall-clock guesses.

A test that kills or stops a training process "a few seconds after its start" checks something else on a
machine ten times faster or slower: the run may be over before the kill, or not yet past the moment the
kill was meant to hit. Instead, :func:`install` writes a ``sitecustomize.py`` that the child imports at
start-up (through ``PYTHONPATH``). It counts two kinds of event inside the child and acts exactly at the
N-th one:

``checkpoint:N``
    the N-th fsync of a checkpoint's temporary file (``.<name>.pt.*.tmp``): the checkpoint is written but
    not yet renamed over the old one, so the signal lands in the middle of a checkpoint write.
``line:N``
    the N-th whole line appended to ``metrics.jsonl`` (every train, validation and stage entry is one
    line), right after its write.

The action is ``kill`` (SIGKILL to the process itself: no handler, no cleanup, as a scheduler's kill or
an out-of-memory kill) or ``term-parent`` (SIGTERM to the parent process, as a scheduler's preemption of
the job that launched this process; the child then waits, up to 10 minutes, until the parent has forwarded
the signal and the child's own handler has run, so it cannot run on past the moment).

Set ``ALN_TRIGGER=<event>:<N>:<action>`` in the child's environment, optionally with
``ALN_TRIGGER_ARGV=<substring>`` so that only processes whose command line contains it count (e.g. one
fold of a cross-validation).
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = r'''
import os, signal, sys
_spec = os.environ.get("ALN_TRIGGER", "")
_only = os.environ.get("ALN_TRIGGER_ARGV", "")
if _spec and (not _only or _only in " ".join(sys.argv)):
    _event, _n, _action = _spec.split(":")
    _n, _count, _logs = int(_n), [0], set()

    def _fire():
        if _action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif _action == "term-parent":
            # wait until the parent has forwarded the signal and this process's own handler has run
            import time
            seen, handler = [], signal.getsignal(signal.SIGTERM)
            def _noting(signum, frame):
                seen.append(signum)
                if callable(handler):
                    handler(signum, frame)
            signal.signal(signal.SIGTERM, _noting)
            os.kill(os.getppid(), signal.SIGTERM)
            for _ in range(60000):
                if seen:
                    break
                time.sleep(0.01)
            signal.signal(signal.SIGTERM, handler)

    def _counts():
        _count[0] += 1
        return _count[0] == _n

    if _event == "checkpoint":
        import tempfile
        _mkstemp, _fsync, _checkpoints = tempfile.mkstemp, os.fsync, set()
        def _mkstemp_noting_checkpoints(*args, **kwargs):
            fd, name = _mkstemp(*args, **kwargs)
            base = os.path.basename(name)
            if base.startswith(".") and ".pt." in base and base.endswith(".tmp"):
                _checkpoints.add(fd)
            return fd, name
        def _fsync_then_maybe_fire(fd):
            if fd in _checkpoints:
                _checkpoints.discard(fd)
                if _counts():
                    _fire()
            return _fsync(fd)
        tempfile.mkstemp, os.fsync = _mkstemp_noting_checkpoints, _fsync_then_maybe_fire
    elif _event == "line":
        _open, _write, _close = os.open, os.write, os.close
        def _open_noting_logs(path, flags, *args, **kwargs):
            fd = _open(path, flags, *args, **kwargs)
            if str(path).endswith("metrics.jsonl"):
                _logs.add(fd)
            return fd
        def _write_then_maybe_fire(fd, data):
            written = _write(fd, data)
            if fd in _logs and _counts():
                _fire()
            return written
        def _close_forgetting(fd):
            _logs.discard(fd)
            return _close(fd)
        os.open, os.write, os.close = _open_noting_logs, _write_then_maybe_fire, _close_forgetting
    else:
        raise SystemExit(f"ALN_TRIGGER: unknown event {_event!r}")
'''


def install(folder: Path) -> Path:
    """Write the ``sitecustomize.py`` into ``folder`` (put it first on the child's ``PYTHONPATH``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def environment(folder: Path, event: str, n: int, action: str, only: str = "") -> dict[str, str]:
    """The child's environment: this process's, with the trigger set and ``folder`` first on ``PYTHONPATH``."""
    from tests.train_helpers import REPO

    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{REPO}", "ALN_TRIGGER": f"{event}:{n}:{action}"}
    if only:
        env["ALN_TRIGGER_ARGV"] = only
    return env
