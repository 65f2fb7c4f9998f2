"""Face landmarks and similarity alignment: video frame -> aligned face crop.

Aff-Wild2's ``cropped_aligned`` crops, and the ALN model trained on them, expect every face at the
same place and scale: eyes on one horizontal line at fixed positions. We get there in two steps:

1. A *landmarker* finds the most prominent face of a frame and returns 5 points (image-left eye
   centre, image-right eye centre, nose tip, image-left and image-right mouth corner) in pixels.
   Two interchangeable backends:

   * ``mtcnn``: facenet-pytorch's MTCNN, whose weights ship inside the wheel, so it works offline
     out of the box. Fast on a CPU; the default.
   * ``face-alignment``: the S3FD detector + 2D-FAN 68-point landmarks of Bulat & Tzimiropoulos
     (the landmarker of the Aff-Wild2 authors' pipeline); more precise on profiles and occlusions but
     several times slower on a CPU, and its weights are downloaded by the package on first use.
     We never let it download (preprocessing machines are often offline and a half-downloaded file
     hangs or crashes with a traceback): :func:`face_alignment_weights` says which files to put where.

2. :func:`align_face` fits a similarity transform (rotation, uniform scale, translation: no shear,
   so the face keeps its proportions, which carry expression) from the 5 points to a fixed template,
   the ArcFace 112x112 template that most face-analysis models use, and warps the frame.

Example:
    >>> landmarker = make_landmarker("mtcnn")                  # doctest: +SKIP
    >>> points = landmarker(rgb)                                # (5, 2) or None
    >>> crop = align_face(rgb, points, 112) if points is not None else None
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from data.errors import DataError

BACKENDS = ("mtcnn", "face-alignment")

# ArcFace / InsightFace 5-point template for 112x112 crops (x, y in pixels, pixel centres at integers):
# eyes, nose tip, mouth corners, in image-left to image-right order.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963],
     [73.5318, 51.5014],
     [56.0252, 71.7366],
     [41.5493, 92.3655],
     [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE_112.flags.writeable = False

# Bilinear sampling reads 2x2 source pixels per output pixel, so it only averages properly down to a
# scale of 1/2; below that it skips pixels (aliasing: jagged hair, shimmering texture across frames).
# Larger faces are therefore first area-averaged to twice the crop resolution and then warped at 1/2.
# Measured on the astronaut against an ideal (8x supersampled, area-averaged) crop, this cuts the mean
# error by 2-4x at scales 0.1-0.45 and changes nothing above 1/2.
_MIN_WARP_SCALE = 0.5


def template(size: int) -> np.ndarray:
    """The 5-point template for a ``size`` x ``size`` crop: :data:`TEMPLATE_112` scaled by size / 112.

    Uniform scaling keeps the same face framing at every resolution (e.g. 128 for models trained on
    128-pixel Aff-Wild2 crops), so crops of different sizes differ only in resolution.
    """
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return TEMPLATE_112 * (size / 112.0)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity transform mapping points ``src`` onto ``dst`` (Umeyama 1991).

    Closed form, deterministic and exact in the least-squares sense (unlike RANSAC-based
    ``cv2.estimateAffinePartial2D``, which may drop one of only five points as an outlier); reflections
    are excluded, so a mirrored landmark order cannot produce a mirrored face.

    Args:
        src: (N, 2) points in the source image, N >= 2, not all identical.
        dst: (N, 2) corresponding target points.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("source points are all identical; no similarity transform exists")
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def align_face(rgb: np.ndarray, points5: np.ndarray, size: int) -> np.ndarray:
    """Warp ``rgb`` so that ``points5`` land on :func:`template` ``(size)``; returns (size, size, 3) uint8.

    Pixels outside the frame repeat the border (like Aff-Wild2's crops) rather than turning black,
    so a face at the frame edge does not get an artificial high-contrast edge.

    Args:
        rgb: (H, W, 3) uint8 frame.
        points5: (5, 2) landmarks from a landmarker, in ``rgb``'s pixel coordinates.
        size: Crop side in pixels (112 or 128 in this project; any positive size works).
    """
    matrix = similarity_matrix(points5, template(size))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    image = rgb
    if scale < _MIN_WARP_SCALE:
        # Area-average the frame down so that the warp's remaining scale is 1/2.
        # cv2.resize maps pixel centres as x' = (x + 0.5) * f - 0.5, so x = (x' + 0.5) / f - 0.5.
        h, w = rgb.shape[:2]
        f = scale / _MIN_WARP_SCALE
        new_w, new_h = max(1, round(w * f)), max(1, round(h * f))
        image = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = new_w / w, new_h / h
        linear = matrix[:, :2]
        shrink = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5]])
        matrix = np.concatenate([linear @ shrink[:, :2], (linear @ shrink[:, 2] + matrix[:, 2])[:, None]], 1)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def points_from_68(points68: np.ndarray) -> np.ndarray:
    """(5, 2) template points from the 68-point iBUG layout used by face-alignment.

    Eye centres are the means of the six eye-contour points (36-41 and 42-47, 0-based), which is
    where MTCNN puts its eye points; nose tip is 30, mouth corners are 48 and 54.
    """
    p = np.asarray(points68, dtype=np.float64)[:, :2]
    if p.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks, got shape {np.asarray(points68).shape}")
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]]).astype(np.float32)


def _by_size(boxes: np.ndarray) -> list[int]:
    """Indices of boxes (x1, y1, x2, y2, ...) from the largest down: in-the-wild clips centre on their
    subject, whose face is normally the biggest one in frame; background faces are smaller."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable").tolist()


