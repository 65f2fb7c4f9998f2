"""Official scoring protocols: AVEC 2019 baseline reproduction, crop/pad, ABAW -5 exclusion, bad files."""

import json
import shutil

import numpy as np
import pytest

import evaluate
from data.formats.abaw_submission import write_predictions
from scoring.metrics import ccc, pcc, rmse
from scoring.protocols import Recording, crop_or_pad, score_abaw, score_avec
from tests.fixtures import AVEC, avec2019_missing, write_labels

needs_avec = pytest.mark.skipif(not (AVEC / "labels_devel").is_dir(), reason=avec2019_missing("labels_devel"))


@needs_avec
def test_reproduces_the_published_avec2019_baseline(tmp_path, caplog):
    out = tmp_path / "scores.json"
    assert evaluate.main(["--protocol", "avec2019", "--labels", str(AVEC / "labels_devel"),
                          "--predictions", str(AVEC / "pred_svr"), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert set(scores) == {"DE+HU", "DE", "HU"}
    both = scores["DE+HU"]
    assert round(both["arousal"]["ccc"], 3) == 0.614
    assert round(both["valence"]["ccc"], 3) == 0.615
    assert round(both["liking"]["ccc"], 3) == 0.222
    assert set(both["arousal"]) == {"ccc", "pcc", "rmse"}
    # every baseline file has 1768 rows: each one longer than its labels is cropped, with a warning naming it
    longer = [f.name for f in (AVEC / "labels_devel").glob("*.csv")
              if len(f.read_text().splitlines()) < len((AVEC / "pred_svr" / f.name).read_text().splitlines())]
    cropped = [r.message for r in caplog.records if "cropped" in r.message]
    assert len(cropped) == len(longer) > 20 and all(any(n in m for m in cropped) for n in longer)


def test_crop_and_pad():
    assert crop_or_pad(np.array([1.0, 2.0, 3.0]), 2)[0].tolist() == [1.0, 2.0]
    padded, action = crop_or_pad(np.array([[1.0, 5.0], [2.0, 6.0]]), 4)
    assert action == "padded" and padded.tolist() == [[1, 5], [2, 6], [2, 6], [2, 6]]
    assert crop_or_pad(np.array([1.0]), 1)[1] == ""


def test_avec_concatenates_per_culture_with_avec_convention(tmp_path, caplog):
    rng = np.random.default_rng(0)
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    gold, pred = {}, {}
    for stem, n, m in (("Devel_DE_01", 30, 30), ("Devel_DE_02", 20, 25), ("Devel_HU_01", 25, 18)):
        t = np.arange(n) / 10
        g = rng.uniform(-1, 1, (n, 3))
        p = np.clip(g[:min(n, m)] + rng.normal(0, 0.3, (min(n, m), 3)), -1, 1)
        if m > n:
            p = np.concatenate([p, rng.uniform(-1, 1, (m - n, 3))])
        write_labels(labels / f"{stem}.csv", t, g[:, 0], g[:, 1], g[:, 2], name=stem)
        write_labels(preds / f"{stem}.csv", np.arange(m) / 10, p[:, 0], p[:, 1], p[:, 2], name=stem)
        gold[stem] = g
        pred[stem] = crop_or_pad(p, n)[0]  # hand-aligned: cropped to 20 rows, padded from 18 to 25
    out = tmp_path / "s.json"
    assert evaluate.main(["--protocol", "avec2019", "--labels", str(labels), "--predictions", str(preds),
                          "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert any("Devel_HU_01.csv" in r.message and "padded" in r.message for r in caplog.records)
    for key, stems in (("DE+HU", list(gold)), ("DE", ["Devel_DE_01", "Devel_DE_02"]), ("HU", ["Devel_HU_01"])):
        g = np.concatenate([gold[s] for s in stems])
        p = np.concatenate([pred[s] for s in stems])
        for d, name in enumerate(("arousal", "valence", "liking")):
            assert scores[key][name]["ccc"] == pytest.approx(ccc(p[:, d], g[:, d], "avec"), abs=1e-6)
            assert scores[key][name]["pcc"] == pytest.approx(pcc(p[:, d], g[:, d], "avec"), abs=1e-6)
            assert scores[key][name]["rmse"] == pytest.approx(rmse(p[:, d], g[:, d]), abs=1e-6)


def test_avec_prediction_with_other_timestamps_is_scored_row_by_row_with_a_warning(tmp_path, caplog):
    """The official AVEC script never reads timestamps: decreasing ones change nothing but a warning."""
    rng = np.random.default_rng(1)
    labels, ordered, shuffled = tmp_path / "labels", tmp_path / "ordered", tmp_path / "shuffled"
    n, stem = 30, "Devel_DE_01"
    g, p = rng.uniform(-1, 1, (n, 3)), rng.uniform(-1, 1, (n, 3))
    t = np.arange(n) / 10
    write_labels(labels / f"{stem}.csv", t, g[:, 0], g[:, 1], g[:, 2], name=stem)
    write_labels(ordered / f"{stem}.csv", t, p[:, 0], p[:, 1], p[:, 2], name=stem)
    bad_t = t.copy()
    bad_t[7:] = bad_t[7:][::-1]            # row 8 onwards decreasing
    write_labels(shuffled / f"{stem}.csv", bad_t, p[:, 0], p[:, 1], p[:, 2], name=stem)
    reference, scored = tmp_path / "a.json", tmp_path / "b.json"
    for folder, out in ((ordered, reference), (shuffled, scored)):
        assert evaluate.main(["--protocol", "avec2019", "--labels", str(labels), "--predictions", str(folder),
                              "--json", str(out)]) == 0
    assert json.loads(scored.read_text()) == json.loads(reference.read_text())
    warned = [r.message for r in caplog.records if "differs from the label file" in r.message]
    assert len(warned) == 1 and f"{shuffled / stem}.csv: row 8: timestamp 2.9" in warned[0]


def test_abaw_excludes_invalid_frames_in_both_layouts(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    gold = {"a": np.array([[0.5, 0.2], [-5, -5], [0.1, -0.3], [0.9, 0.4]]), "b": np.array([[-0.2, 0.1], [0.3, 0.8]])}
    pred = {"a": np.array([[0.4, 0.1], [0.9, 0.9], [0.0, -0.1], [0.7, 0.5]]), "b": np.array([[-0.1, 0.2], [0.1, 0.6]])}
    for v, g in gold.items():
        (ann / f"{v}.txt").write_text("valence,arousal\n" + "".join(f"{x},{y}\n" for x, y in g))
    frames = {v: np.arange(1, len(g) + 1) for v, g in gold.items()}
    write_predictions(tmp_path / "per_video", "abaw2020", {v: (frames[v], pred[v]) for v in pred},
                      {v: len(g) for v, g in gold.items()})
    write_predictions(tmp_path / "single.csv", "abaw_later", {v: (frames[v], pred[v]) for v in pred},
                      {v: len(g) for v, g in gold.items()})
    keep = np.array([True, False, True, True, True, True])
    g = np.concatenate(list(gold.values()))[keep]
    p = np.concatenate(list(pred.values()))[keep]
    for source in ("per_video", "single.csv"):
        out = tmp_path / f"{source}.json"
        assert evaluate.main(["--protocol", "abaw", "--labels", str(ann), "--predictions", str(tmp_path / source),
                              "--json", str(out)]) == 0
        scores = json.loads(out.read_text())
        assert scores["valence"]["ccc"] == pytest.approx(ccc(p[:, 0], g[:, 0]), abs=1e-6)
        assert scores["arousal"]["ccc"] == pytest.approx(ccc(p[:, 1], g[:, 1]), abs=1e-6)
        assert scores["mean_ccc"] == pytest.approx((ccc(p[:, 0], g[:, 0]) + ccc(p[:, 1], g[:, 1])) / 2, abs=1e-6)
        assert scores["excluded_frames"] == 1


def test_score_functions_on_arrays():
    g = np.array([[0.1, 0.2, np.nan], [0.3, 0.1, np.nan], [0.5, 0.6, np.nan]])
    scores = score_avec([Recording("Devel_DE_01", "DE", g, g)])
    # the avec convention (cov 1/N, variances 1/(N-1)) scores a perfect prediction (N-1)/N, not 1
    assert set(scores) == {"DE"} and scores["DE"]["arousal"]["ccc"] == pytest.approx(2 / 3)
    assert "liking" not in scores["DE"]  # no recording has it
    with pytest.raises(ValueError, match="no frame"):
        score_abaw([Recording("v", "", np.full((2, 2), -5.0), np.zeros((2, 2)))])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@needs_avec
def test_bad_prediction_folders(tmp_path, capsys):
    preds = tmp_path / "preds"
    shutil.copytree(AVEC / "pred_svr", preds)
    for stem in ("Devel_DE_03", "Devel_HU_07"):
        (preds / f"{stem}.csv").unlink()
    args = ["--protocol", "avec2019", "--labels", str(AVEC / "labels_devel"), "--predictions", str(preds)]
    assert evaluate.main(args) == 2
    line = _error_line(capsys)
    assert "Devel_DE_03" in line and "Devel_HU_07" in line and "missing predictions for 2" in line

    shutil.copy(AVEC / "pred_svr" / "Devel_DE_03.csv", preds)
    shutil.copy(AVEC / "pred_svr" / "Devel_HU_07.csv", preds)
    bad = preds / "Devel_DE_05.csv"
    rows = bad.read_text().splitlines()
    bad.write_text("\n".join([rows[0], rows[1], rows[2].rsplit(";", 1)[0] + ";nan", *rows[3:]]) + "\n")
    assert evaluate.main(args) == 2
    line = _error_line(capsys)
    assert str(bad) in line and ":3" in line

    bad.write_text("\n".join([rows[0], rows[1].replace(";", ";abc;", 1)[:40], *rows[2:]]) + "\n")
    assert evaluate.main(args) == 2
    assert str(bad) in _error_line(capsys)

    bad.write_text("\n".join([rows[0].replace(";", "\t"), *rows[1:]]) + "\n")
    assert evaluate.main(args) == 2
    assert str(bad) in _error_line(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate.main(["--protocol", "avec2019", "--labels", str(empty), "--predictions", str(preds)]) == 2
    assert "no label files" in _error_line(capsys)
