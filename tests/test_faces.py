"""data.preprocess.faces: landmark backends, the 5-point template, similarity alignment, offline weight handling."""

from __future__ import annotations

import socket
import urllib.request

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from data.errors import DataError
from data.preprocess import faces
from data.preprocess.faces import (
    TEMPLATE_112,
    FaceAlignmentLandmarker,
    align_face,
    face_alignment_weights,
    make_landmarker,
    points_from_68,
    similarity_matrix,
    template,
)

EYE_TOLERANCE_PX = 3.0  # at 112 px


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mtcnn():
    return make_landmarker("mtcnn")


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (face-alignment must never download)."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def test_template_is_the_arcface_112_template_scaled_uniformly():
    assert template(112) == pytest.approx(TEMPLATE_112)
    assert TEMPLATE_112[0] == pytest.approx([38.2946, 51.6963])
    assert TEMPLATE_112[4] == pytest.approx([70.7299, 92.2041])
    assert template(128) == pytest.approx(TEMPLATE_112 * 128 / 112)
    assert not TEMPLATE_112.flags.writeable
    with pytest.raises(ValueError):
        template(0)


def test_similarity_matrix_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = 0.4, 0.7, np.array([12.0, -5.0])
    truth = np.hstack([scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]),
                       shift[:, None]])
    assert similarity_matrix(src, _apply(truth, src)) == pytest.approx(truth, abs=1e-9)


def test_similarity_matrix_never_reflects():
    mirrored = TEMPLATE_112 * [-1, 1] + [112, 0]  # landmarks of a mirror image
    matrix = similarity_matrix(mirrored, TEMPLATE_112)
    assert np.linalg.det(matrix[:, :2]) > 0
    with pytest.raises(ValueError):
        similarity_matrix(np.ones((5, 2)), TEMPLATE_112)


def test_mtcnn_finds_the_astronaut_face(mtcnn, astronaut):
    points = mtcnn(astronaut)
    assert points.shape == (5, 2) and points.dtype == np.float32
    # Her face spans about x 181-268, y 62-172 in the 512x512 photo; points in the template's order.
    assert np.all((points[:, 0] > 181) & (points[:, 0] < 268) & (points[:, 1] > 62) & (points[:, 1] < 172))
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # image-left before image-right
    assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min()  # eyes above nose above mouth


def test_no_face_gives_none(mtcnn):
    assert mtcnn(np.full((120, 160, 3), 128, np.uint8)) is None


