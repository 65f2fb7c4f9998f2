"""Run control shared by both trainers (ALN's in ``training/aln_loop.py``, the sequence models' in
``training/sequence_loop.py``): which checkpoint is the best, a stop asked for by a signal, the save on
interrupt, and a non-finite loss.

One home, so that a fix reaches both loops: both pick ``best.pt`` by the same rule, leave on SIGINT/SIGTERM with
the same saved ``last.pt``, message and exit code 130, restore the signal handlers they found (a test or a
notebook that trains twice keeps its own), and end a diverged run with the same one-line error and exit code 3.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)

INTERRUPTED = 130   # the shell's code for a run ended by SIGINT; also used for SIGTERM (a scheduler's preemption)
DIVERGED = 3


class BestCheckpoint:
    """The rule for ``best.pt``: the highest mean validation CCC so far (strictly higher wins, so the earliest of
    equal scores is kept). With the validation split among the training data there is nothing to select on:
    nothing is ever the best (``selectable`` false) and no ``best.pt`` is written."""

    def __init__(self, selectable: bool, score: float = -math.inf, step: int = -1):
        self.selectable, self.score, self.step = selectable, score, step

    def consider(self, scores: Mapping[str, float], step: int) -> bool:
        """Whether the validation ``scores`` (CCC per dimension) at ``step`` are the new best; if so, kept."""
        score = sum(scores.values()) / len(scores) if scores else -math.inf
        if not self.selectable or not score > self.score:
            return False
        self.score, self.step = score, step
        return True

    def resumed(self, ckpt: dict) -> BestCheckpoint:
        """The selection as a checkpoint left it (its ``best_score`` and ``best_step``)."""
        return BestCheckpoint(self.selectable, ckpt["best_score"], ckpt["best_step"])

    def summary(self) -> str:
        """The ``done:`` line's account of the selection."""
        return f"best mean val CCC {self.score:.3f} at step {self.step}"

    def reset(self) -> None:
        """Start the selection afresh (ALN selects within a stage: a later stage's network is another one)."""
        self.score, self.step = -math.inf, -1

    def state(self) -> dict:
        """The checkpoint's keys for a resume that continues the selection."""
        return {"best_score": self.score, "best_step": self.step}


class StopFlag:
    """Set by a signal handler; the loop reads it between steps (never mid-step, so a checkpoint is whole)."""

    requested = False


@contextmanager
def signals_request_stop(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGINT and SIGTERM set ``flag.requested`` instead of killing the process, inside the block only: the
    handlers found on entry come back on exit, however the block ends."""

    def request_stop(signum, _frame):
        flag.requested = True
        log.warning("signal %d: stopping after this step and saving last.pt", signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_finite(values: Mapping[str, float], step: int) -> None:
    """Raise FloatingPointError naming the first non-finite value (a diverged loss) and its step."""
    bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
    if bad:
        raise FloatingPointError(f"{bad} is not finite at step {step}")


class _Saves(Protocol):
    def save(self, name: str, state: dict): ...


def save_on_interrupt(folder: _Saves, state: dict, step: int) -> int:
    """Save ``last.pt`` after a stop request, say how to continue, and return the exit code."""
    path = folder.save("last.pt", state)
    print(f"interrupted at step {step}; saved {path}; continue with run.resume={path}", file=sys.stderr)
    return INTERRUPTED


class _Fits(Protocol):
    stop: StopFlag

    def fit(self) -> int: ...


def run_to_end(trainer: _Fits) -> int:
    """``trainer.fit()`` with SIGINT/SIGTERM asking it to stop, and a diverged run reported in one line.

    ``last.pt`` then holds the last finite state: checkpoints refuse non-finite weights, and a non-finite loss
    stops the loop before the next save."""
    with signals_request_stop(trainer.stop):
        try:
            return trainer.fit()
        except FloatingPointError as exc:
            print(f"error: training diverged: {exc}; last.pt holds the last finite state", file=sys.stderr)
            return DIVERGED
