"""How SEWA recordings become frame labels and splits: :class:`SewaConfig` and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from data.datasets.sewa.labels import METHODS

PROTOCOLS = ("folds", "avec", "cross_cultural")
SPLITS = ("train", "val", "test")


@dataclass
class SewaConfig:
    """How SEWA recordings become frame labels and splits.

    ``default_fps`` = 50: the AVEC 2018/2019 SEWA visual features are computed over 50-frame (1 s)
    windows with a 5-frame (100 ms) hop (Pandit et al.), i.e. the challenge's videos run
    at 50 fps. (The raw SEWA DB webcam recordings have an "effective" 20-30 fps, so this value is only a
    fallback: the frame rate that ``python -m data.prepare`` read from the container, in ``meta/<stem>.json``,
    always wins, and using the fallback logs a warning.)

    Delays are in seconds per dimension and are recorded in the run config. Pandit et al. use 4.0 s
    (arousal) and 2.8 s (valence) for AVEC 2019 CES; the default of 0 keeps the raw alignment.
    """

    label_rate_hz: float = 10.0     # rate of the label files (AVEC 2019: one row per 0.1 s)
    interpolation: str = "nearest"  # nearest | linear: how 10 Hz labels reach video frames
    delay_arousal: float = 0.0      # annotator-delay compensation, seconds (>= 0)
    delay_valence: float = 0.0
    delay_liking: float = 0.0
    protocol: str = "folds"         # folds | avec | cross_cultural
    num_folds: int = 5
    fold_manifest: str = ""         # "" = ROOT/folds_seed<fold_seed>.json
    fold_seed: int = 0
    subjects_file: str = ""         # optional CSV "recording,subject"; "" = every recording its own subject
    default_fps: float = 50.0       # frame rate when meta/<stem>.json is missing

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        _positive_finite("label_rate_hz", self.label_rate_hz)
        _positive_finite("default_fps", self.default_fps)
        if self.interpolation not in METHODS:
            raise ValueError(f"sewa.interpolation must be one of {METHODS}, got {self.interpolation!r}")
        for key in ("delay_arousal", "delay_valence", "delay_liking"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"sewa.{key} must be a finite number of seconds >= 0 (annotators lag behind "
                                 f"the video, never ahead), got {value!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"sewa.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not is_int(self.num_folds) or self.num_folds < 3:
            raise ValueError(f"sewa.num_folds must be an integer >= 3 (test, validation and at least one "
                             f"training fold), got {self.num_folds!r}")
        if not is_int(self.fold_seed) or self.fold_seed < 0:
            raise ValueError(f"sewa.fold_seed must be a non-negative integer, got {self.fold_seed!r}")
        for key in ("fold_manifest", "subjects_file"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"sewa.{key} must be a path string, got {getattr(self, key)!r}")

    @property
    def delays(self) -> dict[str, float]:
        return {"arousal": float(self.delay_arousal), "valence": float(self.delay_valence),
                "liking": float(self.delay_liking)}


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_finite(key: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"sewa.{key} must be a finite number > 0, got {value!r}")
