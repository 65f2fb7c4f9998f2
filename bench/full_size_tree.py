"""A synthetic Aff-Wild2 tree at real size, built in seconds from the demo's crops with hard links.

    python -m bench.full_size_tree OUT [--videos 560] [--frames 2800000] [--val-share 0.15] [--seed 0]
                                       [--min-frames 73] [--max-frames 47000] [--face-gap 0.04] [--invalid 0.01]

Why: every speed and memory figure of the project was measured on the 9.6 k-frame demo, and Aff-Wild2 is
about 300 times larger (ABAW 2021: 561 VA trials, ~2.7 M frames, trials of 73 to ~47 k frames at 14-60 fps,
~15 % of them in validation). What costs time or memory per frame, per file or per video only shows at that
size, and the real data cannot be shipped. This tree has the real layout and the real shape:

* ``OUT/cropped_aligned/<video>/<frame:05d>.jpg`` — hard links to the demo's 112 px crops (so 2.8 M files
  cost directory entries, not 2.8 M JPEGs of disk), walked in order through the demo videos so that
  consecutive frames are consecutive demo frames and each label belongs to its face;
* ``OUT/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt`` — ``valence,arousal`` then one line
  per frame, copied from the demo labels of the linked crops, with runs of ``-5,-5`` (``--invalid``);
* video names ``<id>-<fps>-<W>x<H>`` carry a frame rate drawn from 14-60 fps, as many Aff-Wild2 names do;
* frame counts are log-normal, clipped to [--min-frames, --max-frames] and rescaled to ``--frames`` in all;
* faceless stretches (``--face-gap`` of the frames, in runs of 5-60 frames) have no crop file, as in the
  real ``cropped_aligned``.

No audio is written (a run on it sets ``data.audio.enabled=false``): eGeMAPS is computed once per wav at
preprocessing and cached, so it is not a per-frame cost of training or validation. The build is
deterministic in ``--seed``; an existing ``OUT`` with the same parameters is reused (``OUT/tree.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.cli import write_report
from data.datasets.affwild2 import EDITIONS, read_va_annotation
from data.samples.loaders import DataConfig, resolve_root

REPO = Path(__file__).resolve().parents[1]

FOLDER, SUBFOLDERS = EDITIONS["abaw_later"]
MANIFEST = "tree.json"


@dataclass(frozen=True)
class TreeSpec:
    """The shape of the synthetic tree (recorded in ``OUT/tree.json``)."""

    videos: int = 560
    frames: int = 2_800_000
    val_share: float = 0.15
    min_frames: int = 73
    max_frames: int = 47_000
    face_gap: float = 0.04
    invalid: float = 0.01
    seed: int = 0


@dataclass
class DemoFrames:
    """Every demo crop in a fixed order, with its label: the pool the tree's frames are linked from."""

    paths: list[str]
    labels: np.ndarray   # (n, 2) float32, the demo's own label of each crop


def demo_frames() -> DemoFrames:
    """The demo's crops (both splits) and their labels, generating the demo data on first use."""
    root = resolve_root(DataConfig())
    crops = root / "cropped_aligned"
    paths, labels = [], []
    folders = {folder for folder, _ in EDITIONS.values()}
    for annotation in sorted(p for p in root.rglob("*.txt") if p.parent.parent.name in folders):
        va = read_va_annotation(annotation)
        folder = crops / annotation.stem
        for frame in range(1, len(va) + 1):
            path = folder / f"{frame:05d}.jpg"
            if np.all(np.abs(va[frame - 1]) <= 1) and path.is_file():
                paths.append(str(path))
                labels.append(va[frame - 1])
    return DemoFrames(paths, np.asarray(labels, np.float32))


def frame_counts(spec: TreeSpec, rng: np.random.Generator) -> np.ndarray:
    """Per-video frame counts: log-normal (Aff-Wild2's long tail), clipped, summing to about ``spec.frames``."""
    raw = rng.lognormal(mean=0.0, sigma=1.0, size=spec.videos)
    counts = raw / raw.sum() * spec.frames
    for _ in range(20):   # clipping moves the total; a few rescalings settle it
        counts = np.clip(counts, spec.min_frames, spec.max_frames)
        counts *= spec.frames / counts.sum()
    return np.clip(np.round(counts), spec.min_frames, spec.max_frames).astype(int)


def face_mask(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """True where a frame has a crop; ``share`` of the frames fall in faceless runs of 5-60 frames."""
    has_face = np.ones(n, bool)
    missing = int(n * share)
    while missing > 0:
        length = min(int(rng.integers(5, 61)), missing)
        start = int(rng.integers(0, max(1, n - length)))
        has_face[start:start + length] = False
        missing -= length
    return has_face


def build_tree(out: Path, spec: TreeSpec, log=print) -> dict:
    """Write the tree into ``out`` (reused when ``out/tree.json`` records the same spec); returns the manifest."""
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("spec") == asdict(spec):
            return manifest
        raise SystemExit(f"error: {out} holds a tree of other parameters ({manifest_path}); choose another OUT")
    start = time.perf_counter()
    pool = demo_frames()
    if not pool.paths:
        raise SystemExit("error: the demo data has no labelled crops to link from")
    rng = np.random.default_rng(spec.seed)
    counts = frame_counts(spec, rng)
    is_val = np.zeros(spec.videos, bool)
    is_val[rng.permutation(spec.videos)[:round(spec.videos * spec.val_share)]] = True
    fps_choices = np.array([14, 15, 24, 25, 29.97, 30, 50, 60])
    cursor, crops, split_frames = 0, 0, {"train": 0, "val": 0}
    for v, n in enumerate(counts):
        fps = fps_choices[rng.integers(len(fps_choices))]
        name = f"{v + 1}-{fps:g}-1280x720"
        split = "val" if is_val[v] else "train"
        source = (cursor + np.arange(n)) % len(pool.paths)
        cursor += n
        labels = pool.labels[source].copy()
        invalid = face_mask(n, spec.invalid, rng) == 0
        labels[invalid] = -5.0
        has_face = face_mask(n, spec.face_gap, rng)
        folder = out / "cropped_aligned" / name
        folder.mkdir(parents=True, exist_ok=True)
        for frame in np.flatnonzero(has_face):
            os.link(pool.paths[source[frame]], folder / f"{frame + 1:05d}.jpg")
        crops += int(has_face.sum())
        split_frames[split] += int(n)
        annotation = out / FOLDER / SUBFOLDERS[split] / f"{name}.txt"
        annotation.parent.mkdir(parents=True, exist_ok=True)
        rows = "\n".join(f"{va[0]:.3f},{va[1]:.3f}" for va in labels)
        annotation.write_text(f"valence,arousal\n{rows}\n")
    manifest = {"spec": asdict(spec), "videos": int(spec.videos), "frames": int(counts.sum()), "crops": crops,
                "split_frames": split_frames, "min_frames": int(counts.min()), "max_frames": int(counts.max()),
                "build_seconds": round(time.perf_counter() - start, 1)}
    write_report(manifest_path, manifest)
    log(f"built {out}: {manifest['videos']} videos, {manifest['frames']:,} frames, {crops:,} crops "
        f"(val {split_frames['val']:,} frames) in {manifest['build_seconds']} s")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    defaults = TreeSpec()
    for key, value in asdict(defaults).items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    a = p.parse_args(argv)
    spec = TreeSpec(**{k: getattr(a, k) for k in asdict(defaults)})
    manifest = build_tree(a.out, spec)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
