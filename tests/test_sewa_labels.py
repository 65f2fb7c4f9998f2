"""SEWA (AVEC 2019 CES) label files: the real release, the format and its errors, labels -> video frames."""

from __future__ import annotations

import numpy as np
import pytest

from data.datasets.sewa import labels_to_frames, nearest_index, read_avec_labels
from data.errors import DataError
from tests.fixtures import AVEC, HEADER, avec2019_missing, make_labels, write_labels

# -------------------------------------------------------------------------------------- real AVEC files


@pytest.mark.skipif(not (AVEC / "labels_devel").is_dir(), reason=avec2019_missing("labels_devel"))
def test_real_avec2019_devel_labels():
    files = sorted((AVEC / "labels_devel").glob("*.csv"))
    assert [f.stem for f in files] == [f"Devel_{c}_{i:02d}" for c in ("DE", "HU") for i in range(1, 15)]
    total = 0
    for f in files:
        lab = read_avec_labels(f)
        assert lab.name == f.stem                      # quoted 'Devel_DE_01' in the file, unquoted here
        assert 974 <= len(lab) <= 1768
        assert lab.times[0] == 0.0                     # the public files start at 0.0, not 0.1
        np.testing.assert_allclose(np.diff(lab.times), 0.1, atol=1e-6)
        np.testing.assert_allclose(lab.times, np.arange(len(lab)) * 0.1, atol=1e-6)
        assert lab.liking is not None
        for track in (lab.arousal, lab.valence, lab.liking):
            assert track.shape == (len(lab),) and np.abs(track).max() <= 1.0
        total += len(lab)
    assert total == 40_032
    de01 = read_avec_labels(AVEC / "labels_devel" / "Devel_DE_01.csv")
    assert len(de01) == 1742 and de01.times[-1] == pytest.approx(174.1)
    assert (de01.arousal[-1], de01.valence[-1], de01.liking[-1]) == pytest.approx((0.259259, 0.291682, 0.034397))


@pytest.mark.skipif(not (AVEC / "pred_svr").is_dir(), reason=avec2019_missing("pred_svr"))
@pytest.mark.parametrize("folder", ["pred_svr", "pred_visual_xbow"])
def test_real_avec2019_predictions_share_the_format_and_outlast_the_labels(folder):
    for gold_file in sorted((AVEC / "labels_devel").glob("*.csv")):
        gold = read_avec_labels(gold_file)
        pred = read_avec_labels(AVEC / folder / gold_file.name)
        assert pred.name == gold.name and len(pred) == 1768 >= len(gold)   # padded to the longest recording
        np.testing.assert_allclose(pred.times[:len(gold)], gold.times, atol=1e-9)


# ---------------------------------------------------------------------------------------- file format


def test_quoted_and_unquoted_names_and_both_separators(tmp_path):
    times, a, v, lk = [0.0, 0.1, 0.2], [0.1, 0.2, 0.3], [-0.1, -0.2, -0.3], [0.5, 0.4, 0.3]
    quoted = read_avec_labels(write_labels(tmp_path / "q" / "Train_DE_01.csv", times, a, v, lk))
    plain = read_avec_labels(write_labels(tmp_path / "p" / "Train_DE_01.csv", times, a, v, lk, quote=""))
    comma = read_avec_labels(write_labels(tmp_path / "c" / "Train_DE_01.csv", times, a, v, lk, sep=",", quote='"'))
    for lab in (quoted, plain, comma):
        assert lab.name == "Train_DE_01"
        np.testing.assert_allclose(lab.times, times)
        np.testing.assert_allclose(lab.arousal, a)
        np.testing.assert_allclose(lab.valence, v)
        np.testing.assert_allclose(lab.liking, lk)


