"""Small on-disk fixtures written in the real dataset layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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