class Landmarker(Protocol):
    """A face landmarker: ``landmarker(rgb)`` -> (5, 2) float32 points of the largest face or None;
    ``landmarker.faces(rgb)`` -> the points of every face, largest first (two-subject videos)."""

    backend: str

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None: ...

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]: ...


class _LargestFace:
    """``landmarker(rgb)``: the first (largest) of ``faces(rgb)``."""

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        found = self.faces(rgb)
        return found[0] if found else None


class MtcnnLandmarker(_LargestFace):
    """MTCNN (facenet-pytorch) five-point landmarks of the largest face; weights ship with the package."""

    backend = "mtcnn"

    def __init__(self, device: str = "cpu", min_face_size: int = 20) -> None:
        from facenet_pytorch import MTCNN

        self._mtcnn = MTCNN(keep_all=True, select_largest=True, min_face_size=min_face_size, device=device)

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        boxes, _probs, points = self._mtcnn.detect(np.ascontiguousarray(rgb), landmarks=True)
        if boxes is None or len(boxes) == 0:
            return []
        return [np.asarray(points[i], dtype=np.float32).reshape(5, 2) for i in _by_size(boxes)]


@dataclass(frozen=True)
class WeightFile:
    """A weight file face-alignment needs: its file name, where it must be, and where it comes from."""

    name: str
    path: Path
    url: str


def _import_face_alignment():
    try:
        import face_alignment
        from face_alignment.detection.sfd import sfd_detector
    except ImportError as exc:
        raise DataError(f"the face-alignment backend needs the face-alignment package ({exc}); "
                        "pip install face-alignment==1.5.0, or use --backend mtcnn") from exc
    return face_alignment, sfd_detector


def checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch resolves it: where face-alignment looks for its weights."""
    import torch.hub

    return Path(os.path.realpath(os.path.join(torch.hub.get_dir(), "checkpoints")))


def face_alignment_weights() -> list[WeightFile]:
    """The 2D-FAN landmark and S3FD detector weight files the installed face-alignment loads.

    Names and URLs are read from the installed package (``face_alignment.api.models_urls`` and the
    S3FD detector's ``models_urls``), so they are exactly what it would download; for 1.5.0 these are
    ``2DFAN4-11f355bf06.pth.tar`` and ``s3fd-619a316812.pth``.
    """
    face_alignment, sfd_detector = _import_face_alignment()
    folder = checkpoint_dir()
    urls = [face_alignment.api.models_urls["2DFAN-4"], sfd_detector.models_urls["s3fd"]]
    names = [os.path.basename(urlparse(url).path) for url in urls]
    return [WeightFile(name=name, path=folder / name, url=url) for name, url in zip(names, urls, strict=True)]


def check_face_alignment_weights() -> list[WeightFile]:
    """The face-alignment weight files, after checking they are all present.

    Raises:
        DataError: One line naming every missing file, its URL, the folder to put it in, and the
            MTCNN alternative. Nothing is downloaded.
    """
    files = face_alignment_weights()
    missing = [f for f in files if not f.path.is_file()]
    if missing:
        listing = " and ".join(f"{f.name} (from {f.url})" for f in missing)
        raise DataError(f"face-alignment weights missing: put {listing} in {missing[0].path.parent}, "
                        "or use --backend mtcnn")
    return files


class FaceAlignmentLandmarker(_LargestFace):
    """face-alignment (S3FD + 2D-FAN-4) 68 landmarks of the largest face, reduced to the 5 template points.

    Runs without test-time flipping: the flip doubles the FAN cost for a sub-pixel change that the
    5-point least-squares fit averages away.
    """

    backend = "face-alignment"

    def __init__(self, device: str = "cpu") -> None:
        landmark_file, detector_file = check_face_alignment_weights()
        face_alignment, _ = _import_face_alignment()
        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, compile=False, flip_input=False,
                face_detector="sfd", face_detector_kwargs={"path_to_detector": str(detector_file.path)})
        except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise DataError(f"face-alignment weights in {landmark_file.path.parent} could not be loaded "
                            f"({exc.__class__.__name__}: {reason}); re-download {landmark_file.name} and "
                            f"{detector_file.name}, or use --backend mtcnn") from exc

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No faces were detected")
            landmarks, _scores, boxes = self._fa.get_landmarks_from_image(
                np.ascontiguousarray(rgb), return_bboxes=True)
        if not landmarks:
            return []
        return [points_from_68(landmarks[i]) for i in _by_size(boxes)]


def make_landmarker(backend: str, device: str = "cpu") -> Landmarker:
    """Build the landmarker ``backend`` ("mtcnn" or "face-alignment") on ``device`` ("cpu", "cuda", ...).

    Raises:
        DataError: Unknown backend, or face-alignment weights missing (see
            :func:`check_face_alignment_weights`).
    """
    if backend == "mtcnn":
        return MtcnnLandmarker(device=device)
    if backend == "face-alignment":
        return FaceAlignmentLandmarker(device=device)
    raise DataError(f"unknown face backend {backend!r}; choose one of {', '.join(BACKENDS)}")
