"""SEWA through the training entry point: data.dataset=sewa with data.fold=K trains and evaluates."""

import json

import pytest

import evaluate
import train
from tests.fixtures import write_recording
from tests.train_helpers import TINY


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


def test_fold_table_over_two_folds_and_official_round_trip(tmp_path, capsys):
    root = tmp_path / "sewa"
    stems = [f"Train_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)]
    for stem in stems:
        write_recording(root, stem, n_frames=20, fps=10, label_seconds=1.9)
    common = [*[o for o in TINY if not o.startswith("data.demo")], "data.dataset=sewa", f"data.root={root}",
              "data.sewa.num_folds=3", "train.max_steps=2", "train.eval_every=2", "data.sewa.delay_arousal=0.2"]
    for fold in (0, 1):
        assert train.main([*common, f"data.fold={fold}", f"run.dir={tmp_path / 'runs' / f'fold{fold}'}"]) == 0
    out = tmp_path / "folds"
    capsys.readouterr()
    checkpoints = [str(tmp_path / "runs" / f"fold{k}" / "best.pt") for k in (0, 1)]
    assert evaluate.main(["--checkpoint", *checkpoints, "--dataset", "sewa", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fold |" in printed and "| mean |" in printed and "| std |" in printed
    rows = json.loads((out / "folds.json").read_text())["folds"]
    assert [r["fold"] for r in rows] == ["fold0", "fold1", "mean", "std"]
    import numpy as np

    for key in ("valence_ccc", "arousal_rmse"):
        values = [rows[0][key], rows[1][key]]
        assert rows[2][key] == pytest.approx(np.mean(values)) and rows[3][key] == pytest.approx(np.std(values, ddof=1))
    assert (out / "folds.csv").read_text().splitlines()[0].startswith("fold,valence_ccc,valence_pcc")
    assert (out / "folds.md").is_file()
    for fold in (0, 1):
        metrics = json.loads((out / f"fold{fold}" / "metrics.json").read_text())
        assert metrics["protocol"] == "avec2019" and metrics["fold"] == fold and metrics["split"] == "test"
        official = sorted(p.stem for p in (out / f"fold{fold}" / "official").glob("*.csv"))
        manifest = json.loads((root / "folds_seed0.json").read_text())
        assert official == sorted(manifest["folds"][fold])    # each checkpoint scored on its own test fold
        rescored = tmp_path / f"rescored{fold}.json"
        # the official scorer over the whole labels folder would ask for every recording: score this fold's
        labels = tmp_path / f"labels{fold}"
        labels.mkdir()
        for stem in official:
            (labels / f"{stem}.csv").write_bytes((root / "labels" / f"{stem}.csv").read_bytes())
        assert evaluate.main(["--protocol", "avec2019", "--labels", str(labels), "--predictions",
                              str(out / f"fold{fold}" / "official"), "--json", str(rescored)]) == 0
        again = json.loads(rescored.read_text())
        joined = next(iter(again))
        for dim in ("valence", "arousal"):
            assert again[joined][dim] == pytest.approx(metrics[dim], abs=1e-9)
        assert "liking" not in again[joined]  # ALN predicts no liking: not scored, not invented


def test_postprocess_flag_reports_before_and_after(tmp_path):
    root = tmp_path / "sewa"
    for stem in [f"Train_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)]:
        write_recording(root, stem, n_frames=30, fps=10, label_seconds=2.9)
    common = [*[o for o in TINY if not o.startswith("data.demo")], "data.dataset=sewa", f"data.root={root}",
              "data.sewa.num_folds=3", "train.max_steps=2", "train.eval_every=2"]
    run = tmp_path / "run"
    assert train.main([*common, f"run.dir={run}"]) == 0
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--postprocess", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    post = metrics["postprocess"]
    assert set(post) == {"chain", "before", "after"} and set(post["chain"]["dimensions"]) == {"arousal", "valence"}
    assert post["after"]["valence"] == metrics["valence"]
    assert metrics["optimistic"] is None   # folds protocol: best.pt chosen on fold K+1, scored on fold K


def test_avec_protocol_scores_on_the_selection_split_are_flagged_optimistic(tmp_path, capsys):
    root = tmp_path / "sewa"
    for stem in ["Train_DE_01", "Train_DE_02", "Devel_DE_01", "Devel_DE_02"]:
        write_recording(root, stem, n_frames=30, fps=10, label_seconds=2.9)
    common = [*[o for o in TINY if not o.startswith("data.demo")], "data.dataset=sewa", f"data.root={root}",
              "data.sewa.protocol=avec", "train.max_steps=2", "train.eval_every=2"]
    run = tmp_path / "run"
    assert train.main([*common, f"run.dir={run}"]) == 0
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "eval")]) == 0
    assert "NOTE: optimistic scores" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["optimistic"].endswith("holds 2 of the 2 scored recordings")


def test_checkpoints_of_different_variants_are_refused(tmp_path, capsys):
    from tests.train_helpers import TINY as tiny

    root = tmp_path / "demo"
    runs = []
    for variant in ("aeg_cd", "disc"):
        run = tmp_path / variant
        assert train.main([*tiny, f"data.root={root}", f"run.dir={run}", f"model.variant={variant}",
                           "train.max_steps=1", "train.eval_every=1"]) == 0
        runs.append(str(run / "last.pt"))
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", *runs]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "share variant and image size" in err and "disc" in err
