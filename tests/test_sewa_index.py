"""SEWA indexing: labels, crops, metadata and audio of a root become VideoRecords; config validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from data.datasets.affwild2 import valid_label_mask
from data.datasets.meta import VideoMeta, write_meta
from data.datasets.sewa import SewaConfig, index_sewa, labelled_recordings, parse_stem
from data.errors import DataError
from data.samples.dataset import AffectFrameDataset
from tests.fixtures import write_label_tree, write_labels, write_recording

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
