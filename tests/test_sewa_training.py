"""SEWA through the training entry point: data.dataset=sewa with data.fold=K trains and evaluates."""

import json

import evaluate
import train
from tests.test_end_to_end import TINY
from tests.test_sewa import write_recording


def test_sewa_fold_trains_and_evaluates_on_its_test_fold(tmp_path):
    root = tmp_path / "sewa"
    stems = [f"Train_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)]
    for stem in stems:
        write_recording(root, stem, n_frames=20, fps=10, label_seconds=1.9)
    common = [*[o for o in TINY if not o.startswith("data.demo")], "data.dataset=sewa", f"data.root={root}",
              "data.sewa.num_folds=3", "data.fold=1", "train.max_steps=2", "train.eval_every=2"]
    run = tmp_path / "run"
    assert train.main([*common, f"run.dir={run}"]) == 0
    manifest = json.loads((root / "folds_seed0.json").read_text())
    assert sorted(r for fold in manifest["folds"] for r in fold) == sorted(stems)
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--split", "test", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == len(manifest["folds"][1]) and metrics["frames"] == 20 * metrics["videos"]
    lines = (out / "predictions.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in lines} == set(manifest["folds"][1])  # the test fold, nothing else
