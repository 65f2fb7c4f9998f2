"""Two-subject videos: python -m data.prepare --two-subjects writes <video>_left/ and <video>_right/ crops."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from data.datasets.affwild2 import audio_stem
from data.datasets.meta import read_meta
from data.prepare import main
from data.preprocess.subjects import SideTracker
from data.samples.dataset import read_rgb

W, H, FACE = 320, 120, 96


def _two_people(left_visible: bool) -> np.ndarray:
    """The astronaut on the left in her own colours, and on the right with red and blue swapped."""
    face = cv2.resize(skdata.astronaut()[30:230, 125:325], (FACE, FACE), interpolation=cv2.INTER_AREA)
    frame = np.full((H, W, 3), 128, np.uint8)
    if left_visible:
        frame[12:12 + FACE, 10:10 + FACE] = face
    frame[12:12 + FACE, 214:214 + FACE] = face[..., ::-1]
    return frame


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _points(x: float) -> np.ndarray:
    return np.array([[x - 10, 40], [x + 10, 40], [x, 50], [x - 8, 60], [x + 8, 60]], np.float32)


def test_tracker_assigns_by_position_and_keeps_a_lone_face_on_its_side():
    tracker = SideTracker(width=320)
    both = tracker.assign([_points(250), _points(60)])            # largest first, right person larger
    assert both["left"][0, 0] == 50 and both["right"][0, 0] == 240
    alone = tracker.assign([_points(150)])                        # right of centre, but nearer the left person
    assert alone["right"] is None and alone["left"][2, 0] == 150
    assert tracker.assign([])["left"] is None
    fresh = SideTracker(width=320).assign([_points(200)])         # unseen sides sit mid-half: 80 and 240
    assert fresh["left"] is None and fresh["right"] is not None


@pytest.mark.usefixtures("one_torch_thread")
def test_two_subject_video_is_cropped_per_person_with_shared_audio(tmp_path):
    frames = [_two_people(True)] * 4 + [_two_people(False)] * 2   # the left person leaves for two frames
    videos = tmp_path / "in"
    videos.mkdir()
    _write(videos / "duo.mp4", frames)
    _write(videos / "solo.mp4", [_two_people(True)] * 2)
    root = tmp_path / "out"
    assert main([str(videos), "--out", str(root), "--two-subjects", "duo", "--no-progress"]) == 0
    crops = root / "cropped_aligned"
    assert sorted(p.name for p in crops.iterdir()) == ["duo_left", "duo_right", "solo"]
    left, right = sorted((crops / "duo_left").glob("*.jpg")), sorted((crops / "duo_right").glob("*.jpg"))
    assert [p.stem for p in left] == ["00001", "00002", "00003", "00004"]
    assert [p.stem for p in right] == [f"{k:05d}" for k in range(1, 7)]
    for path in left:    # the left person's skin: more red than blue; the right one's is swapped
        rgb = read_rgb(path).reshape(-1, 3).mean(axis=0)
        assert rgb[0] > rgb[2] + 20
    for path in right:
        rgb = read_rgb(path).reshape(-1, 3).mean(axis=0)
        assert rgb[2] > rgb[0] + 20
    meta = read_meta(root, "duo")
    assert meta.subjects == 2 and meta.faces == 10 and meta.complete
    assert audio_stem("duo_left") == audio_stem("duo_right") == "duo"   # readers find the shared audio
    # asked again as a one-subject video, it is redone and the per-person folders go
    assert main([str(videos / "duo.mp4"), "--out", str(root), "--no-progress"]) == 0
    assert sorted(p.name for p in crops.iterdir()) == ["duo", "solo"]
