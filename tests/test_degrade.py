"""Tests for data/samples/degrade.py: determinism per seed, each artefact's effect, the clean share."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from data.samples.degrade import ARTEFACTS, DegradeConfig, Degrader

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real photo of a face, at the model's 112x112 input size."""
    return cv2.resize(astronaut(), (112, 112), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def degrader() -> Degrader:
    return Degrader(DegradeConfig())


def lap_var(image: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian of the grey image."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_output(face: np.ndarray, degrader: Degrader) -> None:
    first = {s: degrader(face, s) for s in range(20)}
    other = Degrader(DegradeConfig())
    for s in reversed(range(20)):  # different call order, other seeds in between, another instance
        degrader(face, 1000 + s)
        np.testing.assert_array_equal(degrader(face, s), first[s])
        np.testing.assert_array_equal(other(face, s), first[s])


def test_same_seed_same_output_in_another_process(face: np.ndarray, degrader: Degrader) -> None:
    code = (
        "import hashlib, cv2; from skimage.data import astronaut\n"
        "from data.samples.degrade import Degrader, DegradeConfig\n"
        "face = cv2.resize(astronaut(), (112, 112), interpolation=cv2.INTER_AREA)\n"
        "d = Degrader(DegradeConfig())\n"
        "print(','.join(hashlib.sha1(d(face, s).tobytes()).hexdigest() for s in (7, 3, 123456)))\n"
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True).stdout.strip().splitlines()[-1]
    here = ",".join(hashlib.sha1(degrader(face, s).tobytes()).hexdigest() for s in (7, 3, 123456))
    assert out == here


def test_different_seeds_differ(face: np.ndarray, degrader: Degrader) -> None:
    outs = [degrader(face, s).tobytes() for s in range(100)]
    degraded = [o for o in outs if o != face.tobytes()]
    assert len(set(degraded)) == len(degraded)  # every degraded output is distinct
    assert len(set(outs)) >= 60


def test_single_is_deterministic(face: np.ndarray, degrader: Degrader) -> None:
    for name in ARTEFACTS:
        apply = degrader.single(name)
        np.testing.assert_array_equal(apply(face, 5), apply(face, 5))
        assert not np.array_equal(apply(face, 5), apply(face, 6)), name


# --- each artefact ---------------------------------------------------------------------------------


def test_blur_lowers_high_frequencies(face: np.ndarray, degrader: Degrader) -> None:
    blur = degrader.single("blur")
    for seed in range(5):
        out = blur(face, seed)
        assert lap_var(out) < 0.6 * lap_var(face)
        assert abs(out.mean() - face.mean()) < 1.0
        assert corr(out, face) > 0.9


def test_noise_is_zero_mean_and_within_std_range(face: np.ndarray, degrader: Degrader) -> None:
    noise = degrader.single("noise")
    lo, hi = DegradeConfig().noise_std
    # pixels far from 0 and 255, so clipping does not bias the noise
    mid = (face > 60) & (face < 195)
    for seed in range(5):
        out = noise(face, seed)
        residual = out.astype(np.float64) - face
        assert abs(residual[mid].mean()) < 1.0
        assert lo * 255 * 0.85 < residual[mid].std() < hi * 255 * 1.15
        assert lap_var(out) > 1.1 * lap_var(face)  # independent noise adds high-frequency energy


def test_noise_raises_variation_in_flat_regions(degrader: Degrader) -> None:
    flat = np.full((112, 112, 3), 128, np.uint8)
    out = degrader.single("noise")(flat, 0)
    assert np.diff(out.astype(np.float64), axis=1).std() > 0.03 * 255
    assert abs(out.mean() - 128) < 1.0


def test_downscale_lowers_high_frequencies_keeps_mean(face: np.ndarray, degrader: Degrader) -> None:
    down = degrader.single("downscale")
    for seed in range(5):
        out = down(face, seed)
        assert out.shape == face.shape
        assert lap_var(out) < 0.6 * lap_var(face)
        assert abs(out.mean() - face.mean()) < 2.0
        assert corr(out, face) > 0.85


def test_colour_scales_each_channel_within_range(face: np.ndarray, degrader: Degrader) -> None:
    colour = degrader.single("colour")
    lo, hi = DegradeConfig().colour_scale
    ratios = []
    for seed in range(10):
        out = colour(face, seed)
        ratio = out.reshape(-1, 3).mean(0) / face.reshape(-1, 3).mean(0)
        assert ((ratio > lo - 0.01) & (ratio < hi + 0.01)).all(), ratio
        for c in range(3):
            assert corr(out[..., c], face[..., c]) > 0.98  # structure kept, only the scale changes
        ratios.append(ratio)
    ratios = np.array(ratios)
    assert (np.abs(ratios - 1) > 0.02).any(axis=1).mean() > 0.7  # it does change the colours
    assert (ratios.std(axis=1) > 0.01).mean() > 0.7  # per channel, not one global gain


def test_unknown_artefact(degrader: Degrader) -> None:
    with pytest.raises(ValueError, match="unknown artefact"):
        degrader.single("jpeg")


# --- clean share, disabled, dtype ------------------------------------------------------------------


@pytest.mark.parametrize("clean_share", [0.0, 0.2, 0.5])
def test_clean_share(face: np.ndarray, clean_share: float) -> None:
    d = Degrader(DegradeConfig(clean_share=clean_share))
    unchanged = np.mean([np.array_equal(d(face, s), face) for s in range(500)])
    assert abs(unchanged - clean_share) <= 0.07


def test_not_clean_means_degraded(face: np.ndarray) -> None:
    """p_each=0 still degrades every non-clean sample: one artefact is forced."""
    d = Degrader(DegradeConfig(clean_share=0.0, p_each=0.0))
    assert not any(np.array_equal(d(face, s), face) for s in range(50))


def test_disabled_returns_input(face: np.ndarray) -> None:
    d = Degrader(DegradeConfig(enabled=False))
    out = d(face, 3)
    np.testing.assert_array_equal(out, face)
    assert out is not face


def test_dtype_shape_and_input_untouched(face: np.ndarray, degrader: Degrader) -> None:
    original = face.copy()
    rect = cv2.resize(face, (96, 128))
    for s in range(30):
        for img in (face, rect):
            out = degrader(img, s)
            assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(face, original)


def test_rejects_non_uint8(face: np.ndarray, degrader: Degrader) -> None:
    with pytest.raises(ValueError, match="uint8"):
        degrader(face.astype(np.float32), 0)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="clean_share"):
        DegradeConfig(clean_share=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        DegradeConfig(blur_sigma=(2.0, 1.0))


def test_no_warnings(face: np.ndarray) -> None:
    """No deprecated-argument (or other) warnings from albumentations 2.0.8."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = Degrader(DegradeConfig())
        for s in range(20):
            d(face, s)
        for name in ARTEFACTS:
            d.single(name)(face, 0)
