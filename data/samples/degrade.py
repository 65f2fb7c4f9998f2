"""The paper's four image artefacts, used to make the generator's degraded input from clean faces.

Aspandi et al. (2020) degrade clean face crops with "Gaussian blurring, Gaussian noise, image
downsampling, and colour scaling"; the generator learns to map the degraded face back to the clean
one, which forces its latent space to keep the affect-relevant content. We use albumentations for
the artefacts themselves and draw every random choice (clean or not, which artefacts, their
strengths) from the per-SAMPLE seed, so a sample is degraded identically in any process, worker or
call order; that makes runs reproducible and lets an interrupted run resume bit-exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

# albumentations checks PyPI for a newer version on import unless told not to; runs must work offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2
import numpy as np

ARTEFACTS = ("blur", "downscale", "colour", "noise")  # also the order in which they are applied


@dataclass
class DegradeConfig:
    """Strengths and frequencies of the artefacts.

    Attributes:
        enabled: False returns images unchanged (e.g. for evaluation on clean faces).
        clean_share: Share of samples left untouched, so the generator also learns the identity.
        p_each: Probability of each artefact; when a sample is not clean and none was drawn, one
            is forced so that "not clean" always means degraded.
        blur_sigma: Range of the Gaussian blur sigma in pixels.
        noise_std: Range of the Gaussian noise std as a fraction of the 0..255 range.
        downscale: Range of the down-scaling factor (the image is scaled back up to its size).
        colour_scale: Range of the per-channel multiplicative colour factor.
    """

    enabled: bool = True
    clean_share: float = 0.2
    p_each: float = 0.5
    blur_sigma: tuple[float, float] = (0.8, 2.0)
    noise_std: tuple[float, float] = (0.03, 0.10)
    downscale: tuple[float, float] = (0.25, 0.5)
    colour_scale: tuple[float, float] = (0.7, 1.3)

    def __post_init__(self) -> None:
        for name in ("clean_share", "p_each"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DegradeConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("blur_sigma", "noise_std", "downscale", "colour_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"DegradeConfig.{name} must be a range 0 < low <= high, got {(lo, hi)}")


def _build(cfg: DegradeConfig) -> dict[str, A.BasicTransform]:
    """One always-applied (p=1) transform per artefact; which ones run is decided by Degrader."""
    return {
        # blur_limit=0: kernel size follows from sigma, so the range is in sigma only.
        "blur": A.GaussianBlur(blur_limit=0, sigma_limit=cfg.blur_sigma, p=1.0),
        # AREA down / LINEAR up resembles a low-resolution camera; NEAREST would add blocky edges.
        "downscale": A.Downscale(
            scale_range=cfg.downscale,
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=1.0,
        ),
        "colour": A.MultiplicativeNoise(
            multiplier=cfg.colour_scale, per_channel=True, elementwise=False, p=1.0
        ),
        "noise": A.GaussNoise(std_range=cfg.noise_std, mean_range=(0.0, 0.0), per_channel=True, p=1.0),
    }


def _check(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 HxWxC image, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")


class Degrader:
    """Seeded application of the four artefacts to uint8 RGB face crops.

    The transforms are built once; each call re-points their random generators at fresh ones
    seeded from the call's seed (~10 us), instead of rebuilding the pipeline. Because of that
    shared mutable state an instance must not be used from several threads at once (DataLoader
    worker processes each hold their own copy, which is fine).
    """

    def __init__(self, cfg: DegradeConfig) -> None:
        self.cfg = cfg
        self._transforms = _build(cfg)

    def _apply(
        self, name: str, image: np.ndarray, rng: np.random.Generator, py_rng: random.Random
    ) -> np.ndarray:
        transform = self._transforms[name]
        transform.set_random_state(rng, py_rng)
        return transform(image=image)["image"]

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Degraded uint8 copy of `image`, a pure function of (image, seed).

        Args:
            image: uint8 HxWx3 RGB face crop.
            seed: Non-negative per-sample seed; every random choice is drawn from it.
        """
        _check(image)
        if not self.cfg.enabled:
            return image.copy()
        rng = np.random.default_rng(seed)
        draws = rng.random(1 + len(ARTEFACTS))
        if draws[0] < self.cfg.clean_share:
            return image.copy()
        chosen = draws[1:] < self.cfg.p_each
        if not chosen.any():
            chosen[rng.integers(len(ARTEFACTS))] = True
        py_rng = random.Random(seed)
        out = image
        for name, on in zip(ARTEFACTS, chosen, strict=True):
            if on:
                out = self._apply(name, out, rng, py_rng)
        return np.ascontiguousarray(out, dtype=np.uint8)

    def single(self, name: str) -> Callable[[np.ndarray, int], np.ndarray]:
        """Apply only one artefact ("blur" | "noise" | "downscale" | "colour"), always.

        Used by tests and figures to show each artefact on its own; seeded like :meth:`__call__`.
        """
        if name not in self._transforms:
            raise ValueError(f"unknown artefact {name!r}; expected one of {', '.join(ARTEFACTS)}")

        def apply(image: np.ndarray, seed: int) -> np.ndarray:
            _check(image)
            out = self._apply(name, image, np.random.default_rng(seed), random.Random(seed))
            return np.ascontiguousarray(out, dtype=np.uint8)

        return apply
