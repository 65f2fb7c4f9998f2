"""Aff-Wild2 reader on fixture trees of both annotation editions."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data import summary
from data.datasets.affwild2 import (
    audio_stem,
    find_annotation_dir,
    fps_from_name,
    index_split,
    read_va_annotation,
)
from data.errors import DataError
from data.samples.dataset import AffectFrameDataset, read_rgb
from tests.fixtures import write_affwild2


def _labels(n, invalid=()):
    v = np.linspace(-0.9, 0.9, n)
    lab = np.stack([v, -v], axis=1)
    for i in invalid:
        lab[i - 1] = -5
    return lab


@pytest.mark.parametrize("edition,parent", [("abaw2020", "annotations"), ("abaw_later", "Third ABAW Annotations"),
                                            ("abaw2020", "")])
def test_both_editions_index_valid_frames(tmp_path, edition, parent):
    videos = {
        "1-30-640x360": {"split": "train", "labels": _labels(10, invalid=[3, 4]), "missing": [7]},
        "2-25-640x360_left": {"split": "train", "labels": _labels(6)},
        "2-25-640x360_right": {"split": "train", "labels": _labels(6), "missing": [1]},
        "video9": {"split": "val", "labels": _labels(5, invalid=[5])},
    }
    root = write_affwild2(tmp_path, edition, videos, annotations_parent=parent)
    (root / "audio").mkdir()
    (root / "audio" / "2-25-640x360.wav").write_bytes(b"")  # shared by _left and _right
    found_edition, _ = find_annotation_dir(root)
    assert found_edition == edition
    train, report = index_split(root, "train")
    by_name = {r.name: r for r in train}
    assert list(by_name["1-30-640x360"].frames) == [1, 2, 5, 6, 8, 9, 10]   # -5 rows and missing file dropped
    assert list(by_name["2-25-640x360_right"].frames) == [2, 3, 4, 5, 6]
    assert by_name["1-30-640x360"].fps == 30.0 and by_name["2-25-640x360_left"].fps == 25.0
    assert by_name["2-25-640x360_left"].audio.name == "2-25-640x360.wav"
    assert by_name["2-25-640x360_right"].audio == by_name["2-25-640x360_left"].audio
    assert by_name["1-30-640x360"].audio is None
    assert (report.videos, report.usable_frames, report.valid_labels, report.invalid_labels,
            report.labelled_without_image, report.images_without_label) == (3, 18, 20, 2, 2, 0)
    assert report.audio_missing == 1
    val, _ = index_split(root, "val", default_fps=29.97)
    assert val[0].fps == 29.97 and list(val[0].frames) == [1, 2, 3, 4]

    ds = AffectFrameDataset(train, 16, audio={})
    assert len(ds) == 18
    sample = ds[2]
    assert sample["video"] == "1-30-640x360" and sample["frame"] == 5
    assert torch.allclose(sample["va"], torch.tensor(_labels(10)[4], dtype=torch.float32))
    assert sample["face"].shape == (3, 16, 16) and -1 <= sample["face"].min() and sample["face"].max() <= 1
    assert (ds.labels >= -1).all() and (ds.labels <= 1).all()  # invalid labels never reach a sample


def test_names_fps_and_audio_stems():
    assert fps_from_name("10-60-1280x720_right") == 60.0
    assert fps_from_name("video5") is None
    assert audio_stem("10-60-1280x720_left") == "10-60-1280x720"
    assert audio_stem("left_video") == "left_video"


@pytest.mark.parametrize("content,message", [
    ("arousal,valence\n0.1,0.2\n", "expected header 'valence,arousal'"),
    ("valence,arousal\n", "no label lines"),
    ("valence,arousal\n0.1,0.2\n0.3\n", ":3: expected two comma-separated numbers"),
    ("valence,arousal\n0.1,abc\n", ":2: expected two comma-separated numbers"),
    ("valence,arousal\n0.1,nan\n", ":2: label is not a finite number"),
])
def test_bad_annotation_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "vid.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_va_annotation(path)
    assert str(path) in str(info.value)


def test_header_tolerates_bom_and_spaces(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("\ufeffvalence, arousal\n0.5,-0.25\n-5,-5\n")
    assert read_va_annotation(path).tolist() == [[0.5, -0.25], [-5.0, -5.0]]


def test_missing_root_and_missing_annotations(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        index_split(tmp_path / "nowhere", "train")
    (tmp_path / "cropped_aligned").mkdir()
    with pytest.raises(DataError, match="no Aff-Wild2 VA annotations"):
        index_split(tmp_path, "train")


def test_corrupt_and_truncated_jpeg(tmp_path):
    root = write_affwild2(tmp_path, "abaw2020", {"v": {"split": "train", "labels": _labels(3)}})
    frame1 = root / "cropped_aligned" / "v" / "00001.jpg"
    data = frame1.read_bytes()
    frame1.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated JPEG") as info:
        read_rgb(frame1)
    assert str(frame1) in str(info.value)
    frame2 = root / "cropped_aligned" / "v" / "00002.jpg"
    frame2.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    with pytest.raises(DataError, match="cannot decode image"):
        read_rgb(frame2)
    assert read_rgb(root / "cropped_aligned" / "v" / "00003.jpg").shape == (24, 24, 3)


def test_label_files_shorter_or_longer_than_the_video(tmp_path):
    """The label count is authoritative: extra labels lack images, extra images lack labels; both counted."""
    root = write_affwild2(tmp_path, "abaw2020", {"long": {"split": "train", "labels": _labels(6)},
                                                 "short": {"split": "train", "labels": _labels(6)}})
    for k in (5, 6):  # the video 'long' has only 4 frames: its last two labels have no image
        (root / "cropped_aligned" / "long" / f"{k:05d}.jpg").unlink()
    ann = root / "annotations" / "VA_Set" / "Training_Set" / "short.txt"
    ann.write_text("\n".join(ann.read_text().splitlines()[:4]) + "\n")  # 3 labels for 6 frames
    records, report = index_split(root, "train")
    by_name = {r.name: r for r in records}
    assert list(by_name["long"].frames) == [1, 2, 3, 4] and list(by_name["short"].frames) == [1, 2, 3]
    assert report.labelled_without_image == 2 and report.images_without_label == 3


def test_fps_from_preprocessing_metadata_wins(tmp_path):
    from data.datasets.meta import VideoMeta, write_meta

    root = write_affwild2(tmp_path, "abaw2020", {"7-30-640x360_left": {"split": "train", "labels": _labels(3)},
                                                 "other": {"split": "train", "labels": _labels(3)}})
    write_meta(root, VideoMeta(video="7-30-640x360", fps=29.97, frames=3, complete=True))
    records, _ = index_split(root, "train", default_fps=25.0)
    fps = {r.name: r.fps for r in records}
    assert fps == {"7-30-640x360_left": 29.97, "other": 25.0}


def test_blank_line_inside_labels_is_an_error(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("valence,arousal\n0.1,0.2\n\n0.3,0.4\n\n")
    with pytest.raises(DataError, match=r"v.txt:3: blank line"):
        read_va_annotation(path)
    path.write_text("valence,arousal\n0.1,0.2\n0.3,0.4\n\n\n")  # trailing blank lines are fine
    assert read_va_annotation(path).shape == (2, 2)


def _wav(path: Path, seconds: float, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * rate), np.float32), rate)


def test_audio_that_outlasts_the_frames_is_reported_and_fixes_a_fallback_frame_rate(tmp_path, caplog):
    labels = np.full((60, 2), 0.5)
    root = write_affwild2(tmp_path, "abaw2020", {"plain": {"split": "train", "labels": labels},
                                                 "named-30-640x360": {"split": "train", "labels": labels},
                                                 "steady": {"split": "train", "labels": labels},
                                                 "other": {"split": "val", "labels": labels}})
    _wav(root / "audio" / "plain.wav", 2.4)              # 60 frames over 2.4 s: 25 fps, not the default 30
    _wav(root / "audio" / "named-30-640x360.wav", 2.4)   # the name says 30 fps: trusted, but reported
    _wav(root / "audio" / "steady.wav", 2.02)            # within 5 % of 60 / 30 s
    with caplog.at_level(logging.WARNING):
        records, report = index_split(root, "train", default_fps=30.0)
    fps = {r.name: r.fps for r in records}
    assert fps == {"plain": pytest.approx(25.0), "named-30-640x360": 30.0, "steady": 30.0}
    assert report.audio_drift == 2 and report.fps_from_audio == 1
    assert any("plain: 60 frames at the default 30 fps last 2.0 s but its audio 2.4 s; using 25.000 fps" in m
               for m in caplog.messages)
    assert any("named-30-640x360: 60 frames at 30 fps (from name)" in m for m in caplog.messages)
    kept, _ = index_split(root, "train", default_fps=30.0, fps_from_audio=False)
    assert {r.name: r.fps for r in kept}["plain"] == 30.0
    counted = summary.summarise_affwild2(root)["splits"]["train"]   # 'other' (val) has no audio: not counted
    assert counted["audio_drift"] == 2 and counted["fps_from_audio"] == 1
