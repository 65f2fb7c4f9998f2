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
import logging
import sys
from pathlib import Path

from data.samples.corruptions import ARTEFACTS
from evaluation.checkpoints import Request, evaluate_checkpoints
from evaluation.official import (
    score_files,
)
from evaluation.robustness import robustness_report
from fileio.atomic import write_json
from runconfig import ConfigError, resolve_device, run_cli

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


def evaluate_robustness(args: argparse.Namespace) -> dict:
    """``--robustness``: ``evaluation.robustness.robustness_report`` with this command line's settings."""
    overrides = _data_overrides(args)
    return robustness_report(args.checkpoint, overrides, args.split, args.protocol, args.artefacts,
                             Path(args.out) if args.out else None, resolve_device(args.device))


def checkpoint_request(args: argparse.Namespace) -> Request:
    return Request(args.checkpoint, _data_overrides(args), args.split, args.protocol, args.device, args.postprocess,
                   args.max_trace_plots, args.out, args.json)


def _data_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [o for o in args.overrides if o.split("=", 1)[0].startswith("data.")]
    if len(overrides) != len(args.overrides):
        raise ConfigError("evaluate.py takes only data.* overrides (the model comes from the checkpoint)")
    return [*overrides, f"data.dataset={args.dataset}"] if args.dataset else overrides


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
        return run_cli(lambda: evaluate_checkpoints(checkpoint_request(args)) and 0)
    return run_cli(lambda: score_protocol(args))


def score_protocol(args: argparse.Namespace) -> int:
    scores = score_files(args.protocol, Path(args.labels), Path(args.predictions))
    print(format_protocol_table(args.protocol, scores))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, scores, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