def test_columns_follow_the_header_and_liking_is_optional(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("timestamp;valence;arousal\n0.0;0.25;-0.5\n0.1;0.75;0.5\n\n")
    lab = read_avec_labels(path)
    assert lab.name is None and lab.liking is None
    np.testing.assert_allclose(lab.valence, [0.25, 0.75])
    np.testing.assert_allclose(lab.arousal, [-0.5, 0.5])


@pytest.mark.parametrize("content,where,what", [
    ("", ":1:", "empty"),
    ("name;timestamp;arousal;liking\n'a';0.0;0.1;0.2\n", ":1:", "header"),          # no valence
    ("name;time_s;arousal;valence\n'a';0.0;0.1;0.2\n", ":1:", "header"),            # unknown time column
    ("'a';0.000000;0.1;0.2;0.3\n'a';0.1;0.1;0.2;0.3\n", ":1:", "header"),          # no header at all
    ("name\ttimestamp\tarousal\tvalence\n'a'\t0.0\t0.1\t0.2\n", ":1:", "separated"),  # tabs
    ("name;timestamp;arousal;arousal;valence\n'a';0;0;0;0\n", ":1:", "once"),       # duplicate column
])
def test_header_errors_name_file_and_line(tmp_path, content, where, what):
    path = tmp_path / "Devel_DE_01.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=what) as err:
        read_avec_labels(path)
    assert str(err.value).startswith(f"{path}{where}")


@pytest.mark.parametrize("row,lineno,what", [
    ("'a';0.300000;abc;0.1;0.1", 5, "arousal value 'abc' is not a number"),
    ("'a';0.300000;0.1;nan;0.1", 5, "valence value 'nan' is not a finite number"),
    ("'a';0.300000;0.1;0.1;inf", 5, "liking value 'inf' is not a finite number"),
    ("'a';0.300000;0.1;0.1", 5, "expected 5"),
    ("'a';0.100000;0.1;0.1;0.1", 5, "does not increase"),
    ("'b';0.300000;0.1;0.1;0.1", 5, "one recording per file"),
])
def test_row_errors_name_file_and_line(tmp_path, row, lineno, what):
    path = tmp_path / "Devel_DE_01.csv"
    good = [f"'a';{t:.6f};0.1;0.2;0.3" for t in (0.0, 0.1, 0.2)]
    path.write_text("\n".join([HEADER, *good, row, "'a';0.400000;0.1;0.2;0.3"]) + "\n")
    with pytest.raises(DataError, match=what) as err:
        read_avec_labels(path)
    assert str(err.value).startswith(f"{path}:{lineno}:")


def test_header_only_and_unreadable_files(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(HEADER + "\n")
    with pytest.raises(DataError, match="no label rows"):
        read_avec_labels(path)
    with pytest.raises(DataError, match="cannot read"):
        read_avec_labels(tmp_path / "absent.csv")


# ----------------------------------------------------------------------------------- labels -> frames

# six labels at 0.0 .. 0.5 s; non-linear values so that interpolation is visible
A = [0.0, 0.5, -0.5, 0.2, 0.9, -1.0]
V = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
L = [-0.1, -0.2, -0.3, -0.4, -0.5, -0.6]
T = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_nearest_at_25_fps_by_hand():
    values, valid = labels_to_frames(make_labels(T, A, V, L), n_frames=16, fps=25.0, method="nearest")
    # frames at 0, .04, .08, ..., .48 s; .52 and later are past the last label (0.5 s): invalid
    nearest = [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5]
    assert valid.tolist() == [True] * 13 + [False] * 3
    np.testing.assert_allclose(values[:13, 0], np.array(V)[nearest])   # column 0 = valence
    np.testing.assert_allclose(values[:13, 1], np.array(A)[nearest])   # column 1 = arousal
    np.testing.assert_allclose(values[:13, 2], np.array(L)[nearest])   # column 2 = liking
    assert np.isnan(values[13:]).all()


def test_linear_at_25_fps_by_hand():
    values, valid = labels_to_frames(make_labels(T, A, V, L), n_frames=5, fps=25.0, method="linear")
    # arousal at 0.04 = 0 + 0.4 * 0.5; 0.08 = 0.8 * 0.5; 0.12 = 0.5 + 0.2 * (-1.0); 0.16 = 0.5 + 0.6 * (-1.0)
    np.testing.assert_allclose(values[:, 1], [0.0, 0.2, 0.4, 0.3, -0.1], atol=1e-12)
    np.testing.assert_allclose(values[:, 0], [0.1, 0.14, 0.18, 0.22, 0.26], atol=1e-12)
    assert valid.all()


def test_50_fps_nearest_linear_and_last_label_edge():
    labels = make_labels(T, A, V, L)
    near, valid = labels_to_frames(labels, n_frames=30, fps=50.0, method="nearest")
    lin, _ = labels_to_frames(labels, n_frames=30, fps=50.0, method="linear")
    assert valid.sum() == 26 and valid[25] and not valid[26]        # frame 25 is exactly at 0.5 s
    assert near[2, 1] == 0.0 and near[3, 1] == 0.5                  # 0.04 s -> label 0.0; 0.06 s -> label 0.1
    assert lin[3, 1] == pytest.approx(0.3)                          # 0.06 s: 0.6 of the way from 0 to 0.5
    assert near[25, 1] == -1.0 and lin[25, 1] == pytest.approx(-1.0)


def test_nearest_halfway_takes_the_earlier_label():
    values, _ = labels_to_frames(make_labels(T, A, V, L), n_frames=4, fps=20.0, method="nearest")
    # 20 fps: frame 1 at 0.05 s is halfway between 0.0 and 0.1; frame 3 at 0.15 s between 0.1 and 0.2
    assert values[1, 1] == A[0] and values[3, 1] == A[1]
    assert nearest_index(np.array([0.0, 0.1]), np.array([0.05, 0.0500001])).tolist() == [0, 1]


def test_delay_moves_each_track_earlier():
    times = np.round(np.arange(0, 3.0001, 0.1), 6)
    step = (times >= 1.0).astype(float)        # an event rated at 1.0 s (annotators' clock)
    labels = make_labels(times, step, step, step)
    values, valid = labels_to_frames(labels, n_frames=75, fps=25.0, method="nearest",
                                     delay_s={"arousal": 0.4, "valence": 0.0})
    frame_times = np.arange(75) / 25.0
    onset_arousal = frame_times[np.argmax(values[:, 1] == 1.0)]
    onset_valence = frame_times[np.argmax(values[:, 0] == 1.0)]
    assert onset_valence == pytest.approx(0.96)   # nearest label to 0.96 s is the 1.0 s one (0.95 s is the midpoint)
    assert onset_arousal == pytest.approx(0.56)   # moved 0.4 s earlier: the frame at 0.56 s <- the label at 0.96 -> 1.0 s
    # frame tau takes the arousal label at tau + 0.4: valid until tau = 2.6 s (label 3.0 s), then invalid
    assert valid[:66].all() and not valid[66:].any()                 # 66 / 25 = 2.64 s
    assert np.isnan(values[66:, 1]).all() and np.isfinite(values[66:, 0]).all()  # valence itself still mapped


def test_first_label_at_0_1_covers_the_start_but_a_late_start_does_not():
    ts = [0.1, 0.2, 0.3]
    values, valid = labels_to_frames(make_labels(ts, [0.3, 0.6, 0.9], [0, 0, 0]), n_frames=5, fps=25.0)
    assert valid.tolist() == [True] * 5                         # 0, .04, .08 s take the 0.1 s label
    np.testing.assert_allclose(values[:3, 1], 0.3)
    assert np.isnan(values[:, 2]).all()                         # no liking column: NaN, and not needed for valid
    late = [0.5, 0.6, 0.7]
    _, valid = labels_to_frames(make_labels(late, [0.3, 0.6, 0.9], [0, 0, 0]), n_frames=20, fps=25.0)
    assert valid.tolist() == [False] * 13 + [True] * 5 + [False] * 2   # 0.48 s < 0.5 s; 0.72 s > 0.7 s


def test_labels_to_frames_argument_errors():
    labels = make_labels(T, A, V)
    with pytest.raises(ValueError, match="method"):
        labels_to_frames(labels, 3, 25.0, method="cubic")
    with pytest.raises(ValueError, match="fps"):
        labels_to_frames(labels, 3, 0.0)
    with pytest.raises(ValueError, match="unknown dimensions"):
        labels_to_frames(labels, 3, 25.0, delay_s={"dominance": 1.0})
