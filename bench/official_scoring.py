"""Benchmark: official scoring of 3 million frames (target: under 2 s), side by side with a NumPy floor.

    python -m bench.official_scoring [--frames 3000000] [--recordings 500] [--files]

Rows: the ABAW protocol (validity mask, population CCC/PCC/RMSE for V and A) and the AVEC 2019 protocol
(per-culture and joint CCC/PCC/RMSE for three dimensions) on in-memory arrays split into recordings, and
as a floor one ``np.corrcoef`` per dimension on the same arrays. With ``--files`` it also times the whole
command-line path on an ABAW single prediction file of the same size written to a temporary folder
(parsing included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from scoring.protocols import Recording, crop_or_pad, score_abaw, score_avec


def _recordings(frames: int, count: int, dims: int, rng: np.random.Generator) -> list[Recording]:
    sizes = np.full(count, frames // count)
    sizes[: frames - sizes.sum()] += 1
    out = []
    for i, n in enumerate(sizes):
        gold = rng.uniform(-1, 1, (n, dims))
        pred = np.clip(np.concatenate([gold, gold[-7:]]) + rng.normal(0, 0.3, (n + 7, dims)), -1, 1)  # 7 extra rows: crop
        out.append(Recording(f"Devel_{'DE' if i % 2 else 'HU'}_{i:04d}", "DE" if i % 2 else "HU", gold, pred))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3_000_000)
    parser.add_argument("--recordings", type=int, default=500)
    parser.add_argument("--files", action="store_true", help="also time scoring from an ABAW single file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    avec = _recordings(args.frames, args.recordings, 3, rng)
    start = time.perf_counter()
    aligned = [Recording(r.name, r.group, r.gold, crop_or_pad(r.pred, len(r.gold))[0]) for r in avec]
    score_avec(aligned)
    rows.append(("avec2019 protocol (crop + 3 dims x DE/HU/DE+HU)", time.perf_counter() - start))

    abaw = _recordings(args.frames, args.recordings, 2, rng)
    for r in abaw:
        r.pred = r.pred[: len(r.gold)]
        r.gold[rng.random(len(r.gold)) < 0.02] = -5.0
    start = time.perf_counter()
    score_abaw(abaw)
    rows.append(("abaw protocol (-5 mask + V/A)", time.perf_counter() - start))

    gold = np.concatenate([r.gold for r in abaw])
    pred = np.concatenate([r.pred for r in abaw])
    start = time.perf_counter()
    for d in range(2):
        np.corrcoef(pred[:, d], gold[:, d])
    rows.append(("floor: np.corrcoef per dimension", time.perf_counter() - start))

    if args.files:
        import evaluate
        from data.formats.abaw_submission import write_predictions

        with tempfile.TemporaryDirectory() as tmp:
            ann = Path(tmp) / "ann"
            ann.mkdir()
            preds, n_frames = {}, {}
            for r in abaw:
                (ann / f"{r.name}.txt").write_text("valence,arousal\n" + "".join(f"{v:.6f},{a:.6f}\n" for v, a in r.gold))
                preds[r.name] = (np.arange(1, len(r.gold) + 1), r.pred)
                n_frames[r.name] = len(r.gold)
            write_predictions(Path(tmp) / "pred.csv", "abaw_later", preds, n_frames)
            start = time.perf_counter()
            evaluate.score_files("abaw", ann, Path(tmp) / "pred.csv")
            rows.append(("abaw from files (parse + score)", time.perf_counter() - start))

    floor = rows[2][1]
    print(f"{args.frames:,} frames in {args.recordings} recordings")
    print(f"{'path':50s}{'seconds':>9s}{'frames/s':>14s}{'vs floor':>10s}")
    for name, seconds in rows:
        print(f"{name:50s}{seconds:9.3f}{args.frames / seconds:14,.0f}{seconds / floor:9.1f}x")


if __name__ == "__main__":
    main()
