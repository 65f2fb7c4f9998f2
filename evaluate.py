"""Evaluate ALN checkpoints, or score prediction files with an official protocol.

    python evaluate.py --checkpoint RUN/best.pt [--split val] [--out DIR]
    python evaluate.py --protocol avec2019 --labels DIR --predictions DIR [--json PATH]
    python evaluate.py --protocol abaw --labels ANNOTATION_DIR --predictions DIR_OR_FILE [--json PATH]

    python evaluate.py --checkpoint RUN/fold*/best.pt --dataset sewa [--postprocess]
    python evaluate.py --checkpoint CK [CK ...] --robustness [--split val] --out DIR

**Checkpoint mode** rebuilds the model and the data pipeline from each checkpoint (its config, audio
statistics), runs the test-time path (AEG cleans the face, CD scores it with z and audio) on every usable
frame of the split (default: SEWA's test fold, else the validation split), turns the frame predictions into
the official rows of the dataset's protocol (``avec2019`` for SEWA, ``abaw`` otherwise; ``--protocol``
overrides) and writes, per checkpoint:

* ``official/`` — the predictions in the official format (AVEC CSVs or ABAW per-video txt files);
* ``metrics.json`` — ``{"valence": {"ccc", "pcc", "rmse"}, "arousal": {...}, ...}``: the official scorer run on
  ``official/`` (all rows of the split concatenated), plus ``per_recording_mean`` and ``frame_level`` views;
* ``predictions.csv`` — ``video,frame,valence,arousal,valence_gold,arousal_gold`` per usable frame;
* ``plots/`` — per-recording traces (prediction vs gold) and a prediction-vs-gold density plot;

and prints a table. With several checkpoints (one per fold) it also writes ``folds.md``, ``folds.csv`` and
``folds.json`` (a row per fold, then mean and std over folds). ``--postprocess`` fits the post-processing
chain (median filter, centring, scaling, time shift) on the validation split and reports before/after.

**Robustness mode** (``--robustness``) scores every checkpoint on the split's frames under each corruption of
``data/samples/corruptions.py`` (7 artefacts x 5 severities, plus the clean input), with the same official protocol
as a normal evaluation, and writes ``robustness.json``, ``robustness.csv``, ``robustness.md`` and ``plots/`` to
``--out`` (``scoring/robustness_summary.py``). Checkpoints may be of different variants and systems (sequence models that
read faces too) but must evaluate the same dataset and split.

**Protocol mode** scores existing prediction files exactly as the challenges do (``scoring/protocols.py``):
``avec2019`` (recordings concatenated per culture and for all together, crop/pad, ``avec`` CCC/PCC, RMSE for
arousal, valence and liking) or ``abaw`` (-5 frames excluded, population CCC over all frames, mean CCC).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data.formats.abaw_submission import write_predictions
from data.formats.official_outputs import Track
from data.preprocess.audio import AudioStandardiser
from data.samples.corruptions import ARTEFACTS
from data.samples.loaders import (
    eval_loader,
    index_records,
    load_split,
    restoration_sets,
    scoring_dataset,
)
from evaluation.official import (
    by_video,
    headline_of,
    official_scores,
    per_recording_mean,
    score_files,
    score_tracks,
    tracks_for,
)
from evaluation.robustness import robustness_report
from gan.checkpoint import CheckpointError, inference_model, load_checkpoint, system_name
from gan.inference import Predictions, predict_batches, restoration_scores, tune_for_fixed_shapes
from runconfig import ConfigError, build_config, resolve_device, run_cli
from scoring.metrics import score_dimension
from scoring.plots import markdown_table, plot_scatter, plot_traces
from scoring.postprocess import PostProcessConfig, fit_chain
from training.sequence_inputs import SequencePredictor

log = logging.getLogger("evaluate")
PROTOCOLS = ("avec2019", "abaw")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", help="checkpoint file(s); several = one per fold")
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="official protocol (protocol mode: required; checkpoint mode: default from the dataset)")
    parser.add_argument("--labels", help="protocol mode: folder of label / annotation files")
    parser.add_argument("--predictions", help="protocol mode: folder of prediction files (or ABAW single file)")
    parser.add_argument("--json", help="also write the scores as JSON here")
    parser.add_argument("--dataset", choices=("demo", "affwild2", "sewa"),
                        help="checkpoint mode: dataset to evaluate on (default: the checkpoint's)")
    parser.add_argument("--split", default=None, choices=("train", "val", "test"),
                        help="checkpoint mode: split to score (default test for SEWA, val otherwise)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: <checkpoint dir>/eval-<split>, or beside the runs for several)")
    parser.add_argument("--robustness", action="store_true",
                        help="score every checkpoint under the corruption protocol (7 artefacts x 5 severities)")
    parser.add_argument("--artefacts", nargs="+", choices=list(ARTEFACTS), default=None,
                        help="--robustness: only these artefacts (default: all); the clean input is always scored")
    parser.add_argument("--postprocess", action="store_true",
                        help="fit the post-processing chain on the validation split and apply it (before/after)")
    parser.add_argument("--max-trace-plots", type=int, default=12, help="trace plots per checkpoint (0 = none)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="data overrides, e.g. data.root=/data/Aff-Wild2 data.num_workers=4")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.labels or args.predictions):
        parser.error("give either --checkpoint, or --protocol with --labels and --predictions")
    if not args.checkpoint and not (args.protocol and args.labels and args.predictions):
        parser.error("protocol mode needs --protocol, --labels and --predictions")
    if args.robustness and (args.postprocess or args.split == "test" and args.dataset != "sewa"):
        parser.error("--robustness scores labelled frames without post-processing (no --postprocess; "
                     "Aff-Wild2's test split has no labels)")
    return args


# ------------------------------------------------------------------ checkpoint mode


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


def evaluate_checkpoint(path: str, ckpt: dict, args: argparse.Namespace, out: Path | None, label: str) -> Evaluated:
    cfg = build_config(ckpt["config"], _data_overrides(args))
    split = args.split or ("test" if cfg.data.dataset == "sewa" else "val")
    protocol = args.protocol or ("avec2019" if cfg.data.dataset == "sewa" else "abaw")
    device = resolve_device(args.device)
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
    post = _postprocess(predict, cfg, split, protocol, tracks) if args.postprocess else None

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
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plots(out, tracks, args.max_trace_plots)
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
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
    with path.open("w", newline="") as fh:
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


def evaluate_robustness(args: argparse.Namespace) -> dict:
    """``--robustness``: ``evaluation.robustness.robustness_report`` with this command line's settings."""
    overrides = _data_overrides(args)
    return robustness_report(args.checkpoint, overrides, args.split, args.protocol, args.artefacts,
                             Path(args.out) if args.out else None, resolve_device(args.device))


