"""The one atomic write (fileio/atomic.py): a writer killed mid-write leaves the previous file intact.

Each case runs a real writer of the project in a child process and SIGKILLs it from inside, at a moment of the
write itself (never after a delay): a checkpoint while ``torch.save`` is pickling its payload, a video's
metadata JSON after all its bytes are written but before the rename (at the fsync), and a crop pack after two
of its crops. The previous file must come back byte for byte, and the temporary file must be there (so the kill
did land inside the write).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from fileio.atomic import atomic_open, atomic_path, write_json
from tests.train_helpers import HANG_GUARD_S, REPO

KILL_SELF = "os.kill(os.getpid(), signal.SIGKILL)"

CASES = {
    "checkpoint, killed while pickling": ("ckpt/last.pt", ".last.pt.*.tmp", f"""
        from gan.checkpoint import save_checkpoint
        class KillWhilePickled:
            def __reduce__(self):
                {KILL_SELF}
        save_checkpoint(TARGET, {{"weights": torch.arange(100_000.0), "then": KillWhilePickled()}})
        """),
    "metadata JSON, killed at the fsync": ("root/meta/v1.json", ".v1.json.*.tmp", f"""
        from data.datasets.meta import VideoMeta, write_meta
        os.fsync = lambda fd: {KILL_SELF}
        write_meta(TARGET.parent.parent, VideoMeta(video="v1", fps=25.0, frames=999, faces=998))
        """),
    "crop pack, killed after two crops": ("root/cropped_packed/v1.pack", "v1.pack.tmp", f"""
        import data.samples.packed as packed
        read, seen = packed.read_crop_bytes, []
        def read_then_kill(path):
            seen.append(path)
            if len(seen) == 3:
                {KILL_SELF}
            return read(path)
        packed.read_crop_bytes = read_then_kill
        packed.write_pack(TARGET.parent.parent / "cropped_aligned" / "v1")
        """),
}


def _old_file(tmp_path: Path, case: str) -> Path:
    """The previous version of the case's file, written by the same writer in this process."""
    target = tmp_path / CASES[case][0]
    if case.startswith("checkpoint"):
        import torch

        from gan.checkpoint import save_checkpoint
        save_checkpoint(target, {"weights": torch.ones(10)})
    elif case.startswith("metadata"):
        from data.datasets.meta import VideoMeta, write_meta
        write_meta(tmp_path / "root", VideoMeta(video="v1", fps=30.0, frames=5))
    else:
        from data.samples.packed import write_pack
        crops = tmp_path / "root" / "cropped_aligned" / "v1"
        crops.mkdir(parents=True)
        for frame in range(1, 6):
            image = np.full((16, 16, 3), 40 * frame, np.uint8)
            cv2.imwrite(str(crops / f"{frame:05d}.jpg"), image)
        target.parent.mkdir(parents=True)
        write_pack(crops, np.arange(1, 4))   # the old pack: 3 of the 5 crops
    return target


@pytest.mark.parametrize("case", list(CASES))
def test_a_writer_killed_mid_write_leaves_the_previous_file(case, tmp_path):
    target = _old_file(tmp_path, case)
    before = target.read_bytes()
    script = "import os, signal, torch\nfrom pathlib import Path\n" \
             f"TARGET = Path({str(target)!r})\n" + textwrap.dedent(CASES[case][2])
    child = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                           timeout=HANG_GUARD_S)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert target.read_bytes() == before
    assert len(list(target.parent.glob(CASES[case][1]))) == 1   # the kill landed inside the write


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_json(path, {"old": 1})
    write_json(path, {"new": [1, 2]})
    assert json.loads(path.read_text()) == {"new": [1, 2]} and path.read_text().endswith("\n")
    with atomic_path(tmp_path / "a.wav", suffix=".wav") as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path and tmp.name.startswith(".a.wav.")
        tmp.write_bytes(b"RIFF")
    assert (tmp_path / "a.wav").read_bytes() == b"RIFF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "report.json"]


def test_a_write_that_raises_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "table.npy"
    np.save(path, np.arange(3))
    with pytest.raises(ValueError), atomic_open(path, "wb") as fh:
        fh.write(b"half a table")
        raise ValueError("the writer failed")
    assert np.load(path).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["table.npy"]


def test_written_files_get_the_permissions_a_plain_open_gives(tmp_path):
    """Not mkstemp's 0o600: 0o666 less the umask for a new file, the old file's mode for a replaced one."""
    import os
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "new.json", {})
        with atomic_path(tmp_path / "new.wav", suffix=".wav") as tmp:
            tmp.write_bytes(b"RIFF")
        (tmp_path / "kept.txt").write_text("old")
        (tmp_path / "kept.txt").chmod(0o640)
        write_json(tmp_path / "kept.txt", {"new": 1})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"new.json": 0o644, "new.wav": 0o644, "kept.txt": 0o640}
