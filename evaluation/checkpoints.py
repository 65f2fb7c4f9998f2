"""Checkpoint mode of ``evaluate.py``: each checkpoint rebuilt with its data pipeline, its test-time path run on
every usable frame of a split, and the frame predictions turned into the official rows, files and scores of the
dataset's protocol (``evaluation/official.py``); per checkpoint ``official/``, ``metrics.json``,
``predictions.csv`` and ``plots/``, and a fold table (``folds.md``, ``.csv``, ``.json``) when there are several.
Every file goes through the atomic write (``fileio/atomic.py``), so a killed evaluation leaves no torn file.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data.formats.abaw_submission import write_predictions
from data.formats.official_outputs import Track
from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import eval_loader, index_records, load_split, restoration_sets, scoring_dataset
from evaluation.official import (
    by_video,
    headline_of,
    official_scores,
    per_recording_mean,
    score_tracks,
    tracks_for,
)
from fileio.atomic import atomic_open, write_json, write_text
from gan.checkpoint import CheckpointError, inference_model, load_checkpoint, system_name
from gan.inference import Predictions, predict_batches, restoration_scores, tune_for_fixed_shapes
from runconfig import build_config, resolve_device
from scoring.metrics import score_dimension
from scoring.plots import markdown_table, plot_scatter, plot_traces
from scoring.postprocess import PostProcessConfig, fit_chain
from training.sequence_inputs import SequencePredictor

log = logging.getLogger("evaluate")


@dataclass
class Request:
    """What checkpoint mode is asked for (``evaluate.py``'s options)."""

    checkpoints: list[str]
    overrides: list[str] = field(default_factory=list)   # data.* only (the model comes from the checkpoint)
    split: str | None = None        # default: SEWA's test fold, else the validation split
    protocol: str | None = None     # default: avec2019 for SEWA, abaw otherwise
    device: str = "auto"
    postprocess: bool = False
    max_trace_plots: int = 12
    out: str | None = None
    json: str | None = None


@dataclass
class Evaluated:
    """One checkpoint scored on one split, in the official way and as extra views."""

    label: str
    official: dict            # protocol scores of the written files (the headline)
    headline: dict            # {"valence": {...}, "arousal": {...}} taken from ``official``
    per_recording_mean: dict
    frame_level: dict         # usable frames only, population convention (what training validates on)
    postprocess: dict | None = None


def _frame_predictions(model, cfg, split: str, standardiser, device, degraded_views: bool = False
                       ) -> tuple[list, Predictions, dict]:
    """Predictions of the test-time path; with ``degraded_views`` also the degraded views and restoration.

    It degrades every frame as training validation does (fixed seeds, no clean share) and scores
    each artefact alone on ``train.restoration_frames`` frames: ``{artefact: {psnr_*, ssim_*}}``.
    """
    data_split, _ = load_split(cfg.data, split, standardiser)
    degrade = cfg.data.degrade if degraded_views and cfg.data.degrade.enabled else None
    dataset = scoring_dataset(data_split, cfg.model.image_size, degrade)
    loader = eval_loader(dataset, cfg.data.eval_batch_size, cfg.data.num_workers)
    preds = predict_batches(model, loader, device, cfg.train.amp, restoration_every=cfg.train.restoration_every)
    restoration = {}
    if degrade and cfg.train.restoration_frames:
        sets = restoration_sets(data_split, cfg.model.image_size, degrade, cfg.train.restoration_frames)
        restoration = restoration_scores(model, sets, device, cfg.data.eval_batch_size, amp=cfg.train.amp)
    return data_split.records, preds, restoration


def _predictor(ckpt: dict, cfg, standardiser, device):
    """``predict(split, degraded_views=False) -> (records, predictions, restoration)`` for the checkpoint's system.

    ALN runs its test-time path on every usable frame; a sequence model (``training/sequence_inputs.py``) reads
    whole recordings on the CPU and is sampled at the same frames, so both go through the same protocols."""
    if ckpt.get("system", "aln") == "aln":
        model = inference_model(ckpt, device, cfg.train.channels_last)
        return lambda split, degraded_views=False: _frame_predictions(model, cfg, split, standardiser, device,
                                                                      degraded_views)
    return SequencePredictor(ckpt, cfg, standardiser)


def _postprocess(predict, cfg, split: str, protocol: str, tracks: list[Track]) -> dict:
    """Fit the chain on the validation split (never on ``split``'s labels) and apply it to ``tracks``."""
    if split == "val" or (cfg.data.dataset == "sewa" and cfg.data.sewa.protocol == "avec"):
        log.warning("post-processing is fitted on the validation recordings and applied to them too (the %s "
                    "split has no other labelled validation data): an optimistic number, reported only for "
                    "comparison", cfg.data.dataset)
    val_records, val_preds, _ = predict("val")
    val_tracks = tracks_for(protocol, cfg, val_records, val_preds)
    dims = tracks[0].dims
    train = np.concatenate([r.labels[r.frames - 1] for r in index_records(cfg.data, "train")])
    columns = [1 if d == "arousal" else 0 for d in dims]  # training labels are [valence, arousal]
    chain = fit_chain([t.pred for t in val_tracks], [_labels_only(t.gold) for t in val_tracks], dims,
                      train[:, columns].mean(axis=0), train[:, columns].std(axis=0), PostProcessConfig())
    before = headline_of(protocol, score_tracks(protocol, tracks))
    for track, processed in zip(tracks, chain.apply([t.pred for t in tracks], dims), strict=True):
        track.pred = processed
    return {"chain": chain.to_dict(), "before": before}


def evaluate_checkpoint(path: str, ckpt: dict, request: Request, out: Path | None, label: str) -> Evaluated:
    cfg = build_config(ckpt["config"], request.overrides)
    split = request.split or ("test" if cfg.data.dataset == "sewa" else "val")
    protocol = request.protocol or ("avec2019" if cfg.data.dataset == "sewa" else "abaw")
    device = resolve_device(request.device)
    tune_for_fixed_shapes(device)
    standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"])
    predict = _predictor(ckpt, cfg, standardiser, device)
    if split == "test" and cfg.data.dataset == "affwild2":
        return _test_submission(path, ckpt, cfg, predict, out, label)
    records, preds, restoration = predict(split, degraded_views=True)
    tracks = tracks_for(protocol, cfg, records, preds)
    unscored = sorted({r.name for r in records} - {t.name for t in tracks})
    if unscored:
        log.warning("%d video(s) have no frame with a face and no prediction; they are left out of the scores, "
                    "which are therefore not the official ones: %s", len(unscored), ", ".join(unscored[:5]))
    post = _postprocess(predict, cfg, split, protocol, tracks) if request.postprocess else None

    out = out or Path(path).parent / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    write_frame_predictions(out / "predictions.csv", preds)
    official = official_scores(protocol, cfg, split, tracks, out / "official")
    headline = headline_of(protocol, official)
    if post is not None:
        post["after"] = headline
    result = Evaluated(label, official, headline, per_recording_mean(protocol, tracks), preds.scores("population"),
                       post)
    optimistic = _optimism(path, ckpt, cfg, split, {t.name for t in tracks})
    metrics = {**headline, "protocol": protocol, "official": official,
               "per_recording_mean": result.per_recording_mean, "frame_level": result.frame_level,
               "postprocess": post, "frames": int(len(preds.gold)),
               "views": preds.view_scores(),
               "restoration": restoration, "videos": len(tracks),
               "videos_without_prediction": unscored, "split": split,
               "checkpoint": str(path), "step": int(ckpt["step"]), "variant": system_name(ckpt),
               "dataset": cfg.data.dataset, "fold": cfg.data.fold if cfg.data.dataset == "sewa" else None,
               "optimistic": optimistic}
    if preds.liking is not None:   # sequence models with sequence.liking: frame level, over the labelled frames
        pred_l, gold_l = preds.liking
        labelled = (gold_l >= -1) & (gold_l <= 1)
        metrics["liking"] = score_dimension(pred_l[labelled], gold_l[labelled]) if labelled.sum() > 1 else None
    write_json(out / "metrics.json", metrics, indent=2)
    _plots(out, tracks, request.max_trace_plots)
    attribution = predict.attribution_pngs(out, split, label) if isinstance(predict, SequencePredictor) else []
    print(f"{label}: {system_name(ckpt)} @ step {ckpt['step']} on {cfg.data.dataset}/{split}, {len(tracks)} "
          f"recordings, protocol {protocol}")
    print(format_table(headline))
    if metrics.get("liking"):
        print("liking (frame level, labelled frames): " + "  ".join(f"{k.upper()} {v:.3f}"
                                                                   for k, v in metrics["liking"].items()))
    if optimistic:
        print(f"NOTE: optimistic scores: {optimistic}")
    if restoration:
        print("restoration against the clean faces (each artefact alone, and the training mix):")
        print(markdown_table([{"artefact": name, **row} for name, row in restoration.items()],
                             ["artefact", "psnr_degraded", "psnr_restored", "ssim_degraded", "ssim_restored"],
                             ".2f"), end="")
    if post is not None:
        print("before post-processing:\n" + format_table(post["before"]))
    if attribution:
        print("feature attribution heatmaps: " + ", ".join(str(p) for p in attribution))
    return result


def _test_submission(path: str, ckpt: dict, cfg, predict, out: Path | None, label: str) -> Evaluated:
    """Aff-Wild2 test split (no labels): the submission in both ABAW layouts, every frame of every listed video.

    Frames without a face take the nearest predicted frame of the video (``data.formats.abaw_submission``);
    a listed video without a single face crop gets 0, 0 for every frame, with a warning naming it.
    """
    records, preds, _ = predict("test")
    per_video = by_video(preds)
    faceless = [r.name for r in records if r.name not in per_video]
    if faceless:
        log.warning("%d test video(s) without any face crop get 0, 0 for every frame: %s", len(faceless),
                    ", ".join(faceless[:5]))
    predictions = {r.name: per_video.get(r.name, (np.array([1]), np.zeros((1, 2)))) for r in records}
    n_frames = {r.name: r.n_frames for r in records}
    out = out or Path(path).parent / "eval-test"
    written = write_predictions(out / "abaw2020", "abaw2020", predictions, n_frames)
    single = write_predictions(out / "abaw_later" / "predictions.txt", "abaw_later", predictions, n_frames)
    write_frame_predictions(out / "predictions.csv", preds)
    metrics = {"split": "test", "labels": False, "videos": len(records), "frames": int(sum(n_frames.values())),
               "frames_with_a_face": int(len(preds.pred)), "videos_without_a_face": faceless,
               "submission": {"abaw2020": str(out / "abaw2020"), "abaw_later": str(single[0])},
               "checkpoint": str(path), "step": int(ckpt["step"]), "variant": system_name(ckpt),
               "dataset": cfg.data.dataset}
    write_json(out / "metrics.json", metrics, indent=2)
    print(f"{label}: {system_name(ckpt)} @ step {ckpt['step']} on {cfg.data.dataset}/test, {len(records)} "
          f"videos, {metrics['frames']} frames: the test split has no labels, so no scores")
    print(f"submission: {len(written)} per-video files in {out / 'abaw2020'} (ABAW 2020) and {single[0]} "
          "(later editions)")
    return Evaluated(label, {}, {}, {}, {})


def _optimism(path: str, ckpt: dict, cfg, split: str, scored: set[str]) -> str | None:
    """Why these scores are optimistic, or None: the checkpoint was chosen on recordings it is scored on.

    ``best.pt`` is the checkpoint with the best validation CCC, so scoring it on the validation split
    (Aff-Wild2 val; SEWA's ``avec`` protocol, whose test is its Devel validation) reports a selected
    maximum, not an unbiased estimate.
    """
    trained_on = set(cfg.data.train_splits)
    if split in trained_on:
        return f"the model was trained on the {split} split (data.train_splits={sorted(trained_on)})"
    if ckpt.get("selected_on") != "val" and Path(path).name != "best.pt":
        return None
    validation = scored if split == "val" else {r.name for r in index_records(cfg.data, "val")} & scored
    if not validation:
        return None
    return (f"{Path(path).name} was selected on the validation split, which holds {len(validation)} of the "
            f"{len(scored)} scored recordings")


def _labels_only(gold: np.ndarray) -> np.ndarray:
    """Gold with invalid rows (Aff-Wild2's -5, anything outside [-1, 1]) as NaN, which fitting and plots skip."""
    return np.where((gold >= -1) & (gold <= 1), gold, np.nan)


def _plots(out: Path, tracks: list[Track], max_traces: int) -> None:
    for track in tracks[:max_traces]:
        plot_traces(out / "plots" / f"trace_{track.name}.png", track.times, track.pred, _labels_only(track.gold),
                    track.dims, track.name)
    pred = np.concatenate([t.pred for t in tracks])
    gold = _labels_only(np.concatenate([t.gold for t in tracks]))
    plot_scatter(out / "plots" / "scatter.png", pred, gold, tracks[0].dims, "prediction vs gold")


def write_frame_predictions(path: Path, preds: Predictions) -> None:
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "frame", "valence", "arousal", "valence_gold", "arousal_gold"])
        for v, f, p, g in zip(preds.videos, preds.frames, preds.pred, preds.gold, strict=True):
            writer.writerow([v, f, f"{p[0]:.6f}", f"{p[1]:.6f}", f"{g[0]:.6f}", f"{g[1]:.6f}"])