@pytest.mark.parametrize("size", [112, 128])
def test_aligned_astronaut_has_her_eyes_on_the_template(mtcnn, astronaut, size):
    points = mtcnn(astronaut)
    crop = align_face(astronaut, points, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    tolerance = EYE_TOLERANCE_PX * size / 112
    # The detected eye points mapped by the fitted transform (the fit is least squares over 5 points,
    # so eyes are not exact: her smile puts the mouth corners wider than the template's).
    mapped = _apply(similarity_matrix(points, template(size)), points)
    assert np.linalg.norm(mapped[:2] - template(size)[:2], axis=1).max() <= tolerance
    # And independently: MTCNN run again on the crop finds the eyes where the template puts them.
    redetected = mtcnn(crop)
    assert np.linalg.norm(redetected[:2] - template(size)[:2], axis=1).max() <= tolerance


def test_large_faces_are_area_downsampled_to_the_same_crop(mtcnn, astronaut, monkeypatch):
    """A 3x larger frame (face far above crop resolution) gives nearly the crop of the original frame
    and of an ideal supersampled, area-averaged warp; plain bilinear warping would alias."""
    points = mtcnn(astronaut)
    crop = align_face(astronaut, points, 112).astype(float)
    big = cv2.resize(astronaut, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    big_points = (points + 0.5) * 3 - 0.5  # cv2.resize's pixel-centre mapping
    big_crop = align_face(big, big_points, 112).astype(float)
    assert np.abs(big_crop - crop).mean() < 2.0
    # an error of one source pixel in the pre-shrink's coordinate compensation would show clearly
    shifted = align_face(big, big_points + 3, 112).astype(float)
    assert np.abs(shifted - crop).mean() > np.abs(big_crop - crop).mean() + 3

    # Ideal: warp 8x larger (template scaled about pixel centres), then average 8x8 blocks.
    ideal_matrix = similarity_matrix(big_points, template(112) * 8 + 3.5)
    ideal = cv2.warpAffine(big, ideal_matrix, (896, 896), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
    ideal = cv2.resize(ideal, (112, 112), interpolation=cv2.INTER_AREA).astype(float)
    monkeypatch.setattr(faces, "_MIN_WARP_SCALE", 0.0)  # disable the pre-shrink
    plain = align_face(big, big_points, 112).astype(float)
    assert np.abs(big_crop - ideal).mean() < 0.6 * np.abs(plain - ideal).mean()


def test_align_face_replicates_the_border():
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb[:, :, 1] = 200  # uniform green frame; a face at the corner needs pixels from outside it
    crop = align_face(rgb, TEMPLATE_112 * 0.4 - 20, 112)
    assert np.all(crop[..., 1] == 200) and np.all(crop[..., 0] == 0)


def test_points_from_68_uses_eye_centres_nose_tip_and_mouth_corners():
    pts = np.zeros((68, 2))
    pts[36:42] = [[10, 20], [12, 20], [14, 20], [16, 22], [14, 22], [12, 22]]
    pts[42:48] = [[30, 20], [32, 20], [34, 20], [36, 22], [34, 22], [32, 22]]
    pts[30], pts[48], pts[54] = [23, 30], [15, 40], [31, 40]
    assert points_from_68(pts) == pytest.approx(np.array([[13, 21], [33, 21], [23, 30], [15, 40], [31, 40]]))
    assert points_from_68(np.hstack([pts, np.ones((68, 1))])).shape == (5, 2)  # 3-D points: x, y used
    with pytest.raises(ValueError):
        points_from_68(pts[:5])


def test_unknown_backend_is_a_data_error():
    with pytest.raises(DataError, match="unknown face backend 'dlib'; choose one of mtcnn, face-alignment"):
        make_landmarker("dlib")


def test_face_alignment_weight_names_are_those_the_package_downloads():
    names = [(f.name, f.url) for f in face_alignment_weights()]
    assert names == [
        ("2DFAN4-11f355bf06.pth.tar", "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"),
        ("s3fd-619a316812.pth", "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
    ]


def test_missing_face_alignment_weights_give_one_line_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = (tmp_path / "torch" / "hub" / "checkpoints").resolve()
    with pytest.raises(DataError) as err:
        make_landmarker("face-alignment")
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "face-alignment weights missing: put 2DFAN4-11f355bf06.pth.tar (from "
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar) and s3fd-619a316812.pth "
        f"(from https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth) in {folder}, "
        "or use --backend mtcnn")
    # With one of the two present, only the other is named.
    folder.mkdir(parents=True)
    (folder / "s3fd-619a316812.pth").write_bytes(b"x")
    with pytest.raises(DataError) as err:
        make_landmarker("face-alignment")
    assert "2DFAN4-11f355bf06.pth.tar" in str(err.value) and "s3fd" not in str(err.value)


@pytest.fixture(scope="module")
def random_fa_weights(tmp_path_factory):
    """Randomly initialised face-alignment weights with the exact file names, in a private TORCH_HOME.

    Saved as float16 state dicts (what the package loads, half the bytes; load_state_dict casts)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch-home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for name, net in (("2DFAN4-11f355bf06.pth.tar", FAN(4)), ("s3fd-619a316812.pth", s3fd())):
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()},
                   folder / name)
    return home


def test_face_alignment_loads_the_exact_files_offline(random_fa_weights, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(random_fa_weights))
    loaded = []
    real_load = torch.load

    def spy(f, *args, **kwargs):
        loaded.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    landmarker = make_landmarker("face-alignment")
    assert isinstance(landmarker, FaceAlignmentLandmarker) and landmarker.backend == "face-alignment"
    folder = (random_fa_weights / "hub" / "checkpoints").resolve()
    assert sorted(loaded) == sorted([str(folder / "2DFAN4-11f355bf06.pth.tar"),
                                     str(folder / "s3fd-619a316812.pth")])
    net = landmarker._fa.face_alignment_net
    assert not net.training and next(net.parameters()).dtype == torch.float32


def test_corrupt_face_alignment_weights_are_a_data_error(tmp_path, monkeypatch, no_network):
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for f in ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"):
        (folder / f).write_bytes(b"<html>captive portal</html>")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"could not be loaded .*re-download .*or use --backend mtcnn"):
        make_landmarker("face-alignment")


def test_face_alignment_landmarker_reduces_the_largest_face_to_five_points():
    """The 68 -> 5 reduction and the choice among several faces, with the networks stubbed out."""
    small, large = np.zeros((68, 2)), np.zeros((68, 2))
    small[:] = 5.0
    large[36:42], large[42:48] = [40, 50], [70, 50]
    large[30], large[48], large[54] = [55, 70], [42, 90], [68, 90]

    class FakeFA:
        def get_landmarks_from_image(self, image, return_bboxes=False):
            assert return_bboxes
            if image.mean() == 0:
                return None, None, None
            return [small, large], None, [np.array([0, 0, 20, 20, 0.99]), np.array([30, 30, 90, 100, 0.8])]

    landmarker = FaceAlignmentLandmarker.__new__(FaceAlignmentLandmarker)
    landmarker._fa = FakeFA()
    points = landmarker(np.ones((120, 160, 3), np.uint8))
    assert points == pytest.approx(np.array([[40, 50], [70, 50], [55, 70], [42, 90], [68, 90]]))
    assert landmarker(np.zeros((120, 160, 3), np.uint8)) is None


def test_largest_box_wins_over_the_more_confident_one():
    boxes = np.array([[0, 0, 10, 10, 0.999], [20, 20, 60, 70, 0.9], [0, 0, 30, 5, 0.95]])
    assert faces._by_size(boxes)[0] == 1
