"""SEWA (AVEC 2019 CES layout): label files, label -> frame mapping, indexing, folds and protocols."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data.datasets.affwild2 import valid_label_mask
from data.datasets.meta import VideoMeta, write_meta
from data.datasets.sewa import (
    AvecLabels,
    SewaConfig,
    check_manifest,
    index_sewa,
    labelled_recordings,
    labels_to_frames,
    make_fold_manifest,
    manifest_path,
    nearest_index,
    parse_stem,
    read_avec_labels,
    read_fold_manifest,
    split_recordings,
    write_fold_manifest,
)
from data.errors import DataError
from data.samples.dataset import AffectFrameDataset
from tests.fixtures import write_face

AVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "avec2019"  # ../shared beside the checkout
HEADER = "name;timestamp;arousal;valence;liking"


# ------------------------------------------------------------------------------------------- fixtures


def write_labels(path: Path, times, arousal, valence, liking=None, name: str | None = None, sep: str = ";",
                 quote: str = "'", header: str | None = None) -> Path:
    """A label file as the AVEC 2019 release writes it: ``'Devel_DE_01';0.100000;...`` rows."""
    name = name if name is not None else path.stem
    cols = ["name", "timestamp", "arousal", "valence"] + ([] if liking is None else ["liking"])
    lines = [header if header is not None else sep.join(cols)]
    for i, t in enumerate(times):
        row = [f"{quote}{name}{quote}", f"{t:.6f}", f"{arousal[i]:.6f}", f"{valence[i]:.6f}"]
        if liking is not None:
            row.append(f"{liking[i]:.6f}")
        lines.append(sep.join(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_labels(times, arousal, valence, liking=None) -> AvecLabels:
    return AvecLabels(path=Path("mem.csv"), name="mem", times=np.asarray(times, float),
                      arousal=np.asarray(arousal, float), valence=np.asarray(valence, float),
                      liking=None if liking is None else np.asarray(liking, float))


def write_recording(root: Path, stem: str, n_frames: int, fps: float | None, label_seconds: float,
                    missing=(), meta: bool = True, audio: bool = False, crops: bool = True) -> np.ndarray:
    """Labels at 10 Hz from 0.0 to ``label_seconds``, crops for frames 1..n_frames except ``missing``, meta json."""
    times = np.round(np.arange(0.0, label_seconds + 1e-9, 0.1), 6)
    a = np.sin(times)
    v = np.cos(times) * 0.5
    lk = times / (times.max() + 1) - 0.5
    write_labels(root / "labels" / f"{stem}.csv", times, a, v, lk)
    if crops:
        for k in range(1, n_frames + 1):
            if k not in missing:
                write_face(root / "cropped_aligned" / stem / f"{k:05d}.jpg", (k * 37) % 200, size=12)
    if meta:
        write_meta(root, VideoMeta(video=stem, fps=float(fps), frames=n_frames, faces=n_frames - len(missing),
                                   complete=True))
    if audio:
        (root / "audio").mkdir(exist_ok=True)
        (root / "audio" / f"{stem}.wav").write_bytes(b"")
    return times


def write_label_tree(root: Path, stems) -> Path:
    """Only label files (enough for split_recordings)."""
    for stem in stems:
        write_labels(root / "labels" / f"{stem}.csv", [0.0, 0.1, 0.2], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0])
    return root


AVEC_STEMS = ([f"Train_DE_{i:02d}" for i in range(1, 7)] + [f"Train_HU_{i:02d}" for i in range(1, 5)]
              + [f"Devel_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)])


# -------------------------------------------------------------------------------------- real AVEC files


@pytest.mark.skipif(not (AVEC / "labels_devel").is_dir(), reason="AVEC 2019 devel labels not available")
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


@pytest.mark.skipif(not (AVEC / "pred_svr").is_dir(), reason="AVEC 2019 baseline predictions not available")
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


# ------------------------------------------------------------------------------------------ index_sewa


def test_index_sewa_maps_labels_crops_meta_and_audio(tmp_path):
    root = tmp_path
    # video of 20 frames at 25 fps (0.8 s) with labels to 0.5 s (shorter than the video): frames 14..20 unlabelled
    times = write_recording(root, "Train_DE_01", n_frames=20, fps=25.0, label_seconds=0.5, missing=[2, 5],
                            audio=True)
    # labels to 2.0 s but a video of 10 frames (labels longer than the video: the rest is ignored)
    write_recording(root, "Train_HU_01", n_frames=10, fps=25.0, label_seconds=2.0)
    records, report = index_sewa(root, ["Train_DE_01", "Train_HU_01"], "train", SewaConfig())
    de, hu = records
    assert (de.name, de.split, de.fps, de.n_frames) == ("Train_DE_01", "train", 25.0, 20)
    assert de.annotation == root / "labels" / "Train_DE_01.csv"
    assert de.image_dir == root / "cropped_aligned" / "Train_DE_01"
    assert de.audio == root / "audio" / "Train_DE_01.wav" and hu.audio is None
    assert de.labels.dtype == np.float32 and de.labels.shape == (20, 2)
    assert de.frames.tolist() == [1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]   # label valid and crop present
    assert (de.labels[13:] == -5).all() and (de.liking[13:] == -5).all()
    assert valid_label_mask(de.labels).tolist() == [True] * 13 + [False] * 7
    # nearest mapping by hand: frame k (1-based) at (k-1)/25 s
    idx = [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5]
    np.testing.assert_allclose(de.labels[:13, 0], 0.5 * np.cos(times[idx]), atol=1e-6)   # valence column
    np.testing.assert_allclose(de.labels[:13, 1], np.sin(times[idx]), atol=1e-6)         # arousal column
    assert de.liking.shape == (20,) and de.liking.dtype == np.float32
    assert hu.n_frames == 10 and hu.frames.tolist() == list(range(1, 11))
    assert (report.videos, report.usable_frames, report.valid_labels, report.invalid_labels,
            report.labelled_without_image) == (2, 21, 23, 7, 2)
    assert report.audio_missing == 1

    ds = AffectFrameDataset(records, 16, audio={})
    assert len(ds) == 21
    sample = ds[2]
    assert (sample["video"], sample["frame"]) == ("Train_DE_01", 4)
    assert torch.allclose(sample["va"], torch.from_numpy(de.labels[3]))
    assert (ds.labels >= -1).all() and (ds.labels <= 1).all()


def test_index_sewa_linear_and_delays_from_config(tmp_path):
    write_recording(tmp_path, "Devel_DE_01", n_frames=25, fps=25.0, label_seconds=1.0)
    cfg = SewaConfig(interpolation="linear", delay_arousal=0.2, delay_valence=0.0, delay_liking=0.0)
    (rec,), report = index_sewa(tmp_path, ["Devel_DE_01"], "val", cfg)
    t = np.arange(25) / 25.0
    usable = t + 0.2 <= 1.0 + 1e-9                                  # arousal delay shortens the labelled span
    assert rec.frames.tolist() == (np.flatnonzero(usable) + 1).tolist()
    labels_t = np.arange(11) * 0.1
    expect_a = np.interp(t[usable] + 0.2, labels_t, np.sin(np.round(labels_t, 6)))
    np.testing.assert_allclose(rec.labels[usable, 1], expect_a, atol=1e-6)
    assert report.invalid_labels == int((~usable).sum())


def test_index_sewa_without_meta_uses_last_crop_and_default_fps(tmp_path, caplog):
    write_recording(tmp_path, "Train_DE_02", n_frames=12, fps=None, label_seconds=2.0, missing=[12], meta=False)
    with caplog.at_level(logging.WARNING, logger="data.datasets.sewa"):
        (rec,), _ = index_sewa(tmp_path, ["Train_DE_02"], "train", SewaConfig(default_fps=10.0))
    assert rec.fps == 10.0 and rec.n_frames == 11                   # frame 12 had no face: not countable
    assert "no video metadata" in caplog.text
    np.testing.assert_allclose(rec.labels[:, 1], np.sin(np.round(np.arange(11) * 0.1, 6)), atol=1e-6)


def test_index_sewa_errors(tmp_path):
    write_recording(tmp_path, "Train_DE_01", n_frames=5, fps=25.0, label_seconds=0.5)
    with pytest.raises(DataError, match="label file of recording 'Train_DE_09' is missing"):
        index_sewa(tmp_path, ["Train_DE_01", "Train_DE_09"], "train", SewaConfig())
    write_recording(tmp_path, "Train_DE_03", n_frames=5, fps=None, label_seconds=0.5, meta=False, crops=False)
    with pytest.raises(DataError, match="no video metadata and no crops") as err:
        index_sewa(tmp_path, ["Train_DE_03"], "train", SewaConfig())
    assert "meta/Train_DE_03.json" in str(err.value)
    write_labels(tmp_path / "labels" / "Train_DE_04.csv", [0.0, 0.1], [0, 0], [0, 0], name="Train_DE_05")
    write_meta(tmp_path, VideoMeta(video="Train_DE_04", fps=25.0, frames=3))
    with pytest.raises(DataError, match="rows name recording 'Train_DE_05', expected 'Train_DE_04'"):
        index_sewa(tmp_path, ["Train_DE_04"], "train", SewaConfig())
    with pytest.raises(DataError, match="listed twice"):
        index_sewa(tmp_path, ["Train_DE_01", "Train_DE_01"], "train", SewaConfig())
    with pytest.raises(DataError, match="does not exist"):
        index_sewa(tmp_path / "nope", ["Train_DE_01"], "train", SewaConfig())


def test_recording_without_crop_folder_is_skipped_and_counted(tmp_path):
    write_recording(tmp_path, "Train_DE_01", n_frames=5, fps=25.0, label_seconds=0.5)
    write_recording(tmp_path, "Train_DE_02", n_frames=5, fps=25.0, label_seconds=0.5, crops=False)
    records, report = index_sewa(tmp_path, ["Train_DE_01", "Train_DE_02"], "train", SewaConfig())
    assert [r.name for r in records] == ["Train_DE_01"]
    assert report.videos_without_images == 1 and report.labelled_without_image == 5


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs,key", [
    ({"interpolation": "cubic"}, "sewa.interpolation"),
    ({"delay_arousal": -1.0}, "sewa.delay_arousal"),
    ({"delay_valence": float("nan")}, "sewa.delay_valence"),
    ({"protocol": "loso"}, "sewa.protocol"),
    ({"num_folds": 2}, "sewa.num_folds"),
    ({"fold_seed": -1}, "sewa.fold_seed"),
    ({"label_rate_hz": 0.0}, "sewa.label_rate_hz"),
    ({"default_fps": float("inf")}, "sewa.default_fps"),
])
def test_config_validation_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SewaConfig(**kwargs).validate()
    SewaConfig().validate()


def test_parse_stem_and_labelled_recordings(tmp_path, caplog):
    assert parse_stem("Devel_HU_07") == ("Devel", "HU", 7)
    assert parse_stem("Test_CN_70") == ("Test", "CN", 70)
    assert parse_stem("Devel_FR_01") is None and parse_stem("notes") is None
    write_label_tree(tmp_path, ["Train_DE_02", "Devel_HU_01"])
    (tmp_path / "labels" / "readme.csv").write_text("x")
    with caplog.at_level(logging.WARNING, logger="data.datasets.sewa"):
        assert labelled_recordings(tmp_path) == ["Devel_HU_01", "Train_DE_02"]
    assert "readme" in caplog.text
    with pytest.raises(DataError, match="label folder is missing"):
        labelled_recordings(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------- folds


RECS = [f"Train_DE_{i:02d}" for i in range(1, 18)]


def test_manifest_is_deterministic_balanced_and_complete():
    a = make_fold_manifest(RECS, None, 5, seed=0)
    assert a == make_fold_manifest(list(reversed(RECS)), None, 5, seed=0)   # input order does not matter
    assert a["folds"] != make_fold_manifest(RECS, None, 5, seed=1)["folds"]
    assert (a["seed"], a["num_folds"]) == (0, 5)
    assert a["subjects"] == {r: r for r in RECS}
    flat = [r for f in a["folds"] for r in f]
    assert sorted(flat) == RECS and len(flat) == len(set(flat))           # each recording in exactly one fold
    assert sorted(len(f) for f in a["folds"]) == [3, 3, 3, 4, 4]
    check_manifest(a, RECS, num_folds=5)


def test_manifest_with_subjects_is_subject_disjoint():
    subjects = {r: f"s{i // 3}" for i, r in enumerate(RECS)}   # 6 subjects with 3, 3, 3, 3, 3, 2 recordings
    m = make_fold_manifest(RECS, subjects, 3, seed=7)
    fold_of_subject = {}
    for i, fold in enumerate(m["folds"]):
        for rec in fold:
            assert fold_of_subject.setdefault(subjects[rec], i) == i
    assert sorted(len(f) for f in m["folds"]) == [5, 6, 6]
    check_manifest(m, RECS, subjects=subjects)
    with pytest.raises(DataError, match="subjects cannot fill"):
        make_fold_manifest(RECS, subjects, 7, seed=0)


def test_manifest_write_read_roundtrip(tmp_path):
    m = make_fold_manifest(RECS, None, 5, seed=3)
    path = write_fold_manifest(tmp_path / "sub" / "folds.json", m)
    assert read_fold_manifest(path) == m
    assert json.loads(path.read_text())["folds"] == m["folds"]
    assert not [p for p in path.parent.iterdir() if p.name != "folds.json"]   # no temp file left behind
    path.write_text('{"seed": 0, "folds": "x"}')
    with pytest.raises(DataError, match="not a fold manifest"):
        read_fold_manifest(path)
    path.write_text("{")
    with pytest.raises(DataError, match="unreadable fold manifest"):
        read_fold_manifest(path)


def _edited(manifest, edit):
    m = json.loads(json.dumps(manifest))
    edit(m)
    return m


@pytest.mark.parametrize("edit,recordings,what", [
    (lambda m: m["folds"][0].pop(), RECS, "in no fold"),
    (lambda m: m["folds"][0].append("Devel_HU_01"), RECS, "have no label file"),
    (lambda m: m["folds"][1].append(m["folds"][0][0]), RECS, "is in folds 0 and 1"),
    (lambda m: m.update(num_folds=4), RECS, "num_folds is 4 but 5 folds"),
    (lambda m: m["subjects"].update({m["folds"][0][0]: "p", m["folds"][1][0]: "p"}), RECS, "split across folds"),
    (lambda m: m["subjects"].pop(m["folds"][2][0]), RECS, "has no subject"),
])
def test_check_manifest_mismatches_name_the_manifest(edit, recordings, what):
    bad = _edited(make_fold_manifest(RECS, None, 5, seed=0), edit)
    with pytest.raises(DataError, match=what) as err:
        check_manifest(bad, recordings, source="/x/folds_seed0.json")
    assert str(err.value).startswith("/x/folds_seed0.json: ")


def test_check_manifest_fold_count_and_subjects_against_config():
    m = make_fold_manifest(RECS, None, 5, seed=0)
    with pytest.raises(DataError, match="sewa.num_folds=3"):
        check_manifest(m, RECS, num_folds=3, source="m.json")
    other = {r: "s" + r[-1] for r in RECS}
    with pytest.raises(DataError, match="configured subjects"):
        check_manifest(m, RECS, subjects=other, source="m.json")


# ---------------------------------------------------------------------------------------- split_recordings


def test_folds_protocol_creates_then_rereads_the_manifest(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    (root / "audio").mkdir()
    (root / "audio" / "Test_DE_01.wav").write_bytes(b"")   # a test recording: no public labels, so no fold
    cfg = SewaConfig(protocol="folds", num_folds=4, fold_seed=5)
    test = split_recordings(root, cfg, "test", fold=1)
    path = root / "folds_seed5.json"
    assert manifest_path(root, cfg) == path and path.is_file()
    manifest = read_fold_manifest(path)
    assert test == sorted(manifest["folds"][1])
    assert split_recordings(root, cfg, "val", fold=1) == sorted(manifest["folds"][2])
    train = split_recordings(root, cfg, "train", fold=1)
    assert sorted(train + test + split_recordings(root, cfg, "val", fold=1)) == sorted(AVEC_STEMS)

    tests = []
    for k in range(4):
        parts = {s: split_recordings(root, SewaConfig(num_folds=4, fold_seed=5), s, fold=k) for s in
                 ("train", "val", "test")}
        assert not set(parts["train"]) & set(parts["test"]) and not set(parts["val"]) & set(parts["test"])
        assert not set(parts["train"]) & set(parts["val"])
        tests += parts["test"]
    assert sorted(tests) == sorted(AVEC_STEMS)               # every recording is tested exactly once

    # the manifest is authoritative: an edited (still consistent) manifest is used, not regenerated
    edited = _edited(manifest, lambda m: (m["folds"][1].append(m["folds"][0].pop())))
    write_fold_manifest(path, edited)
    assert split_recordings(root, cfg, "test", fold=1) == sorted(edited["folds"][1])

    # data changed since the manifest was drawn: an error naming the manifest, never silent new folds
    write_label_tree(root, ["Devel_DE_09"])
    with pytest.raises(DataError, match="in no fold") as err:
        split_recordings(root, cfg, "train")
    assert str(err.value).startswith(str(path))
    assert read_fold_manifest(path) == edited


def test_folds_protocol_config_mismatches(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    explicit = tmp_path / "m" / "folds.json"
    split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=1), "test")
    assert explicit.is_file() and not (root / "folds_seed1.json").exists()
    with pytest.raises(DataError, match="seed 1 but sewa.fold_seed=2"):
        split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=2), "test")
    with pytest.raises(DataError, match="sewa.num_folds=4"):
        split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=1, num_folds=4), "test")


def test_folds_protocol_with_subjects_file(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    subjects = {s: f"p{i // 2}" for i, s in enumerate(AVEC_STEMS)}     # two recordings per person
    subjects_file = tmp_path / "subjects.csv"
    subjects_file.write_text("recording,subject\n" + "".join(f"{r},{s}\n" for r, s in subjects.items()))
    cfg = SewaConfig(subjects_file=str(subjects_file), num_folds=4)
    splits = {s: split_recordings(root, cfg, s) for s in ("train", "val", "test")}
    people = {s: {subjects[r] for r in recs} for s, recs in splits.items()}
    assert not people["train"] & people["test"] and not people["val"] & people["test"]
    assert not people["train"] & people["val"]
    # the same manifest read without the subjects file: its subjects no longer match the configuration
    with pytest.raises(DataError, match="configured subjects"):
        split_recordings(root, SewaConfig(num_folds=4), "test")
    subjects_file.write_text("recording,subject\nTrain_DE_01,p0\n")
    with pytest.raises(DataError, match="no subject for"):
        split_recordings(root, cfg, "test")
    subjects_file.write_text("rec;subj\n")
    with pytest.raises(DataError, match=":1: expected the header"):
        split_recordings(root, cfg, "test")


def test_avec_and_cross_cultural_protocols(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    avec = SewaConfig(protocol="avec")
    train_de = [s for s in AVEC_STEMS if s.startswith("Train_DE")]
    train_hu = [s for s in AVEC_STEMS if s.startswith("Train_HU")]
    devel = sorted(s for s in AVEC_STEMS if s.startswith("Devel"))
    assert split_recordings(root, avec, "train") == sorted(train_de + train_hu)
    assert split_recordings(root, avec, "val") == devel
    assert split_recordings(root, avec, "test") == devel          # AVEC test labels are not public
    cc = SewaConfig(protocol="cross_cultural")
    assert split_recordings(root, cc, "train") == train_de
    assert split_recordings(root, cc, "val") == ["Devel_DE_01", "Devel_DE_02", "Devel_DE_03"]
    assert split_recordings(root, cc, "test") == sorted(["Devel_HU_01", "Devel_HU_02", "Devel_HU_03"] + train_hu)
    assert not list(root.glob("folds_seed*.json"))                # only the folds protocol writes a manifest
    with pytest.raises(ValueError, match="split"):
        split_recordings(root, avec, "dev")
    only_de = write_label_tree(tmp_path / "de", ["Train_DE_01", "Devel_DE_01"])
    with pytest.raises(DataError, match="no labelled recordings for split 'test'"):
        split_recordings(only_de, cc, "test")


def test_official_rows_take_the_frame_at_label_time_minus_delay(tmp_path):
    """A label at time t describes the frame at t - delay: the AVEC row at t carries that frame's prediction."""
    from data.formats.official_outputs import sewa_tracks

    write_recording(tmp_path, "Train_DE_01", n_frames=30, fps=10, label_seconds=2.9)
    cfg = SewaConfig(delay_arousal=0.5, delay_valence=0.0)
    (record,), _ = index_sewa(tmp_path, ["Train_DE_01"], "train", cfg)
    frames = np.arange(1, 31)
    values = np.stack([frames * 0.01, frames * -0.01], axis=1)       # valence = frame/100, arousal = -frame/100
    (track,) = sewa_tracks([record], {"Train_DE_01": (frames, values)}, cfg)
    assert track.dims == ("arousal", "valence")
    t = track.times
    row = int(np.argmin(np.abs(t - 2.0)))                               # label time 2.0 s
    assert track.pred[row, 1] == pytest.approx(0.21)                    # valence: frame at 2.0 s = frame 21
    assert track.pred[row, 0] == pytest.approx(-0.16)                   # arousal: frame at 1.5 s = frame 16
    assert track.pred[0, 0] == pytest.approx(-0.01)                     # before the video start: first frame
