"""Aff-Wild2 test split: a names list, crops and metadata without labels -> submissions in both layouts."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

import evaluate
from data.datasets.affwild2 import read_va_annotation
from data.datasets.meta import VideoMeta, write_meta
from data.errors import DataError
from data.formats.abaw_submission import read_single_file
from data.samples.abaw_test_set import frame_count, index_test_split, read_test_list
from tests.test_video import grey_frame, write_video
from tests.train_helpers import _run


@pytest.fixture
def test_tree(demo_root, tmp_path):
    """Four listed videos: frame count from meta, from the video file, from the last crop; one without faces."""
    root = tmp_path / "aw"
    val = sorted((demo_root / "cropped_aligned").iterdir())[-2:]
    crops = root / "cropped_aligned"
    shutil.copytree(val[0], crops / "with_meta")
    shutil.copytree(val[1], crops / "with_video")
    shutil.copytree(val[1], crops / "last_crop_only")
    for p in sorted((crops / "last_crop_only").glob("*.jpg"))[30:]:
        p.unlink()   # the last 10 of 40 frames lost their face
    write_meta(root, VideoMeta(video="with_meta", fps=30.0, frames=45, complete=True))   # 5 frames after the last face
    write_video(root / "videos" / "with_video.mp4", [grey_frame(100)] * 42, fps=30, audio=False)
    write_meta(root, VideoMeta(video="faceless", fps=30.0, frames=12, complete=True))
    (root / "test_set.txt").write_text("with_meta\nwith_video\n\nlast_crop_only\nfaceless\n")
    return root


def test_every_frame_of_every_listed_video_is_in_both_submission_layouts(demo_root, test_tree, tmp_path, caplog,
                                                                       capsys):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    out = tmp_path / "submission"
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--split", "test", "--dataset", "affwild2",
                              f"data.root={test_tree}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no labels, so no scores" in printed and "CCC" not in printed
    expected = {"with_meta": 45, "with_video": 42, "last_crop_only": 30, "faceless": 12}
    single = read_single_file(out / "abaw_later" / "predictions.txt")   # the ABAW scorer's reader
    assert {v: len(a) for v, a in single.items()} == expected
    for video, n in expected.items():
        per_video = read_va_annotation(out / "abaw2020" / f"{video}.txt")
        assert per_video.shape == (n, 2) and np.array_equal(per_video, single[video].astype(np.float32))
        assert np.abs(per_video).max() <= 1.0
    assert np.all(single["faceless"] == 0.0)
    # frames after the last face repeat the nearest predicted frame
    assert np.all(single["with_meta"][40:] == single["with_meta"][39])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] is False and metrics["frames"] == sum(expected.values())
    assert metrics["videos_without_a_face"] == ["faceless"] and "valence" not in metrics
    assert any("last_crop_only: frame count from the last crop (30)" in m for m in caplog.messages)


def test_test_list_and_frame_count_errors(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"names.txt:3: video 'a' listed twice"):
        read_test_list(names)
    with pytest.raises(DataError, match="the frame count of test video 'ghost' is unknown"):
        frame_count(tmp_path, "ghost", [])
    with pytest.raises(DataError, match="no test list; put the released names file there as test_set.txt"):
        index_test_split(tmp_path, "", 30.0)


def test_a_sequence_model_writes_the_same_submission_layouts(demo_root, test_tree, tmp_path):
    import train
    from tests.train_helpers import REPO, TINY

    run = tmp_path / "seq"
    assert train.main(["--config", str(REPO / "configs" / "baselines" / "augmented_ensemble.yaml"),
                       *[o for o in TINY if o.startswith("data.demo.")], f"data.root={demo_root}", f"run.dir={run}",
                       "train.max_steps=4", "train.eval_every=2"]) == 0
    out = tmp_path / "submission"
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--split", "test", "--dataset", "affwild2",
                          f"data.root={test_tree}", "--out", str(out)]) == 0
    single = read_single_file(out / "abaw_later" / "predictions.txt")
    assert {v: len(a) for v, a in single.items()} == {"with_meta": 45, "with_video": 42, "last_crop_only": 30,
                                                       "faceless": 12}
    assert np.abs(single["with_meta"]).max() <= 1.0 and np.all(single["faceless"] == 0.0)
    assert len(np.unique(single["with_meta"][:40, 0])) > 1   # the model's own per-frame outputs
    assert json.loads((out / "metrics.json").read_text())["variant"] == "aminbeidokhti augmented_ensemble"
