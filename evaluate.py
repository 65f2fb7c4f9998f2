"""Evaluate ALN checkpoints, or score prediction files with an official protocol.

    python evaluate.py --checkpoint RUN/best.pt [--split val] [--out DIR]
    python evaluate.py --protocol avec2019 --labels DIR --predictions DIR [--json PATH]
    python evaluate.py --protocol abaw --labels ANNOTATION_DIR --predictions DIR_OR_FILE [--json PATH]

**Checkpoint mode**:
Rebuilds the model and the data pipeline from the checkpoint (its config, audio statistics), runs the
test-time path (AEG cleans the face, CD scores it with z and audio) on every usable frame of the split,
and writes:

* ``DIR/predictions.csv`` — ``video,frame,valence,arousal,valence_gold,arousal_gold`` per frame;
* ``DIR/metrics.json`` — ``{"valence": {"ccc", "pcc", "rmse"}, "arousal": {...}}``: population CCC over all
  frames of the split concatenated (the official way), plus ``per_video_mean`` as an extra view;

and prints a table. ``DIR`` defaults to ``<checkpoint folder>/eval-<split>``.

**Protocol mode** scores existing prediction files exactly as the challenges do (``gan/protocols.py``):
``avec2019`` (recordings concatenated per culture and for all together, crop/pad, ``avec`` CCC/PCC, RMSE for
arousal, valence and liking) or ``abaw`` (-5 frames excluded, population CCC over all frames, mean CCC).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from data.audio import AudioStandardiser
from data.loaders import build_dataset, eval_loader, load_split
from data.prediction_files import load_abaw_pairs, load_avec_pairs
from gan.checkpoint import load_checkpoint, model_from_checkpoint
from gan.evaluation import Predictions, predict_batches
from gan.metrics import CONVENTIONS, DIMENSIONS, score_va
from gan.protocols import Recording, crop_or_pad, score_abaw, score_avec
from runconfig import USER_ERRORS, ConfigError, build_config, user_message

log = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint file (best.pt or last.pt of a run)")
    parser.add_argument("--protocol", choices=("avec2019", "abaw"), help="score prediction files with this protocol")
    parser.add_argument("--labels", help="protocol mode: folder of label / annotation files")
    parser.add_argument("--predictions", help="protocol mode: folder of prediction files (or ABAW single file)")
    parser.add_argument("--json", help="protocol mode: also write the scores as JSON here")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"),
                        help="split to score (default val; test exists for SEWA)")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint dir>/eval-<split>)")
    parser.add_argument("--convention", default="population", choices=CONVENTIONS,
                        help="CCC/PCC convention (default population, as ABAW)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="data overrides, e.g. data.root=/data/Aff-Wild2 data.num_workers=4")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.labels or args.predictions):
        parser.error("give either --checkpoint, or --protocol with --labels and --predictions")
    if not args.checkpoint and not (args.protocol and args.labels and args.predictions):
        parser.error("protocol mode needs --protocol, --labels and --predictions")
    return args


def per_video_mean(preds: Predictions, convention: str) -> dict[str, dict[str, float]]:
    """Mean over videos of each video's scores: an extra view, never the headline."""
    videos = np.asarray(preds.videos)
    per = [score_va(preds.pred[videos == v], preds.gold[videos == v], convention)
           for v in dict.fromkeys(preds.videos) if (videos == v).sum() >= 2]
    return {d: {m: float(np.mean([s[d][m] for s in per])) for m in ("ccc", "pcc", "rmse")} for d in DIMENSIONS}


def write_predictions(path: Path, preds: Predictions) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "frame", "valence", "arousal", "valence_gold", "arousal_gold"])
        for v, f, p, g in zip(preds.videos, preds.frames, preds.pred, preds.gold, strict=True):
            writer.writerow([v, f, f"{p[0]:.6f}", f"{p[1]:.6f}", f"{g[0]:.6f}", f"{g[1]:.6f}"])


def format_table(metrics: dict) -> str:
    lines = [f"{'':10s}{'CCC':>8s}{'PCC':>8s}{'RMSE':>8s}"]
    for dim in DIMENSIONS:
        m = metrics[dim]
        lines.append(f"{dim:10s}{m['ccc']:8.3f}{m['pcc']:8.3f}{m['rmse']:8.3f}")
    return "\n".join(lines)


def evaluate(args: argparse.Namespace) -> dict:
    ckpt = load_checkpoint(args.checkpoint)
    data_overrides = [o for o in args.overrides if o.split("=", 1)[0].startswith("data.")]
    if len(data_overrides) != len(args.overrides):
        raise ConfigError("evaluate.py takes only data.* overrides (the model comes from the checkpoint)")
    cfg = build_config(ckpt["config"], data_overrides)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    model = model_from_checkpoint(ckpt).to(device)
    standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"])
    split, _ = load_split(cfg.data, args.split, standardiser)
    dataset = build_dataset(split, cfg.model.image_size, degrade=None)
    preds = predict_batches(model, eval_loader(dataset, cfg.data.eval_batch_size, cfg.data.num_workers), device,
                            cfg.train.amp)
    metrics = {**preds.scores(args.convention),
               "per_video_mean": per_video_mean(preds, args.convention),
               "convention": args.convention, "frames": int(len(preds.gold)), "videos": len(set(preds.videos)),
               "split": args.split, "checkpoint": str(args.checkpoint), "step": int(ckpt["step"]),
               "variant": cfg.model.variant}
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval-{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.csv", preds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{cfg.model.variant} @ step {ckpt['step']} on {args.split}: {metrics['frames']} frames, "
          f"{metrics['videos']} videos ({args.convention} CCC, all frames concatenated)")
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return metrics


def score_files(protocol: str, labels: Path, predictions: Path) -> dict:
    """Score prediction files with an official protocol; warns about every cropped or padded track."""
    if protocol == "avec2019":
        pairs = load_avec_pairs(labels, predictions)
    else:
        pairs = load_abaw_pairs(labels, predictions)
    recordings = []
    for pair in pairs:
        pred, action = crop_or_pad(pair.pred, len(pair.gold))
        if action:
            log.warning("%s: prediction has %d rows for %d labels; %s", Path(predictions) / f"{pair.name}.csv",
                        len(pair.pred), len(pair.gold), "cropped" if action == "cropped" else "padded with its last value")
        recordings.append(Recording(pair.name, pair.group, pair.gold, pred))
    return score_avec(recordings) if protocol == "avec2019" else score_abaw(recordings)


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
    try:
        if args.protocol and not args.checkpoint:
            scores = score_files(args.protocol, Path(args.labels), Path(args.predictions))
            print(format_protocol_table(args.protocol, scores))
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
            return 0
        evaluate(args)
    except USER_ERRORS as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
