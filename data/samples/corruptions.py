"""The robustness protocol's corruptions: each artefact alone, at five fixed severities (ImageNet-C style).

Hendrycks & Dietterich (2019) score a model on every corruption at five severities and summarise by the mean
over severities. We do the same for V/A on face crops, with the paper's four training artefacts (blur, noise,
downscale, colour scaling) and three the models never see in training (JPEG, low light, motion blur).

Unlike the training degradations (``data.samples.degrade``: random strengths drawn from ranges, artefacts
mixed), a severity here is one fixed strength of one artefact; only what ImageNet-C also leaves random is
drawn (the noise pattern, the colour factors within their range, the motion direction), from the frame's
seed. The same seed is used at every severity and for every artefact, so a frame keeps its noise pattern and
direction while the strength grows. Sizes are fractions of the crop's side, so a severity means the same on
112 px demo crops and on larger real ones; the corruption is applied to the full-resolution crop, as
training degrades it, before the crop is resized to the model's input.

Severity 1 is inside the training range for the four trained artefacts; severity 5 is well beyond it
(see :func:`severity_table`).
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2
import numpy as np

from data.samples.degrade import DegradeConfig, _check

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Artefact:
    """One corruption: its strength per severity and how albumentations applies it.

    ``values[s - 1]`` is severity ``s``'s strength in ``unit``; ``build(value, side)`` makes the transform for
    a crop of ``side`` pixels; ``training`` states the training range in the same unit ('' for unseen ones).
    """

    name: str
    trained: bool
    unit: str
    values: tuple[float, ...]
    training: str
    build: Callable[[float, int], list[A.BasicTransform]]


def _odd(length: float) -> int:
    """The nearest odd kernel length of at least 3 (albumentations' motion kernels are odd)."""
    k = max(3, int(round(length)))
    return k if k % 2 else k + 1


def _blur(sigma_share: float, side: int) -> list:
    sigma = sigma_share * side
    return [A.GaussianBlur(blur_limit=0, sigma_limit=(sigma, sigma), p=1.0)]


def _noise(std: float, side: int) -> list:
    return [A.GaussNoise(std_range=(std, std), mean_range=(0.0, 0.0), per_channel=True, p=1.0)]


def _downscale(scale: float, side: int) -> list:
    return [A.Downscale(scale_range=(scale, scale),
                        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1.0)]


def _colour(spread: float, side: int) -> list:
    # per-channel factors uniform in 1 ± spread: with one seed the same draws, scaled by the severity
    return [A.MultiplicativeNoise(multiplier=(1.0 - spread, 1.0 + spread), per_channel=True, elementwise=False,
                                  p=1.0)]


def _jpeg(quality: float, side: int) -> list:
    q = int(quality)
    return [A.ImageCompression(compression_type="jpeg", quality_range=(q, q), p=1.0)]


def _low_light(brightness: float, side: int) -> list:
    # an under-exposed camera: a darker gamma curve, then less light overall (gamma = 1 + (1 - b) for b in (0, 1])
    gamma = 100.0 * (2.0 - brightness)
    return [A.RandomGamma(gamma_limit=(gamma, gamma), p=1.0),
            A.MultiplicativeNoise(multiplier=(brightness, brightness), per_channel=False, elementwise=False, p=1.0)]


def _motion_blur(length_share: float, side: int) -> list:
    k = _odd(length_share * side)
    return [A.MotionBlur(blur_limit=(k, k), allow_shifted=False, p=1.0)]


def _training_ranges() -> dict[str, str]:
    d = DegradeConfig()
    return {"blur": f"sigma {d.blur_sigma[0]}-{d.blur_sigma[1]} px on 112 px demo crops "
                    f"= {d.blur_sigma[0] / 112:.4f}-{d.blur_sigma[1] / 112:.4f}",
            "noise": f"{d.noise_std[0]}-{d.noise_std[1]}",
            "downscale": f"{d.downscale[0]}-{d.downscale[1]}",
            "colour": f"factors {d.colour_scale[0]}-{d.colour_scale[1]} (spread {1 - d.colour_scale[0]:.2f})"}


_TRAINED = _training_ranges()

#: every artefact of the protocol, trained ones first; the order of the report's rows and plots
ARTEFACTS: dict[str, Artefact] = {a.name: a for a in (
    Artefact("blur", True, "Gaussian sigma / crop side", (0.012, 0.02, 0.03, 0.045, 0.065), _TRAINED["blur"], _blur),
    Artefact("noise", True, "Gaussian std / 255", (0.06, 0.12, 0.18, 0.26, 0.38), _TRAINED["noise"], _noise),
    Artefact("downscale", True, "scale factor (down, then back up)", (0.4, 0.25, 0.16, 0.11, 0.06),
             _TRAINED["downscale"], _downscale),
    Artefact("colour", True, "per-channel factor spread (1 ± s)", (0.15, 0.3, 0.45, 0.6, 0.75), _TRAINED["colour"],
             _colour),
    Artefact("jpeg", False, "JPEG quality", (50, 30, 18, 10, 5), "", _jpeg),
    Artefact("low_light", False, "brightness b (gamma 2 - b, then x b)", (0.9, 0.8, 0.65, 0.5, 0.35), "",
             _low_light),
    Artefact("motion_blur", False, "kernel length / crop side", (0.04, 0.07, 0.1, 0.14, 0.19), "", _motion_blur),
)}


@lru_cache(maxsize=512)
def _transforms(name: str, severity: int, side: int) -> tuple:
    artefact = ARTEFACTS[name]
    return tuple(artefact.build(artefact.values[severity - 1], side))


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``image`` (uint8 HxWx3 RGB crop) with artefact ``name`` at ``severity`` (0: unchanged copy).

    A pure function of (image, name, severity, seed): the random parts are drawn from generators seeded by
    ``seed`` alone, so any worker, process or run gives the same bytes.
    """
    _check(image)
    if name not in ARTEFACTS:
        raise ValueError(f"unknown artefact {name!r}; expected one of {', '.join(ARTEFACTS)}")
    if severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0-{SEVERITIES[-1]}, got {severity}")
    if severity == 0:
        return image.copy()
    rng, py_rng = np.random.default_rng(seed), random.Random(seed)
    out = image
    for transform in _transforms(name, severity, min(image.shape[:2])):
        # the transforms are shared per process, so they are re-seeded on every call
        transform.set_random_state(rng, py_rng)
        out = transform(image=out)["image"]
    return np.ascontiguousarray(out, dtype=np.uint8)


class Corruption:
    """``(image, seed) -> image`` for one (artefact, severity): the degrader of a scoring dataset.

    A picklable object (not a closure), so DataLoader workers started by spawn get it too.
    """

    def __init__(self, name: str, severity: int):
        if name not in ARTEFACTS:
            raise ValueError(f"unknown artefact {name!r}; expected one of {', '.join(ARTEFACTS)}")
        self.name, self.severity = name, severity

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        return corrupt(image, self.name, self.severity, seed)

    def __repr__(self) -> str:
        return f"Corruption({self.name!r}, {self.severity})"


def frame_seed(video: str, frame: int) -> int:
    """The corruption seed of frame ``frame`` of ``video``: from the frame's identity, not its position.

    So every system (per-frame ALN, sequence models reading whole recordings) and every worker corrupts a frame
    identically; CRC-32 rather than ``hash`` because Python salts string hashes per process.
    """
    return (zlib.crc32(video.encode("utf-8")) << 24) ^ int(frame)


def conditions() -> list[tuple[str, int]]:
    """Every scored condition: ``("clean", 0)``, then each artefact at each severity."""
    return [("clean", 0)] + [(name, s) for name in ARTEFACTS for s in SEVERITIES]


def severity_table() -> list[dict]:
    """One row per artefact: unit, the five strengths, the training range (the table in docs/robustness.md)."""
    return [{"artefact": a.name, "seen in training": "yes" if a.trained else "no", "parameter": a.unit,
             **{f"s{s}": f"{v:g}" for s, v in zip(SEVERITIES, a.values, strict=True)},
             "training range": a.training or "—"} for a in ARTEFACTS.values()]