def _data_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [o for o in args.overrides if o.split("=", 1)[0].startswith("data.")]
    if len(overrides) != len(args.overrides):
        raise ConfigError("evaluate.py takes only data.* overrides (the model comes from the checkpoint)")
    return [*overrides, f"data.dataset={args.dataset}"] if args.dataset else overrides


def evaluate_checkpoints(args: argparse.Namespace) -> list[Evaluated]:
    paths = args.checkpoint
    checkpoints = {p: load_checkpoint(p) for p in paths}  # read once; checked together before any work
    shapes = {p: (system_name(c), c["config"]["model"]["image_size"]) for p, c in checkpoints.items()}
    if len(set(shapes.values())) > 1:
        listing = "; ".join(f"{p}: {v} at {s} px" for p, (v, s) in shapes.items())
        raise CheckpointError(f"checkpoints of one evaluation must share variant and image size ({listing})")
    single = len(paths) == 1
    if args.out:
        out = Path(args.out)
    elif single:
        out = None  # <checkpoint dir>/eval-<split>, once the split is known
    else:
        out = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) / "eval-folds"
    results = []
    for path in paths:
        label = Path(path).parent.name or Path(path).stem
        results.append(evaluate_checkpoint(path, checkpoints[path], args, out if single else out / label, label))
    if not single and results[0].headline:
        rows, columns = fold_rows(results)
        table = markdown_table(rows, columns)
        (out / "folds.md").write_text(table + "\n")
        with (out / "folds.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        (out / "folds.json").write_text(json.dumps({"folds": rows, "per_fold": [asdict(r) for r in results]},
                                                   indent=2) + "\n")
        print(table)
        print(f"wrote {out / 'folds.md'}, folds.csv and folds.json")
    elif results[0].headline:
        print("wrote metrics.json, predictions.csv, official/ and plots/")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def format_protocol_table(protocol: str, scores: dict) -> str:
    lines = [f"{'':10s}{'':10s}{'CCC':>8s}{'PCC':>8s}{'RMSE':>8s}"]
    groups = scores.items() if protocol == "avec2019" else [("all", scores)]
    for group, dims in groups:
        for dim, m in dims.items():
            if isinstance(m, dict):
                lines.append(f"{group:10s}{dim:10s}{m['ccc']:8.3f}{m['pcc']:8.3f}{m['rmse']:8.3f}")
    if protocol == "abaw":
        lines.append(f"mean CCC {scores['mean_ccc']:.3f} over {scores['frames']} frames "
                     f"({scores['excluded_frames']} frames labelled -5 excluded)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.checkpoint and args.robustness:
        return run_cli(lambda: evaluate_robustness(args) and 0)
    if args.checkpoint:
        return run_cli(lambda: evaluate_checkpoints(args) and 0)
    return run_cli(lambda: score_protocol(args))


def score_protocol(args: argparse.Namespace) -> int:
    scores = score_files(args.protocol, Path(args.labels), Path(args.predictions))
    print(format_protocol_table(args.protocol, scores))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
