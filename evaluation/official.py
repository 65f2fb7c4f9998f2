"""Frame predictions -> the official tracks, files and scores of a dataset's protocol.

``evaluate.py`` (checkpoint mode) and the robustness protocol (``evaluation/robustness.py``) both score through
here, so a condition of the robustness run and a plain evaluation of the same predictions give the same numbers:
the tracks are written in the official format (AVEC 2019 CSVs for SEWA, ABAW per-video files otherwise) and the
official scorer reads those files back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import EDITIONS, find_annotation_dir
from data.formats.official_outputs import (
    Track,
    abaw_tracks,
    sewa_tracks,
    write_abaw_tracks,
    write_avec_tracks,
)
from data.formats.prediction_files import load_abaw_pairs, load_avec_pairs
from data.samples.loaders import resolve_root
from gan.inference import Predictions
from runconfig import ConfigError
from scoring.protocols import Recording, crop_or_pad, score_abaw, score_avec

log = logging.getLogger("evaluate")


def by_video(preds: Predictions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    videos = np.asarray(preds.videos)
    frames = np.asarray(preds.frames)
    return {v: (frames[videos == v], preds.pred[videos == v]) for v in dict.fromkeys(preds.videos)}


def tracks_for(protocol: str, cfg, records, preds: Predictions) -> list[Track]:
    if protocol == "avec2019":
        if cfg.data.dataset != "sewa":
            raise ConfigError("--protocol avec2019 needs SEWA data (data.dataset=sewa)")
        return sewa_tracks(records, by_video(preds), cfg.data.sewa)
    return abaw_tracks(records, by_video(preds))


def score_tracks(protocol: str, tracks: list[Track]) -> dict:
    recordings = [Recording(t.name, t.group, t.gold, t.pred) for t in tracks]
    return score_avec(recordings, tracks[0].dims) if protocol == "avec2019" else score_abaw(recordings)


def headline_of(protocol: str, scores: dict) -> dict:
    body = scores[next(iter(scores))] if protocol == "avec2019" else scores
    return {d: body[d] for d in ("valence", "arousal") if d in body}


def per_recording_mean(protocol: str, tracks: list[Track]) -> dict:
    per = [headline_of(protocol, score_tracks(protocol, [t])) for t in tracks if len(t.gold) >= 2]
    return {d: {m: float(np.mean([p[d][m] for p in per])) for m in ("ccc", "pcc", "rmse")} for d in per[0]}


def label_dir(cfg, split: str) -> Path:
    root = resolve_root(cfg.data)
    if cfg.data.dataset == "sewa":
        return root / "labels"
    edition, ann_dir = find_annotation_dir(root)
    return ann_dir / EDITIONS[edition][1][split]


def official_scores(protocol: str, cfg, split: str, tracks: list[Track], official_dir: Path) -> dict:
    """Write ``tracks`` in the official format to ``official_dir`` and score those files with the official scorer:
    the headline is what anyone re-scoring the files gets."""
    if protocol == "avec2019":
        write_avec_tracks(official_dir, tracks)
    else:
        write_abaw_tracks(official_dir, tracks)
    return score_files(protocol, label_dir(cfg, split), official_dir, only={t.name for t in tracks})


def score_files(protocol: str, labels: Path, predictions: Path, only: set[str] | None = None) -> dict:
    """Score prediction files with an official protocol; warns about every cropped or padded track."""
    if protocol == "avec2019":
        pairs = load_avec_pairs(labels, predictions, only)
    else:
        pairs = load_abaw_pairs(labels, predictions, only)
    dims = [d for d in pairs[0].dims if all(d in p.dims for p in pairs)]
    recordings = []
    for pair in pairs:
        if list(pair.dims) != dims:
            keep = [pair.dims.index(d) for d in dims]
            pair.gold, pair.pred = pair.gold[:, keep], pair.pred[:, keep]
        pred, action = crop_or_pad(pair.pred, len(pair.gold))
        if action:
            log.warning("%s: prediction has %d rows for %d labels; %s", Path(predictions) / f"{pair.name}.csv",
                        len(pair.pred), len(pair.gold), "cropped" if action == "cropped" else "padded with its last value")
        recordings.append(Recording(pair.name, pair.group, pair.gold, pred))
    return score_avec(recordings, dims) if protocol == "avec2019" else score_abaw(recordings)
