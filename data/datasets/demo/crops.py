"""A video's face crops on disk: head pose, rendering, sensor noise and JPEG files, shared by both demo layouts."""

from __future__ import annotations

import pathlib
from collections.abc import Collection

import cv2
import numpy as np

from data.datasets.demo.face_drawing import REF_SIZE, FaceIdentity, render_face
from data.datasets.demo.traces import smooth_curves

JPEG_QUALITY = 90


def head_pose(n_frames: int, size: int, rng: np.random.Generator,
              periods: tuple[float, float] = (60.0, 240.0)) -> np.ndarray:
    """(n_frames, 3) float64 head pose per frame: in-plane tilt (degrees) and x, y shift (pixels at ``size``).

    Slow smooth sway (``periods`` in frames) plus a little per-frame jitter, shifts clipped to 3 reference
    pixels. Draws from ``rng`` in a fixed order (the Aff-Wild2 demo's content depends on it).
    """
    k = size / REF_SIZE
    smooth = smooth_curves(n_frames, rng, 3, periods, components=2)
    jitter = rng.normal(0.0, 0.25, (n_frames, 2))
    tilt = smooth[:, 0] * rng.uniform(4.0, 10.0)
    shift = np.clip(smooth[:, 1:] * rng.uniform(1.5, 2.7, 2) + jitter, -3.0, 3.0) * k
    return np.column_stack([tilt, shift])


def write_crops(image_dir: pathlib.Path, identity: FaceIdentity, va: np.ndarray, pose: np.ndarray, size: int,
                noise_rng: np.random.Generator, skip: Collection[int] = ()) -> None:
    """Render frame ``f`` (0-based) with valence ``va[f, 0]``, arousal ``va[f, 1]`` to ``image_dir/<f+1:05d>.jpg``.

    Frames in ``skip`` (0-based) get no file (no face detected). ``image_dir`` is created.
    """
    image_dir.mkdir()
    n_frames = len(va)
    skip = set(skip)
    # Sensor noise: a random window of one larger Gaussian field per frame. Drawing a fresh field per
    # frame costs more than rendering the face; shifted windows are just as useless to memorise.
    n = size
    field = noise_rng.standard_normal((2 * n, 2 * n, 3), dtype=np.float32) * np.float32(identity.sensor_noise)
    offsets = noise_rng.integers(0, n + 1, size=(n_frames, 2))
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for f in range(n_frames):
        if f in skip:
            continue
        rgb = render_face(float(va[f, 0]), float(va[f, 1]), identity, size,
                          (float(pose[f, 0]), float(pose[f, 1]), float(pose[f, 2])))
        oy, ox = offsets[f]
        noisy = rgb.astype(np.float32) + field[oy:oy + n, ox:ox + n]
        bgr = cv2.cvtColor(np.clip(noisy, 0.0, 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, params)
        if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on a valid uint8 image
            raise RuntimeError(f"JPEG encoding failed for {image_dir} frame {f + 1}")
        buf.tofile(str(image_dir / f"{f + 1:05d}.jpg"))