def format_table(metrics: dict) -> str:
    lines = [f"{'':10s}{'CCC':>8s}{'PCC':>8s}{'RMSE':>8s}"]
    for dim, m in metrics.items():
        lines.append(f"{dim:10s}{m['ccc']:8.3f}{m['pcc']:8.3f}{m['rmse']:8.3f}")
    return "\n".join(lines)


def fold_rows(results: list[Evaluated]) -> tuple[list[dict], list[str]]:
    """One row per checkpoint plus mean and std (sample std over folds, ddof=1) rows."""
    dims = list(results[0].headline)
    columns = ["fold"] + [f"{d}_{m}" for d in dims for m in ("ccc", "pcc", "rmse")]
    rows = [{"fold": r.label, **{f"{d}_{m}": r.headline[d][m] for d in dims for m in ("ccc", "pcc", "rmse")}}
            for r in results]
    values = np.array([[row[c] for c in columns[1:]] for row in rows])
    rows.append({"fold": "mean", **dict(zip(columns[1:], values.mean(axis=0), strict=True))})
    if len(results) > 1:
        rows.append({"fold": "std", **dict(zip(columns[1:], values.std(axis=0, ddof=1), strict=True))})
    return rows, columns


def evaluate_checkpoints(request: Request) -> list[Evaluated]:
    """Score every checkpoint of ``request`` (one per fold when several); a fold table when several."""
    paths = request.checkpoints
    checkpoints = {p: load_checkpoint(p) for p in paths}  # read once; checked together before any work
    shapes = {p: (system_name(c), c["config"]["model"]["image_size"]) for p, c in checkpoints.items()}
    if len(set(shapes.values())) > 1:
        listing = "; ".join(f"{p}: {v} at {s} px" for p, (v, s) in shapes.items())
        raise CheckpointError(f"checkpoints of one evaluation must share variant and image size ({listing})")
    single = len(paths) == 1
    if request.out:
        out = Path(request.out)
    elif single:
        out = None  # <checkpoint dir>/eval-<split>, once the split is known
    else:
        out = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) / "eval-folds"
    results = []
    for path in paths:
        label = Path(path).parent.name or Path(path).stem
        results.append(evaluate_checkpoint(path, checkpoints[path], request, out if single else out / label, label))
    if not single and results[0].headline:
        rows, columns = fold_rows(results)
        table = markdown_table(rows, columns)
        write_text(out / "folds.md", table + "\n")
        with atomic_open(out / "folds.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        write_json(out / "folds.json", {"folds": rows, "per_fold": [asdict(r) for r in results]}, indent=2)
        print(table)
        print(f"wrote {out / 'folds.md'}, folds.csv and folds.json")
    elif results[0].headline:
        print("wrote metrics.json, predictions.csv, official/ and plots/")
    if request.json:
        write_json(request.json, [asdict(r) for r in results], indent=2)
    return results


