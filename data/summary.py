"""Dataset summary: ``python -m data.summary ROOT --dataset {affwild2,sewa,demo} [--json PATH]``.

The first thing to run on a new copy of a dataset: per split it counts videos, frames with valid labels,
invalid labels (-5 / out of range), labelled frames without an image, images without a label, videos
without audio, and describes the valence/arousal labels of the usable frames (mean, std, histogram over
[-1, 1]). Crop folders that no annotation file refers to are listed too. Prints a table; ``--json``
writes ``{"dataset", "root", "splits": {"<split>": {...}}, "unannotated_crop_folders": [...]}``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import (
    EDITIONS,
    SPLITS,
    IndexReport,
    VideoRecord,
    find_annotation_dir,
    index_split,
)
from data.datasets.demo import default_demo_root, ensure_demo_dataset
from data.datasets.sewa import SewaConfig, index_sewa, labelled_recordings, parse_stem
from data.errors import DataError
from fileio.atomic import write_json

COUNT_KEYS = ("videos", "valid_labels", "invalid_labels", "labelled_without_image", "images_without_label",
              "audio_missing", "audio_drift", "fps_from_audio", "usable_frames")


def label_stats(records: list[VideoRecord], bins: int = 10) -> dict:
    """Mean, std and histogram (``bins`` equal bins on [-1, 1]) of V/A over the usable frames."""
    labels = (np.concatenate([r.labels[r.frames - 1] for r in records]) if records else np.zeros((0, 2)))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    out = {"bin_edges": [round(float(e), 6) for e in edges]}
    for d, name in enumerate(("valence", "arousal")):
        values = labels[:, d].astype(np.float64)
        out[name] = {
            "mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None,
            "histogram": np.histogram(values, bins=edges)[0].astype(int).tolist(),
        }
    return out


def split_summary(records: list[VideoRecord], report: IndexReport, bins: int) -> dict:
    return {**{k: int(getattr(report, k)) for k in COUNT_KEYS}, "labels": label_stats(records, bins)}


def summarise_affwild2(root: Path, bins: int = 10, default_fps: float = 30.0) -> dict:
    splits = {}
    for split in SPLITS:
        records, report = index_split(root, split, default_fps, require_frames=False)
        splits["train" if split == "train" else "validation"] = split_summary(records, report, bins)
    edition, ann_dir = find_annotation_dir(root)
    annotated = {p.stem for sub in EDITIONS[edition][1].values() for p in (ann_dir / sub).glob("*.txt")}
    crops = root / "cropped_aligned"
    orphans = sorted(p.name for p in crops.iterdir() if p.is_dir() and p.name not in annotated)
    return {"splits": splits, "unannotated_crop_folders": orphans}


def summarise_sewa(root: Path, bins: int = 10) -> dict:
    """SEWA per AVEC partition and culture (``Train_DE``, ``Devel_HU``, ...): the groups every protocol is built from."""
    groups: dict[str, list[str]] = {}
    for stem in labelled_recordings(root):
        partition, culture, _ = parse_stem(stem)
        groups.setdefault(f"{partition}_{culture}", []).append(stem)
    splits = {}
    for group, stems in sorted(groups.items()):
        records, report = index_sewa(root, stems, group, SewaConfig(), require_frames=False)
        splits[group] = split_summary(records, report, bins)
    crops = root / "cropped_aligned"
    labelled = {s for stems in groups.values() for s in stems}
    orphans = sorted(p.name for p in crops.iterdir() if p.is_dir() and p.name not in labelled) if crops.is_dir() else []
    return {"splits": splits, "unannotated_crop_folders": orphans}


def summarise(root: Path | None, dataset: str, bins: int = 10) -> dict:
    if dataset == "demo":
        root = ensure_demo_dataset(root or default_demo_root())
        body = summarise_affwild2(Path(root), bins)
    elif dataset == "affwild2":
        if root is None or not Path(root).is_dir():
            raise DataError(f"{root}: data root does not exist")
        body = summarise_affwild2(Path(root), bins)
    elif dataset == "sewa":
        if root is None or not Path(root).is_dir():
            raise DataError(f"{root}: data root does not exist")
        body = summarise_sewa(Path(root), bins)
    else:
        raise DataError(f"unknown dataset {dataset!r}; use affwild2, sewa or demo")
    return {"dataset": dataset, "root": str(root), **body}


def format_summary(summary: dict) -> str:
    head = f"{'split':12s}" + "".join(f"{k:>{len(k) + 2}s}" for k in COUNT_KEYS)
    lines = [f"{summary['dataset']} at {summary['root']}", head]
    for split, s in summary["splits"].items():
        lines.append(f"{split:12s}" + "".join(f"{s[k]:>{len(k) + 2}d}" for k in COUNT_KEYS))
    lines.append("")
    lines.append(f"{'split':12s}{'V mean':>9s}{'V std':>8s}{'A mean':>9s}{'A std':>8s}   V histogram | A histogram"
                 " (10 bins on [-1, 1])")
    for split, s in summary["splits"].items():
        lab = s["labels"]
        v, a = lab["valence"], lab["arousal"]
        if v["mean"] is None:
            lines.append(f"{split:12s}  (no usable frames)")
            continue
        lines.append(f"{split:12s}{v['mean']:9.3f}{v['std']:8.3f}{a['mean']:9.3f}{a['std']:8.3f}   "
                     f"{' '.join(map(str, v['histogram']))} | {' '.join(map(str, a['histogram']))}")
    if summary.get("unannotated_crop_folders"):
        names = summary["unannotated_crop_folders"]
        lines.append(f"\n{len(names)} crop folders without annotation: {', '.join(names[:10])}"
                     + (" ..." if len(names) > 10 else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=None, help="dataset root (optional for --dataset demo)")
    parser.add_argument("--dataset", required=True, choices=("affwild2", "sewa", "demo"))
    parser.add_argument("--json", default=None, help="also write the summary as JSON to this path")
    parser.add_argument("--bins", type=int, default=10, help="histogram bins on [-1, 1]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = summarise(Path(args.root) if args.root else None, args.dataset, args.bins)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, summary, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
