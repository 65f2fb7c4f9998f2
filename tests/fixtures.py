"""Small on-disk fixtures written in the real dataset layouts."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from data.datasets.meta import VideoMeta, write_meta
from data.datasets.sewa import AvecLabels

EDITION_DIRS = {
    "abaw2020": ("VA_Set", {"train": "Training_Set", "val": "Validation_Set"}),
    "abaw_later": ("VA_Estimation_Challenge", {"train": "Train_Set", "val": "Validation_Set"}),
}


def write_face(path: Path, value: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, 3), value, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 3, (255 - value, 80, 40), -1)
    assert cv2.imwrite(str(path), image)


def write_affwild2(root: Path, edition: str = "abaw2020", videos: dict[str, dict] | None = None,
                   annotations_parent: str = "annotations") -> Path:
    """Write an Aff-Wild2 tree. ``videos`` maps name -> {"split", "labels" (n,2), "missing" frames, "header"}."""
    folder, splits = EDITION_DIRS[edition]
    for name, spec in (videos or {}).items():
        ann_dir = root / annotations_parent / folder / splits[spec["split"]]
        ann_dir.mkdir(parents=True, exist_ok=True)
        labels = np.asarray(spec["labels"], dtype=float)
        header = spec.get("header", "valence,arousal")
        lines = [header] + [f"{v:.6f},{a:.6f}" if v != -5 else "-5,-5" for v, a in labels]
        (ann_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
        for k in range(1, len(labels) + 1):
            if k not in spec.get("missing", ()):
                write_face(root / "cropped_aligned" / name / f"{k:05d}.jpg", (k * 37) % 200)
    return root


# ------------------------------------------------------------------------ SEWA (AVEC 2019 CES)



def avec2019_dir() -> Path:
    """The public AVEC 2019 CES files (``labels_devel/``, ``pred_svr/``, ``pred_visual_xbow/``) that the real-file
    tests score: ``$ALN_AVEC2019_DIR``, else ``~/.cache/aln/avec2019`` (docs/installation.md says where they come from)."""
    return Path(os.environ.get("ALN_AVEC2019_DIR") or Path.home() / ".cache" / "aln" / "avec2019").expanduser()


AVEC = avec2019_dir()


def avec2019_missing(sub: str) -> str:
    """The skip reason of a test that needs ``AVEC/sub``: what is missing and which setting finds it."""
    return (f"AVEC 2019 files not found: {AVEC / sub} is absent; set ALN_AVEC2019_DIR to the folder holding "
            f"labels_devel/ and pred_svr/ (docs/installation.md)")
HEADER = "name;timestamp;arousal;valence;liking"


def write_labels(path: Path, times, arousal, valence, liking=None, name: str | None = None, sep: str = ";",
                 quote: str = "'", header: str | None = None) -> Path:
    """A label file as the AVEC 2019 release writes it: ``'Devel_DE_01';0.100000;...`` rows."""
    name = name if name is not None else path.stem
    cols = ["name", "timestamp", "arousal", "valence"] + ([] if liking is None else ["liking"])
    lines = [header if header is not None else sep.join(cols)]
    for i, t in enumerate(times):
        row = [f"{quote}{name}{quote}", f"{t:.6f}", f"{arousal[i]:.6f}", f"{valence[i]:.6f}"]
        if liking is not None:
            row.append(f"{liking[i]:.6f}")
        lines.append(sep.join(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_labels(times, arousal, valence, liking=None) -> AvecLabels:
    return AvecLabels(path=Path("mem.csv"), name="mem", times=np.asarray(times, float),
                      arousal=np.asarray(arousal, float), valence=np.asarray(valence, float),
                      liking=None if liking is None else np.asarray(liking, float))


def write_recording(root: Path, stem: str, n_frames: int, fps: float | None, label_seconds: float,
                    missing=(), meta: bool = True, audio: bool = False, crops: bool = True) -> np.ndarray:
    """Labels at 10 Hz from 0.0 to ``label_seconds``, crops for frames 1..n_frames except ``missing``, meta json."""
    times = np.round(np.arange(0.0, label_seconds + 1e-9, 0.1), 6)
    a = np.sin(times)
    v = np.cos(times) * 0.5
    lk = times / (times.max() + 1) - 0.5
    write_labels(root / "labels" / f"{stem}.csv", times, a, v, lk)
    if crops:
        for k in range(1, n_frames + 1):
            if k not in missing:
                write_face(root / "cropped_aligned" / stem / f"{k:05d}.jpg", (k * 37) % 200, size=12)
    if meta:
        write_meta(root, VideoMeta(video=stem, fps=float(fps), frames=n_frames, faces=n_frames - len(missing),
                                   complete=True))
    if audio:
        (root / "audio").mkdir(exist_ok=True)
        (root / "audio" / f"{stem}.wav").write_bytes(b"")
    return times


def write_label_tree(root: Path, stems) -> Path:
    """Only label files (enough for split_recordings)."""
    for stem in stems:
        write_labels(root / "labels" / f"{stem}.csv", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0])
    return root


AVEC_STEMS = ([f"Train_DE_{i:02d}" for i in range(1, 7)] + [f"Train_HU_{i:02d}" for i in range(1, 5)]
              + [f"Devel_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)])
