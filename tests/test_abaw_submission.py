"""ABAW prediction files in both layouts: every frame present, gaps filled from the nearest prediction."""

import numpy as np
import pytest

from data.datasets.affwild2 import read_va_annotation
from data.errors import DataError
from data.formats.abaw_submission import fill_all_frames, read_single_file, write_predictions


def test_fill_takes_nearest_predicted_frame():
    frames = np.array([5, 2, 9])
    values = np.array([[0.5, 0.0], [0.2, 0.1], [0.9, -0.9]])
    filled = fill_all_frames(frames, values, 11)
    # frames 1..11: 1,2,3 <- 2; 4 <- tie between 2 and 5? |4-2|=2 > |5-4|=1 -> 5; 6,7 <- 5 (7 ties 5/9 -> earlier);
    # 8..11 <- 9
    expected_from = [2, 2, 2, 5, 5, 5, 5, 9, 9, 9, 9]
    lookup = {2: values[1], 5: values[0], 9: values[2]}
    assert np.allclose(filled, np.array([lookup[k] for k in expected_from]))


def test_both_formats_round_trip(tmp_path):
    preds = {"vid_a": (np.array([1, 2, 4]), np.array([[0.1, 0.2], [0.3, 0.4], [-0.5, -0.6]])),
             "10-60-1280x720_left": (np.array([2]), np.array([[0.7, -0.1]]))}
    n_frames = {"vid_a": 4, "10-60-1280x720_left": 3}
    files = write_predictions(tmp_path / "sub2020", "abaw2020", preds, n_frames)
    assert sorted(f.name for f in files) == ["10-60-1280x720_left.txt", "vid_a.txt"]
    a = read_va_annotation(tmp_path / "sub2020" / "vid_a.txt")  # readable as an annotation file
    assert np.allclose(a, [[0.1, 0.2], [0.3, 0.4], [0.3, 0.4], [-0.5, -0.6]])
    single = tmp_path / "later" / "predictions.csv"
    write_predictions(single, "abaw_later", preds, n_frames)
    lines = single.read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal"
    assert lines[1] == "10-60-1280x720_left/00001.jpg,0.700000,-0.100000"
    assert len(lines) == 1 + 4 + 3
    back = read_single_file(single)
    assert np.allclose(back["vid_a"], a) and back["10-60-1280x720_left"].shape == (3, 2)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="no prediction for 1 video"):
        write_predictions(tmp_path / "x", "abaw2020", {}, {"v": 3})
    bad = tmp_path / "bad.csv"
    bad.write_text("image,valence,arousal\n")
    with pytest.raises(DataError, match="expected header"):
        read_single_file(bad)
    bad.write_text("image_location,valence,arousal\nv/00001.jpg,0.1\n")
    with pytest.raises(DataError, match=":2: expected"):
        read_single_file(bad)
