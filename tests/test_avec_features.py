"""AVEC 2018/2019 feature CSVs: header / no header, both separators, quoted names, errors, alignment to labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.datasets.avec_features import FeatureSequence, align_to_labels, read_feature_file
from data.datasets.sewa import read_avec_labels
from data.errors import DataError
from tests.fixtures import AVEC, avec2019_missing

VALUES = np.array([[1.5, -2.0], [2.5, 0.0], [3.5, 2.0], [4.5, 4.0]])
TIMES = [0.0, 0.1, 0.2, 0.3]


def write_features(path: Path, sep=";", header: str | None = "name;frameTime;F0_mean;loudness", quote="'",
                   name="Train_DE_01", rows=None) -> Path:
    lines = [] if header is None else [header.replace(";", sep)]
    for t, row in zip(TIMES, VALUES, strict=True) if rows is None else rows:
        lines.append(sep.join([f"{quote}{name}{quote}", f"{t:.6f}", *(f"{v:.6f}" for v in row)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sep,quote", [(";", "'"), (",", ""), (",", '"'), (";", "")])
def test_header_separators_and_quoted_names(tmp_path, sep, quote):
    seq = read_feature_file(write_features(tmp_path / "f.csv", sep=sep, quote=quote))
    assert seq.name == "Train_DE_01" and seq.columns == ["F0_mean", "loudness"] and seq.dim == 2
    np.testing.assert_allclose(seq.times, TIMES)
    assert seq.values.dtype == np.float32 and seq.values.shape == (4, 2)
    np.testing.assert_allclose(seq.values, VALUES)


@pytest.mark.parametrize("sep", [";", ","])
def test_no_header_name_then_time(tmp_path, sep):
    seq = read_feature_file(write_features(tmp_path / "f.csv", sep=sep, header=None))
    assert seq.name == "Train_DE_01" and seq.columns == ["f0", "f1"] and len(seq) == 4
    np.testing.assert_allclose(seq.values, VALUES)


def test_timestamp_header_and_header_without_name(tmp_path):
    seq = read_feature_file(write_features(tmp_path / "a.csv", header="name;timestamp;x;y"))
    assert seq.columns == ["x", "y"]
    path = tmp_path / "b.csv"
    path.write_text("frameTime,x\n0.0,1\n0.5,2\n")
    seq = read_feature_file(path)
    assert seq.name is None and seq.columns == ["x"]
    np.testing.assert_allclose(seq.times, [0.0, 0.5])
    np.testing.assert_allclose(seq.values[:, 0], [1, 2])


@pytest.mark.parametrize("content,lineno,what", [
    ("name;frameTime;a\n'x';0.0;1\n'x';0.1;nan\n", 3, "a value 'nan' is not a finite number"),
    ("name;frameTime;a;b\n'x';0.0;1;2\n'x';0.1;1;two\n", 3, "b value 'two' is not a number"),
    ("'x';0.0;1;2\n'x';0.1;1;?\n", 2, "column 4 value '\\?' is not a number"),
    ("name;frameTime;a\n'x';0.0;1\n'x';0.1;1;5\n", 3, "expected 3"),
    ("name;frameTime;a\n'x';0.0;1\n'x';0.0;1\n", 3, "does not increase"),
    ("name;frameTime;a\n'x';0.0;1\n'y';0.1;1\n", 3, "one recording per file"),
    ("name;seconds;a\n'x';0.0;1\n", 1, "header must start"),
    ("name;frameTime\n'x';0.0\n", 1, "no feature columns"),
    ("1.0;0.0;1\n", 1, "should be the recording name"),
    ("x y z\n", 1, "separated"),
])
def test_errors_name_file_and_line(tmp_path, content, lineno, what):
    path = tmp_path / "feat.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=what) as err:
        read_feature_file(path)
    assert str(err.value).startswith(f"{path}:{lineno}:")


def test_empty_and_header_only_files(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("\n\n")
    with pytest.raises(DataError, match="empty feature file"):
        read_feature_file(path)
    path.write_text("name;frameTime;a\n")
    with pytest.raises(DataError, match="no feature rows"):
        read_feature_file(path)


def _seq(times, values):
    return FeatureSequence(name="x", times=np.asarray(times, float), values=np.asarray(values, np.float32),
                           columns=[f"f{i}" for i in range(np.shape(values)[1])], path=Path("feat.csv"))


def test_align_nearest_and_linear_by_hand():
    seq = _seq([0.0, 0.04, 0.08, 0.12], [[0.0, 10.0], [1.0, 20.0], [3.0, 40.0], [4.0, 80.0]])
    labels = np.array([0.0, 0.05, 0.1, 0.06])
    near = align_to_labels(seq, labels, "nearest")
    assert near.dtype == np.float32 and near.shape == (4, 2)
    np.testing.assert_allclose(near[:, 0], [0.0, 1.0, 3.0, 1.0])     # 0.06 is halfway: the earlier row
    lin = align_to_labels(seq, labels, "linear")
    np.testing.assert_allclose(lin[:, 0], [0.0, 1.5, 3.5, 2.0], atol=1e-6)
    np.testing.assert_allclose(lin[:, 1], [10.0, 25.0, 60.0, 30.0], atol=1e-5)


def test_align_repeats_edges_unless_the_gap_is_too_large():
    seq = _seq([0.1, 0.2, 0.3], [[1.0], [2.0], [3.0]])
    for method in ("nearest", "linear"):
        out = align_to_labels(seq, np.array([0.0, 0.1, 0.3, 0.4, 0.5]), method)
        np.testing.assert_allclose(out[:, 0], [1.0, 1.0, 3.0, 3.0, 3.0])
    assert align_to_labels(seq, np.array([0.0, 0.4]), max_gap_s=0.1).shape == (2, 1)
    with pytest.raises(DataError, match=r"feat.csv: label time 0.500 s is 0.200 s"):
        align_to_labels(seq, np.array([0.0, 0.5]), max_gap_s=0.1)
    with pytest.raises(ValueError, match="method"):
        align_to_labels(seq, np.array([0.0]), "cubic")
    single = _seq([0.0], [[7.0, 8.0]])
    np.testing.assert_allclose(align_to_labels(single, np.array([0.0, 1.0]), "linear"), [[7, 8], [7, 8]])


@pytest.mark.skipif(not (AVEC / "pred_svr").is_dir(), reason=avec2019_missing("pred_svr"))
def test_real_avec_prediction_file_reads_as_features_and_aligns_to_its_labels():
    seq = read_feature_file(AVEC / "pred_svr" / "Devel_HU_03.csv")
    gold = read_avec_labels(AVEC / "labels_devel" / "Devel_HU_03.csv")
    assert seq.name == "Devel_HU_03" and seq.columns == ["arousal", "valence", "liking"]
    assert len(seq) > len(gold)
    aligned = align_to_labels(seq, gold.times, max_gap_s=1e-6)
    assert aligned.shape == (len(gold), 3)
    np.testing.assert_allclose(aligned, seq.values[:len(gold)])
