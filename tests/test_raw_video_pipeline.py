"""Raw video to training: a tiny mp4 with audio written by PyAV -> prepare -> summary -> a few training steps."""

import json

import numpy as np
import pytest
import torch

import train
from data import summary
from data.prepare import main as prepare_main
from tests.test_video import face_frame, grey_frame, write_video
from tests.train_helpers import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prepare_summary_train(tmp_path):
    videos = tmp_path / "videos"
    frames = [grey_frame(100) if i in (2, 3) else face_frame(i) for i in range(12)]
    write_video(videos / "10-25-160x120.mp4", frames, fps=25)
    write_video(videos / "11-25-160x120.mp4", frames[::-1], fps=25)
    root = tmp_path / "affwild2"
    assert prepare_main([str(videos), "--out", str(root), "--backend", "mtcnn", "--size", "112",
                         "--no-progress"]) == 0
    # annotations in the ABAW 2020 layout: one video per split, one label per frame, one invalid row
    rng = np.random.default_rng(0)
    for name, split in (("10-25-160x120", "Training_Set"), ("11-25-160x120", "Validation_Set")):
        labels = rng.uniform(-0.9, 0.9, (12, 2))
        labels[5] = -5
        folder = root / "annotations" / "VA_Set" / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.txt").write_text("valence,arousal\n" + "".join(f"{v:.4f},{a:.4f}\n" for v, a in labels))

    out = tmp_path / "summary.json"
    assert summary.main([str(root), "--dataset", "affwild2", "--json", str(out)]) == 0
    train_split = json.loads(out.read_text())["splits"]["train"]
    faces = sorted(p.name for p in (root / "cropped_aligned" / "10-25-160x120").glob("*.jpg"))
    assert "00003.jpg" not in faces and "00004.jpg" not in faces       # frames without a face are absent
    assert train_split["videos"] == 1 and train_split["invalid_labels"] == 1
    assert train_split["valid_labels"] == 11 and train_split["usable_frames"] == len(faces) - 1
    assert train_split["labelled_without_image"] == 11 - train_split["usable_frames"]
    assert train_split["audio_missing"] == 0

    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("data.demo")]
    assert train.main([*overrides, "data.dataset=affwild2", f"data.root={root}", f"run.dir={run}",
                       "train.batch_size=4", "train.max_steps=2", "train.eval_every=2"]) == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["audio_stats"]["std"].shape == (50,)
    # the fps came from the container (25), recorded by prepare in meta/
    assert json.loads((root / "meta" / "10-25-160x120.json").read_text())["fps"] == 25.0
