"""The robustness protocol's corruptions: strengths that grow with severity, and seeding by the frame alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from torch.utils.data import DataLoader

from data.samples.corruptions import (
    ARTEFACTS,
    SEVERITIES,
    Corruption,
    conditions,
    corrupt,
    frame_seed,
    severity_table,
)
from data.samples.dataset import AffectFrameDataset
from data.samples.degrade import DegradeConfig
from tests.train_helpers import REPO


def _faces() -> list[np.ndarray]:
    """A fixed image set: four 112 px crops of a real photograph (face, hair, suit, rocket) and a flat-ish one."""
    photo = skimage.data.astronaut()
    boxes = [(20, 170, 150), (0, 130, 130), (250, 180, 200), (300, 0, 160)]
    crops = [cv2.resize(np.ascontiguousarray(photo[y:y + s, x:x + s]), (112, 112), interpolation=cv2.INTER_AREA)
             for y, x, s in boxes]
    gradient = np.linspace(40, 220, 112, dtype=np.float32)
    crops.append(np.stack([np.add.outer(gradient, gradient) / 2] * 3, axis=-1).astype(np.uint8))
    return crops


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("name", list(ARTEFACTS))
def test_every_artefacts_psnr_falls_strictly_with_severity(name):
    faces = _faces()
    psnr = []
    for severity in SEVERITIES:
        psnr.append(np.mean([_psnr(corrupt(f, name, severity, frame_seed("v", k)), f) for k, f in enumerate(faces)]))
    assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), (name, psnr)
    assert psnr[0] < 45, f"{name} severity 1 barely changes the image ({psnr[0]:.1f} dB)"


def test_severity_zero_is_the_image_itself_and_bad_arguments_are_named():
    face = _faces()[0]
    out = corrupt(face, "jpeg", 0, 7)
    assert out is not face and np.array_equal(out, face)
    with pytest.raises(ValueError, match="unknown artefact 'fog'"):
        corrupt(face, "fog", 1, 0)
    with pytest.raises(ValueError, match="severity must be 0-5"):
        corrupt(face, "blur", 6, 0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(face.astype(np.float32), "blur", 1, 0)


def test_severity_one_of_the_trained_artefacts_lies_in_the_training_range_and_five_beyond_it():
    d = DegradeConfig()
    values = {name: a.values for name, a in ARTEFACTS.items()}
    # blur: sigma as a share of the side; training's sigma range is in pixels of the 112 px demo crops
    assert d.blur_sigma[0] / 112 <= values["blur"][0] <= d.blur_sigma[1] / 112 < values["blur"][4]
    assert d.noise_std[0] <= values["noise"][0] <= d.noise_std[1] < values["noise"][4]
    assert d.downscale[0] <= values["downscale"][0] <= d.downscale[1] and values["downscale"][4] < d.downscale[0]
    assert 1 - values["colour"][0] >= d.colour_scale[0] and 1 - values["colour"][4] < d.colour_scale[0]
    assert {a.name for a in ARTEFACTS.values() if not a.trained} >= {"jpeg", "low_light", "motion_blur"}
    rows = severity_table()
    assert [r["artefact"] for r in rows] == list(ARTEFACTS) and rows[0]["s1"] == f"{values['blur'][0]:g}"
    assert conditions()[0] == ("clean", 0) and len(conditions()) == 1 + 5 * len(ARTEFACTS)


def test_sizes_are_relative_to_the_crop_side():
    """A blur of a 224 px crop, resized to 112, is close to the same severity on the 112 px crop (downscale's
    strength is a ratio already)."""
    small = _faces()[0]
    large = cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC)
    for name in ("blur", "motion_blur"):
        down = cv2.resize(corrupt(large, name, 3, 5), (112, 112), interpolation=cv2.INTER_AREA)
        here = corrupt(small, name, 3, 5)
        reference = cv2.resize(large, (112, 112), interpolation=cv2.INTER_AREA)
        assert abs(_psnr(down, reference) - _psnr(here, small)) < 2.0, name


def _digest(images) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(i).tobytes() for i in images)).hexdigest()


class _Record:
    """Just enough of a VideoRecord for AffectFrameDataset: frames with labels, a reader that ignores paths."""

    def __init__(self, name: str, n: int):
        self.name, self.frames = name, np.arange(1, n + 1)
        self.labels = np.zeros((n, 2), np.float32)
        self.liking = None


def _read(record, frame: int) -> np.ndarray:
    return _faces()[frame % 5]


def test_the_same_frame_is_corrupted_identically_in_any_worker_and_any_run():
    records = [_Record("video_a", 6), _Record("video_b", 5)]
    dataset = AffectFrameDataset(records, 64, {}, Corruption("noise", 3), None, _read, frame_seed=frame_seed)
    here = torch.cat([dataset[i]["face_degraded"][None] for i in range(len(dataset))])
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=lambda b: torch.stack(
            [s["face_degraded"] for s in b]))
        assert torch.equal(torch.cat(list(loader)), here), workers
    # the seed is the frame's identity: video_b's frame 2 is the same whatever comes before it
    alone = AffectFrameDataset([records[1]], 64, {}, Corruption("noise", 3), None, _read, frame_seed=frame_seed)
    assert torch.equal(alone[1]["face_degraded"], here[7])
    # another process (its own string-hash salt, its own albumentations state) makes the same bytes
    code = ("import json,sys; from tests.test_corruptions import _faces, _digest; "
            "from data.samples.corruptions import ARTEFACTS, corrupt, frame_seed; "
            "print(json.dumps({n: _digest([corrupt(f, n, 4, frame_seed('video_b', k)) for k, f in enumerate(_faces())])"
            " for n in ARTEFACTS}))")
    other = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                                      text=True, env={"PYTHONHASHSEED": "123", "PATH": "",
                                                      "NO_ALBUMENTATIONS_UPDATE": "1"}).stdout)
    mine = {n: _digest([corrupt(f, n, 4, frame_seed("video_b", k)) for k, f in enumerate(_faces())])
            for n in ARTEFACTS}
    assert other == mine
    # and different frames get different draws
    face = _faces()[0]
    assert not np.array_equal(corrupt(face, "noise", 2, frame_seed("video_b", 1)),
                              corrupt(face, "noise", 2, frame_seed("video_b", 2)))
