"""Synthetic "demo" affect dataset in the Aff-Wild2 on-disk layout.

Why this exists: ``python train.py`` must run end to end without a licence-gated download, and it
should exercise the *real* dataset readers (``data.datasets.affwild2``, ``data.preprocess.audio``) rather than a special
code path. So we generate, once and deterministically, a small dataset that looks like Aff-Wild2 on
disk: procedurally drawn faces whose expressions follow smooth valence/arousal (V/A) traces, and a
voiced, speech-like sound whose pitch and loudness follow arousal. It is a sanity benchmark only and is
never to be reported as a result on real data.

Layout written under the dataset root::

    cropped_aligned/<video>/<frame:05d>.jpg        1-based; a few frames are deliberately absent
    annotations/VA_Set/Training_Set/<video>.txt    "valence,arousal" header, one "v,a" line per frame
    annotations/VA_Set/Validation_Set/<video>.txt  (invalid frames are "-5,-5")
    audio/<video>.wav                              16 kHz mono PCM_16, frames / fps seconds
    DEMO_DONE.json                                 written last: DEMO_VERSION and the DemoSpec

How V/A are encoded (and nothing else is): valence bends the mouth (smile / frown), slants the brows
(inner ends raised when negative), deepens the smile folds and pushes the lower lids up; arousal opens
the eyes (nearly closed to wide), drops the jaw, raises the brows and, in the audio, raises F0
(about 100 -> 260 Hz), loudness, spectral brightness and syllable rate. Valence is never put in the
audio. Identity (skin, face shape, eye spacing, hair, background, lighting), head pose and sensor noise
vary as nuisances so that a model must read the expression to generalise to unseen identities; the
validation split uses identities that never occur in training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np
import soundfile as sf

from data.errors import DataError

log = logging.getLogger(__name__)

DEMO_VERSION: int = 1  # bump when the generated content changes; part of the default folder name

MARKER = "DEMO_DONE.json"
_SPLIT_FOLDERS = {"train": "Training_Set", "val": "Validation_Set"}
# Everything a demo root may contain; anything else means the folder is not ours and must not be deleted.
_OWN_ENTRIES = frozenset({"cropped_aligned", "annotations", "audio", MARKER})
_PARTIAL_TAG = ".partial-"
_STALE_PARTIAL_S = 3600.0  # partial folders older than this are leftovers of killed runs
_INVALID = -5.0
_JPEG_QUALITY = 90

# Independent random streams per video, so that changing how one aspect is drawn never shifts another.
_SPLIT_ID = {"train": 0, "val": 1}
_STREAM_IDENTITY, _STREAM_VA, _STREAM_POSE, _STREAM_NOISE, _STREAM_AUDIO = 1, 2, 3, 4, 5
_STREAM_PLAN = 99

# Sub-pixel drawing: cv2 drawing functions take fixed-point coordinates with this many fractional bits,
# so that expression changes of a fraction of a pixel still change the (anti-aliased) image smoothly.
_SHIFT = 4
_FIX = float(1 << _SHIFT)
_AA = cv2.LINE_AA
_REF_SIZE = 112.0  # all geometry is designed at this size and scaled


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. Every field is part of the completeness marker: change one and it regenerates."""

    num_train: int = 96          # videos (= identities) in the training split
    num_val: int = 32            # videos (= identities) in the validation split
    frames: int = 75             # frames per video (labels per video)
    fps: int = 30
    size: int = 112              # face crop side in pixels
    sample_rate: int = 16000
    seed: int = 0


@dataclass(frozen=True)
class FaceIdentity:
    """Per-video appearance that does not carry affect; varied so models cannot shortcut on it.

    Geometry is in units of the image side (positions) or of the face's half-axes (features), so one
    identity renders consistently at any size. Colours are RGB tuples of ints.
    """

    skin: tuple[int, int, int]
    lip: tuple[int, int, int]
    hair: tuple[int, int, int]
    brow: tuple[int, int, int]
    iris: tuple[int, int, int]
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]
    center_x: float = 0.5        # face centre, fraction of the image side
    center_y: float = 0.53
    half_width: float = 0.30     # face half-axes, fraction of the image side
    half_height: float = 0.37
    chin_taper: float = 0.12     # how much narrower the lower face is than an ellipse
    eye_height: float = 0.16     # eyes above the face centre, fraction of half_height
    eye_spacing: float = 0.42    # eye centre offset from the midline, fraction of half_width
    eye_size: float = 0.22       # eye half-width, fraction of half_width
    brow_gap: float = 3.5        # brow-to-eye gap in reference pixels (at 112 px)
    brow_thickness: float = 2.5  # reference pixels
    nose_length: float = 0.62    # nose tip between eyes (0) and mouth (1)
    mouth_height: float = 0.47   # mouth below the face centre, fraction of half_height
    mouth_width: float = 0.37    # mouth half-width, fraction of half_width
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset, fraction of eye half-width
    hair_style: int = 0          # 0 short, 1 long, 2 fringe, 3 bald
    hairline: float = 0.62       # hairline above the face centre, fraction of half_height
    light_angle: float = 0.0     # direction the light comes from (radians)
    light_strength: float = 0.2  # brightness ratio across the image is (1+s)/(1-s)
    brightness: float = 1.0      # global exposure
    blur: float = 0.6            # optics blur sigma in reference pixels
    sensor_noise: float = 2.5    # per-frame Gaussian noise sigma (grey levels), applied by the generator


# --------------------------------------------------------------------------------------------------
# Public API: names and traces
# --------------------------------------------------------------------------------------------------


def default_demo_root() -> pathlib.Path:
    """$ALN_CACHE_DIR (if set) else ~/.cache/aln, joined with f"demo-v{DEMO_VERSION}".

    The version is in the folder name so that a toolkit upgrade that changes the content does not
    silently reuse (or destroy) data generated by an older version another checkout may still use.
    """
    base = os.environ.get("ALN_CACHE_DIR")
    cache = pathlib.Path(base).expanduser() if base else pathlib.Path.home() / ".cache" / "aln"
    return cache / f"demo-v{DEMO_VERSION}"


def video_names(spec: DemoSpec) -> dict[str, list[str]]:
    """Video names per split, e.g. ``{"train": ["demo_t01-30-112x112", ...], "val": ["demo_v01-...", ...]}``.

    Names follow Aff-Wild2's ``<id>-<fps>-<W>x<H>`` pattern so that the reader takes the frame rate from
    the name, exactly as it does for real data.
    """
    width = max(2, len(str(max(spec.num_train, spec.num_val, 1))))
    suffix = f"-{spec.fps}-{spec.size}x{spec.size}"
    return {
        "train": [f"demo_t{i + 1:0{width}d}{suffix}" for i in range(spec.num_train)],
        "val": [f"demo_v{i + 1:0{width}d}{suffix}" for i in range(spec.num_val)],
    }


def _smooth_curves(n: int, rng: np.random.Generator, dims: int, periods: tuple[float, float],
                   components: int = 3) -> np.ndarray:
    """(n, dims) sums of random low-frequency sinusoids, each column rescaled to max |x| = 1.

    Sinusoids with periods of several seconds are smooth by construction (bounded derivative), and
    normalising by the maximum guarantees every trace sweeps a large part of its range instead of
    hovering near zero, which is what makes a short demo learnable.
    """
    t = np.arange(n, dtype=np.float64)
    out = np.zeros((n, dims), np.float64)
    for d in range(dims):
        period = rng.uniform(*periods, size=components)
        phase = rng.uniform(0.0, 2.0 * np.pi, size=components)
        amp = rng.uniform(0.4, 1.0, size=components)
        x = (amp[None, :] * np.sin(2.0 * np.pi * t[:, None] / period[None, :] + phase[None, :])).sum(1)
        x -= x.mean()
        out[:, d] = x / max(float(np.abs(x).max()), 1e-9)
    return out


def va_traces(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 2) float32 smooth valence, arousal traces in [-1, 1] (column 0 valence, 1 arousal).

    Each dimension is drawn independently: three sinusoids with periods of 3-12 s at 30 fps plus a
    faint 1-2 s component for small fluctuations. Arousal is then decorrelated from valence within the
    trace (so a model cannot infer one from the other), each is scaled to a random peak of 0.85-1.0,
    shifted slightly off zero and clipped to [-0.95, 0.95].
    """
    if n_frames <= 0:
        return np.zeros((0, 2), np.float32)
    slow = _smooth_curves(n_frames, rng, 2, (90.0, 360.0), components=3)
    fast = _smooth_curves(n_frames, rng, 2, (30.0, 60.0), components=1)
    peak = rng.uniform(0.85, 1.0, size=2)
    offset = rng.uniform(-0.1, 0.1, size=2)
    va = 0.92 * slow + 0.08 * fast
    # Two smooth traces over a few seconds are often correlated by chance (|r| ~ 0.7 happens); remove
    # arousal's projection on valence so neither label can be read off the other's cues (the audio
    # carries arousal only, and must not predict valence through such a coincidence).
    centred = va - va.mean(axis=0)
    denom = float(centred[:, 0] @ centred[:, 0])
    if denom > 1e-12:
        va[:, 1] = centred[:, 1] - (float(centred[:, 0] @ centred[:, 1]) / denom) * centred[:, 0]
        va[:, 1] /= max(float(np.abs(va[:, 1]).max()), 1e-9)
    va = va * peak + offset
    return np.clip(va, -0.95, 0.95).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------------

_SKIN_RAMP = np.array([(250, 222, 200), (232, 188, 155), (205, 150, 112), (160, 106, 72), (102, 64, 44)],
                      np.float64)
_HAIR_COLOURS = [(22, 18, 18), (55, 38, 26), (100, 68, 40), (196, 160, 100), (140, 62, 30), (150, 148, 145)]
_IRIS_COLOURS = [(92, 56, 30), (58, 38, 24), (70, 110, 160), (78, 118, 80), (120, 96, 50)]


def _rgb(c) -> tuple[int, int, int]:
    c = np.clip(np.round(np.asarray(c, np.float64)), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one person and scene (appearance, geometry, lighting, sensor) from ``rng``.

    Ranges are wide enough that identity is a real nuisance, but bounded so that every expression cue
    stays visible (e.g. brows never under the fringe, mouth never off the chin).
    """
    t = rng.uniform(0.0, 1.0) * (len(_SKIN_RAMP) - 1)
    lo = int(min(math.floor(t), len(_SKIN_RAMP) - 2))
    skin = _SKIN_RAMP[lo] + (t - lo) * (_SKIN_RAMP[lo + 1] - _SKIN_RAMP[lo]) + rng.normal(0.0, 6.0, 3)
    skin = np.clip(skin, 30, 252)
    lip = skin * np.array([0.86, 0.6, 0.62]) + np.array([18.0, 0.0, 4.0])
    hair = np.array(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], np.float64) * rng.uniform(0.85, 1.15)
    brow = np.minimum(hair * 0.75, skin * 0.42)  # brows always clearly darker than the skin
    iris = np.array(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], np.float64)
    background = rng.uniform(25, 235, 3)
    shirt = rng.uniform(20, 235, 3)
    gx, gy = rng.uniform(-0.15, 0.15), rng.uniform(-0.08, 0.08)
    return FaceIdentity(
        skin=_rgb(skin), lip=_rgb(lip), hair=_rgb(hair), brow=_rgb(brow), iris=_rgb(iris),
        background=_rgb(background), shirt=_rgb(shirt),
        center_x=float(rng.uniform(0.47, 0.53)), center_y=float(rng.uniform(0.50, 0.55)),
        half_width=float(rng.uniform(0.27, 0.33)), half_height=float(rng.uniform(0.35, 0.40)),
        chin_taper=float(rng.uniform(0.05, 0.2)),
        eye_height=float(rng.uniform(0.12, 0.2)), eye_spacing=float(rng.uniform(0.37, 0.46)),
        eye_size=float(rng.uniform(0.2, 0.25)), brow_gap=float(rng.uniform(3.0, 4.5)),
        brow_thickness=float(rng.uniform(2.0, 3.2)), nose_length=float(rng.uniform(0.55, 0.68)),
        mouth_height=float(rng.uniform(0.44, 0.52)), mouth_width=float(rng.uniform(0.33, 0.42)),
        gaze=(float(gx), float(gy)), hair_style=int(rng.integers(4)),
        hairline=float(rng.uniform(0.6, 0.72)), light_angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        light_strength=float(rng.uniform(0.0, 0.3)), brightness=float(rng.uniform(0.85, 1.1)),
        blur=float(rng.uniform(0.4, 0.9)), sensor_noise=float(rng.uniform(1.0, 4.0)),
    )


@dataclass(frozen=True)
class _Layout:
    """Pixel positions of the face parts at pose (0, 0, 0); derived once per (identity, size)."""

    k: float          # scale relative to the 112 px reference
    cx: float
    cy: float
    a: float          # face half-width
    b: float          # face half-height
    eye_y: float
    eye_dx: float     # eye centre offset from the midline
    eye_w: float      # eye half-width
    eye_h: float      # eye half-height when wide open
    iris_r: float
    brow_gap: float
    nose_y: float
    mouth_y: float
    mouth_w: float


@lru_cache(maxsize=256)
def _face_layout(identity: FaceIdentity, size: int) -> _Layout:
    k = size / _REF_SIZE
    a, b = identity.half_width * size, identity.half_height * size
    cx, cy = identity.center_x * size, identity.center_y * size
    eye_y = cy - identity.eye_height * b
    mouth_y = cy + identity.mouth_height * b
    eye_w = identity.eye_size * a
    return _Layout(
        k=k, cx=cx, cy=cy, a=a, b=b, eye_y=eye_y, eye_dx=identity.eye_spacing * a, eye_w=eye_w,
        eye_h=0.7 * eye_w, iris_r=0.56 * eye_w, brow_gap=identity.brow_gap * k,
        nose_y=eye_y + identity.nose_length * (mouth_y - eye_y), mouth_y=mouth_y,
        mouth_w=identity.mouth_width * a,
    )


@lru_cache(maxsize=64)
def _lighting(identity: FaceIdentity, size: int) -> np.ndarray:
    """(size, size, 1) float32 gain: a linear light gradient times the exposure, cached per identity."""
    c = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / (size / 2.0)
    dx, dy = math.cos(identity.light_angle), math.sin(identity.light_angle)
    ramp = c[None, :] * dx + c[:, None] * dy
    gain = identity.brightness * (1.0 + identity.light_strength * np.clip(ramp, -1.0, 1.0))
    return gain[:, :, None].astype(np.float32)


_UNIT_CIRCLE = {n: (np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))) for n in (12, 20, 40)}
_HALF_T = np.linspace(0.0, np.pi, 11)
_HALF_COS, _HALF_SIN = np.cos(_HALF_T), np.sin(_HALF_T)


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 20) -> np.ndarray:
    cos, sin = _UNIT_CIRCLE[n]
    return np.stack([cx + ax * cos, cy + ay * sin], axis=1)


def _mix(c0: tuple[int, int, int], c1: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    r, g, b = (int(round(x0 + (x1 - x0) * t)) for x0, x1 in zip(c0, c1, strict=True))
    return r, g, b


@lru_cache(maxsize=4096)
def _scale(c: tuple[int, int, int], f: float | tuple[float, float, float]) -> tuple[int, int, int]:
    """Colour times a factor (per channel if a tuple); cached since identities reuse a few shades per frame."""
    return _rgb(np.asarray(c, np.float64) * np.asarray(f, np.float64))


class _Canvas:
    """Queues float polygons, then draws them through one affine pose transform in a single batch.

    Coordinates are converted to fixed point (sub-pixel, anti-aliased edges) for all shapes at once,
    which keeps per-frame Python/numpy overhead low enough to render ~10k frames in seconds.
    """

    def __init__(self, img: np.ndarray, matrix: np.ndarray):
        self.img = img
        self.rot = matrix[:, :2].T.copy()
        self.shift = matrix[:, 2].copy()
        self.ops: list[tuple[np.ndarray, tuple[int, int, int], int]] = []

    def fill(self, pts: np.ndarray, colour: tuple[int, int, int]) -> None:
        self.ops.append((pts, colour, -1))

    def line(self, pts: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
        self.ops.append((pts, colour, thickness))

    def flush(self) -> None:
        if not self.ops:
            return
        pts = np.concatenate([op[0] for op in self.ops])
        fixed = np.round((pts @ self.rot + self.shift) * _FIX).astype(np.int32)
        ends = np.cumsum([len(op[0]) for op in self.ops])
        begin = 0
        for (_, colour, thickness), end in zip(self.ops, ends.tolist(), strict=True):
            poly = fixed[begin:end]
            begin = end
            if thickness < 0:
                cv2.fillPoly(self.img, [poly], colour, _AA, _SHIFT)
            else:
                cv2.polylines(self.img, [poly], False, colour, thickness, _AA, _SHIFT)
        self.ops.clear()


def _pose_matrix(lay: _Layout, pose: tuple[float, float, float]) -> np.ndarray:
    tilt, dx, dy = pose
    m = cv2.getRotationMatrix2D((lay.cx, lay.cy + 0.6 * lay.b), float(tilt), 1.0)
    m[0, 2] += dx
    m[1, 2] += dy
    return m


def render_face(valence: float, arousal: float, identity: FaceIdentity, size: int,
                pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """(size, size, 3) uint8 RGB image of one face. pose = (tilt_degrees, dx_pixels, dy_pixels).

    Deterministic (no randomness inside): the generator adds sensor noise and JPEG compression. Every
    V/A-driven dimension is continuous and drawn with sub-pixel precision, so small label changes give
    small image changes, which is what a regressor needs to learn from.
    """
    v = float(np.clip(valence, -1.0, 1.0))
    o = float(np.clip((arousal + 1.0) / 2.0, 0.0, 1.0))  # arousal mapped to [0, 1]
    vp, vn = max(v, 0.0), max(-v, 0.0)
    idt, lay = identity, _face_layout(identity, size)
    k, cx, a, b = lay.k, lay.cx, lay.a, lay.b
    shapes = _static_shapes(identity, size)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = idt.background

    # Body: translated with the head but not tilted (the neck pivots under the chin).
    body = _Canvas(img, _pose_matrix(lay, (0.0, pose[1], pose[2])))
    body.ops.extend(shapes.body)
    body.flush()

    head = _Canvas(img, _pose_matrix(lay, pose))
    head.ops.extend(shapes.head)
    # Smile folds and cheek colour: appear only with positive valence (cheek raise).
    if vp > 0.02:
        fold = _mix(idt.skin, _scale(idt.skin, 0.72), 0.9 * vp)
        blush = _mix(idt.skin, _scale(idt.skin, (1.0, 0.8, 0.8)), 0.1 + 0.45 * vp)
        for s, cheek in zip((-1.0, 1.0), shapes.cheeks, strict=True):
            x0, y0 = cx + s * 0.3 * a, lay.nose_y - 0.02 * b
            x1, y1 = cx + s * (lay.mouth_w + 2.2 * k), lay.mouth_y - 0.28 * lay.mouth_w * v
            mid = (x0 + x1) / 2.0 + s * 0.07 * a, (y0 + y1) / 2.0
            head.line(np.array([[x0, y0], mid, [x1, y1]]), fold, max(1, round(1.2 * k)))
            head.fill(cheek, blush)
    _draw_eyes(head, lay, idt, vp, o, k)
    _draw_brows(head, lay, idt, vp, vn, o, k)
    head.ops.extend(shapes.nose)
    _draw_mouth(head, lay, idt, v, o, k)
    head.flush()

    sigma = idt.blur * k
    out = cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.05 else img
    lit = out.astype(np.float32) * _lighting(identity, size)
    return np.clip(lit, 0.0, 255.0).astype(np.uint8)


_Op = tuple[np.ndarray, tuple[int, int, int], int]  # (float points, RGB colour, thickness or -1 to fill)


@dataclass(frozen=True)
class _Shapes:
    """Expression-independent shapes of one identity in face coordinates (before the pose transform)."""

    body: list[_Op]
    head: list[_Op]      # hair behind, ears, head, hair on top
    nose: list[_Op]
    cheeks: tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=64)
def _static_shapes(identity: FaceIdentity, size: int) -> _Shapes:
    """Build once per (identity, size) what does not move with the expression; only the pose varies."""
    idt, lay = identity, _face_layout(identity, size)
    k, cx, cy, a, b = lay.k, lay.cx, lay.cy, lay.a, lay.b
    skin, hair = idt.skin, idt.hair
    body: list[_Op] = [
        (np.array([[cx - 0.4 * a, cy + 0.5 * b], [cx + 0.4 * a, cy + 0.5 * b],
                   [cx + 0.48 * a, size + 2.0], [cx - 0.48 * a, size + 2.0]]), _scale(skin, 0.85), -1),
        (_ellipse(cx, cy + b + 0.62 * a + 0.5 * b, 1.9 * a, 0.55 * b + 0.62 * a, 40), idt.shirt, -1),
    ]
    head: list[_Op] = []
    style = idt.hair_style
    if style == 1:  # long hair falls behind the head down to the shoulders
        head.append((_ellipse(cx, cy - 0.1 * b, 1.14 * a, 1.0 * b, 40), hair, -1))
        head.append((np.array([[cx - 1.14 * a, cy - 0.1 * b], [cx + 1.14 * a, cy - 0.1 * b],
                               [cx + 1.2 * a, cy + 1.05 * b], [cx - 1.2 * a, cy + 1.05 * b]]), hair, -1))
    elif style in (0, 2):
        head.append((_ellipse(cx, cy - 0.1 * b, 1.07 * a, 0.98 * b, 40), hair, -1))

    # Ears, then the head: a darker rim under a slightly smaller fill reads as shading at the jaw line.
    ear_y = lay.eye_y + 0.18 * b
    for s in (-1.0, 1.0):
        head.append((_ellipse(cx + s * 0.97 * a, ear_y, 0.15 * a, 0.2 * b, 12), _scale(skin, 0.88), -1))
    cos, sin = _UNIT_CIRCLE[40]
    taper = 1.0 - idt.chin_taper * np.clip(sin, 0.0, None) ** 2
    head.append((np.stack([cx + a * cos * taper, cy + b * sin], axis=1), _scale(skin, 0.86), -1))
    head.append((np.stack([cx + 0.93 * a * cos * taper, cy - 0.02 * b + 0.95 * b * sin], axis=1), skin, -1))

    # Hair on top of the head, never reaching the brows whatever the arousal.
    if style != 3:
        hl_y = cy - idt.hairline * b
        xs = np.linspace(1.05, -1.05, 15)
        hairline = np.stack([cx + xs * a, hl_y + (cy - 0.12 * b - hl_y) * np.abs(xs / 1.05) ** 4], axis=1)
        if style == 2:  # fringe: a zig-zag lower edge
            hairline[1:-1:2, 1] += 1.8 * k
        t = np.linspace(np.pi, 2.0 * np.pi, 21)
        top = np.stack([cx + 1.05 * a * np.cos(t), cy - 0.12 * b + 1.12 * b * np.sin(t)], axis=1)
        head.append((np.concatenate([top, hairline]), hair, -1))

    # Nose: a shaded bridge line, a tip arc and two nostrils.
    nose: list[_Op] = [
        (np.array([[cx + 0.04 * a, lay.eye_y + 0.05 * b], [cx + 0.1 * a, lay.nose_y - 0.05 * b]]),
         _scale(skin, 0.76), 1),
        (np.stack([cx - 0.17 * a * _HALF_COS, lay.nose_y + 0.05 * b * _HALF_SIN], axis=1), _scale(skin, 0.7), 1),
    ]
    for s in (-1.0, 1.0):
        nose.append((_ellipse(cx + s * 0.08 * a, lay.nose_y + 0.01 * b, 0.045 * a, 0.022 * b, 12),
                     _scale(skin, 0.42), -1))
    cheeks = tuple(_ellipse(cx + s * 0.55 * a, cy + 0.14 * b, 0.17 * a, 0.09 * b, 12) for s in (-1.0, 1.0))
    return _Shapes(body=body, head=head, nose=nose, cheeks=cheeks)


def _draw_eyes(head: _Canvas, lay: _Layout, idt: FaceIdentity, vp: float, o: float, k: float) -> None:
    """Eye aperture follows arousal (upper lid from nearly shut to wide open); smiles lift the lower lid."""
    ew, hmax, r = lay.eye_w, lay.eye_h, lay.iris_r
    upper_h = hmax * (0.07 + 0.93 * o ** 0.85)
    lower_h = hmax * (0.3 + 0.22 * o) * (1.0 - 0.45 * vp)
    lash = max(1, round(1.4 * k))
    for s in (-1.0, 1.0):
        ex, ey = lay.cx + s * lay.eye_dx, lay.eye_y
        xs = ex - ew * _HALF_COS  # left to right
        upper = np.stack([xs, ey - upper_h * _HALF_SIN], axis=1)
        lower = np.stack([xs, ey + lower_h * _HALF_SIN], axis=1)
        head.fill(np.concatenate([upper, lower[::-1]]), (238, 236, 230))
        ix, iy = ex + idt.gaze[0] * ew, ey + idt.gaze[1] * ew
        head.fill(_ellipse(ix, iy, r, r), idt.iris)
        pr = r * (0.42 + 0.12 * o)
        head.fill(_ellipse(ix, iy, pr, pr, 12), (12, 10, 10))
        head.fill(_ellipse(ix - 0.35 * r, iy - 0.35 * r, 0.22 * r, 0.22 * r, 12), (250, 250, 250))
        # Eyelids: repaint skin outside the aperture, which clips iris and highlight to the open eye.
        top, bot = ey - r - 2.0 * k - abs(idt.gaze[1]) * ew, ey + r + 2.0 * k + abs(idt.gaze[1]) * ew
        x0, x1 = ex - ew - 0.6 * k, ex + ew + 0.6 * k
        head.fill(np.concatenate([upper, [[x1, ey], [x1, top], [x0, top], [x0, ey]]]), idt.skin)
        head.fill(np.concatenate([lower, [[x1, ey], [x1, bot], [x0, bot], [x0, ey]]]), idt.skin)
        crease = np.stack([xs, ey - (hmax + 1.2 * k) * _HALF_SIN ** 0.7], axis=1)
        head.line(crease[1:-1], _scale(idt.skin, 0.8), 1)
        head.line(upper, (28, 20, 20), lash)
        head.line(lower, _scale(idt.skin, 0.7), 1)


def _draw_brows(head: _Canvas, lay: _Layout, idt: FaceIdentity, vp: float, vn: float, o: float,
                k: float) -> None:
    """Brows rise with arousal; their inner ends rise with negative valence (sad) and sink a bit with joy."""
    ew = lay.eye_w
    base = lay.eye_y - lay.eye_h - lay.brow_gap - (o - 0.5) * 6.4 * k
    inner_dy = (-4.0 * vn + 1.5 * vp) * k
    thick = max(1, round(idt.brow_thickness * k))
    for s in (-1.0, 1.0):
        ex = lay.cx + s * lay.eye_dx
        pts = np.array([
            [ex - s * 0.85 * ew, base + inner_dy],
            [ex - s * 0.3 * ew, base - 1.0 * k + 0.55 * inner_dy],
            [ex + s * 0.45 * ew, base - 1.5 * k + 0.2 * inner_dy],
            [ex + s * 1.15 * ew, base + 0.8 * k],
        ])
        head.line(pts, idt.brow, thick)


def _draw_mouth(head: _Canvas, lay: _Layout, idt: FaceIdentity, v: float, o: float, k: float) -> None:
    """Mouth corners rise with valence (smile) and fall when negative (frown); the jaw drops with arousal."""
    mw0 = lay.mouth_w
    mw = mw0 * (1.0 + 0.12 * v + 0.05 * o)
    corner_y = lay.mouth_y - 0.4 * mw0 * v
    opening = 0.62 * mw0 * o ** 1.6
    upper_c, lower_c = lay.mouth_y - 0.25 * opening, lay.mouth_y + 0.75 * opening
    x = lay.cx + mw * np.linspace(-1.0, 1.0, 15)
    q = 1.0 - np.linspace(-1.0, 1.0, 15) ** 2
    sq = np.sqrt(q)
    upper = corner_y + (upper_c - corner_y) * q
    lower = corner_y + (lower_c - corner_y) * q
    upper_outer = upper - 0.17 * mw0 * sq
    lower_outer = lower + 0.24 * mw0 * sq
    xy = lambda ys: np.stack([x, ys], axis=1)  # noqa: E731
    head.fill(np.concatenate([xy(lower), xy(lower_outer)[::-1]]), _scale(idt.lip, 1.06))
    head.fill(np.concatenate([xy(upper_outer), xy(upper)[::-1]]), idt.lip)
    if opening > 0.3 * k:
        head.fill(np.concatenate([xy(upper), xy(lower)[::-1]]), (58, 18, 22))
        if opening > 1.0 * k:
            teeth = np.minimum(upper + min(0.4 * opening, 0.2 * mw0) * sq, lower)
            head.fill(np.concatenate([xy(upper), xy(teeth)[::-1]]), (236, 232, 222))
    head.line(xy(0.5 * (upper + lower)), _scale(idt.lip, 0.45), 1)


# --------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------


def synth_audio(arousal_per_frame: np.ndarray, fps: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 mono waveform in [-1,1] of length round(len/fps*sample_rate); voiced speech-like sound.

    Only arousal drives it, as in real speech where arousal is well heard and valence barely is:
    F0 goes from about 100 Hz (calm) to 260 Hz (excited), level rises by ~18 dB, the spectrum gets
    brighter and syllables faster. It is a harmonic source (so openSMILE's eGeMAPS detects voicing)
    shaped by vowel-like formants, amplitude-modulated into 3-5 Hz syllables with short pauses, plus a
    little noise. Per-sample arousal is interpolated linearly from the per-frame values.
    """
    ar = np.asarray(arousal_per_frame, np.float64).reshape(-1)
    n = int(round(len(ar) / fps * sample_rate))
    if n == 0:
        return np.zeros(0, np.float32)
    t = np.arange(n, dtype=np.float64) / sample_rate
    frame_t = (np.arange(len(ar)) + 0.5) / fps
    o = np.clip((np.interp(t, frame_t, ar) + 1.0) / 2.0, 0.0, 1.0)

    # Pitch: arousal sets the register; slow intonation wobbles of a few percent make it speech-like.
    f_int, f_phase = rng.uniform(0.4, 1.2), rng.uniform(0.0, 2.0 * np.pi)
    f0 = (100.0 + 160.0 * o) * (1.0 + 0.035 * np.sin(2.0 * np.pi * f_int * t + f_phase))
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    syl_rate = rng.uniform(3.0, 4.0) + 1.0 * o  # syllables per second, faster when excited
    syl_phase = np.cumsum(syl_rate) / sample_rate

    # Harmonic amplitudes change slowly, so compute them on a 5 ms control grid and interpolate:
    # a spectral slope that flattens (brighter voice) with arousal, times vowel-like formants F1/F2
    # that move from syllable to syllable. Normalised so the level is set by `level` alone.
    hop = max(1, sample_rate // 200)
    ctl = np.arange(0, n + hop, hop)
    ctl_t = np.minimum(ctl, n - 1)
    n_syl = int(syl_phase[-1]) + 2
    f1 = rng.uniform(300.0, 800.0, n_syl)[syl_phase[ctl_t].astype(np.int64)]
    f2 = rng.uniform(900.0, 2200.0, n_syl)[syl_phase[ctl_t].astype(np.int64)]
    harmonics = np.arange(1, 11, dtype=np.float64)[:, None]
    fh = harmonics * f0[ctl_t][None, :]
    amp = harmonics ** -(1.5 - 0.6 * o[ctl_t])[None, :] * (
        0.35 + np.exp(-(((fh - f1) / 180.0) ** 2)) + 0.6 * np.exp(-(((fh - f2) / 250.0) ** 2)))
    amp = np.where(fh < 0.45 * sample_rate, amp, 0.0)
    amp /= amp.sum(axis=0, keepdims=True) * 0.6
    # sin(h * phase) by the Chebyshev recurrence sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x).
    idx = np.arange(n, dtype=np.float64)
    two_cos, s_prev, s_cur = 2.0 * np.cos(phase), np.zeros(n), np.sin(phase)
    voice = np.zeros(n, np.float64)
    for h in range(amp.shape[0]):
        voice += np.interp(idx, ctl, amp[h]) * s_cur
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev

    # Syllables: raised-cosine bursts that never fully close (voicing continues through them) ...
    env = 0.3 + 0.7 * (0.5 - 0.5 * np.cos(2.0 * np.pi * syl_phase)) ** 0.8
    # ... and short pauses (0.15-0.35 s every 1.2-3 s) with 20 ms ramps, as between phrases.
    gate = np.ones(n, np.float64)
    pos = rng.uniform(0.6, 2.0)
    while pos < t[-1]:
        length = rng.uniform(0.15, 0.35)
        gate[int(pos * sample_rate):int((pos + length) * sample_rate)] = 0.0
        pos += length + rng.uniform(1.2, 3.0)
    ramp = max(1, int(0.02 * sample_rate))
    gate = np.convolve(gate, np.ones(ramp) / ramp, mode="same")

    level = 10.0 ** ((-24.0 + 18.0 * o) / 20.0)  # about 0.06 (calm) to 0.5 (excited)
    wave = level * env * gate * voice
    wave += 0.004 * rng.standard_normal(n) + 0.01 * level * gate * rng.standard_normal(n)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Dataset generation
# --------------------------------------------------------------------------------------------------


def _rng(spec: DemoSpec, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, _SPLIT_ID[split], index, stream])


def _corruption_plan(spec: DemoSpec) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Which frames are labelled invalid (-5) and which images are absent, per (split, video index).

    Mimics Aff-Wild2: in about a quarter of the videos one run of 3-10 consecutive frames has invalid
    labels (images present), and in about a quarter 2-5 frames with *valid* labels have no image (no
    face detected). At least one video of each kind exists whenever there is a video, so readers'
    skip paths are always exercised. Returns 0-based frame indices (invalid, missing) per video.
    """
    keys = [(split, i) for split, n in (("train", spec.num_train), ("val", spec.num_val)) for i in range(n)]
    plan = {key: (np.zeros(0, np.int64), np.zeros(0, np.int64)) for key in keys}
    if not keys or spec.frames <= 0:
        return plan
    rng = np.random.default_rng([spec.seed, _STREAM_PLAN])
    count = max(1, round(len(keys) / 4))
    with_invalid = set(rng.choice(len(keys), count, replace=False).tolist())
    with_missing = set(rng.choice(len(keys), count, replace=False).tolist())
    for j, key in enumerate(keys):
        invalid = np.zeros(0, np.int64)
        if j in with_invalid:
            length = min(int(rng.integers(3, 11)), max(1, spec.frames // 3))
            start = int(rng.integers(0, spec.frames - length + 1))
            invalid = np.arange(start, start + length, dtype=np.int64)
        missing = np.zeros(0, np.int64)
        if j in with_missing:
            candidates = np.setdiff1d(np.arange(spec.frames), invalid)
            count_missing = min(int(rng.integers(2, 6)), max(0, len(candidates) - 1))
            missing = np.sort(rng.choice(candidates, count_missing, replace=False)).astype(np.int64)
        plan[key] = (invalid, missing)
    return plan


def _write_video(tmp: pathlib.Path, spec: DemoSpec, split: str, index: int, name: str,
                 invalid: np.ndarray, missing: np.ndarray) -> None:
    """Render, label and voice one video into the partial dataset folder."""
    identity = sample_identity(_rng(spec, split, index, _STREAM_IDENTITY))
    va = va_traces(spec.frames, _rng(spec, split, index, _STREAM_VA))

    pose_rng = _rng(spec, split, index, _STREAM_POSE)
    k = spec.size / _REF_SIZE
    smooth = _smooth_curves(spec.frames, pose_rng, 3, (60.0, 240.0), components=2)
    jitter = pose_rng.normal(0.0, 0.25, (spec.frames, 2))
    tilt = smooth[:, 0] * pose_rng.uniform(4.0, 10.0)
    shift = np.clip(smooth[:, 1:] * pose_rng.uniform(1.5, 2.7, 2) + jitter, -3.0, 3.0) * k

    labels = [f"{v:.6f},{a:.6f}" for v, a in va.tolist()]
    for i in invalid.tolist():
        labels[i] = "-5,-5"
    ann = tmp / "annotations" / "VA_Set" / _SPLIT_FOLDERS[split] / f"{name}.txt"
    ann.write_text("valence,arousal\n" + "\n".join(labels) + "\n", encoding="utf-8", newline="\n")

    image_dir = tmp / "cropped_aligned" / name
    image_dir.mkdir()
    skip = set(missing.tolist())
    # Sensor noise: a random window of one larger Gaussian field per frame. Drawing a fresh field per
    # frame costs more than rendering the face; shifted windows are just as useless to memorise.
    noise_rng = _rng(spec, split, index, _STREAM_NOISE)
    n = spec.size
    field = noise_rng.standard_normal((2 * n, 2 * n, 3), dtype=np.float32) * np.float32(identity.sensor_noise)
    offsets = noise_rng.integers(0, n + 1, size=(spec.frames, 2))
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    for f in range(spec.frames):
        if f in skip:
            continue
        rgb = render_face(float(va[f, 0]), float(va[f, 1]), identity, spec.size,
                          (float(tilt[f]), float(shift[f, 0]), float(shift[f, 1])))
        oy, ox = offsets[f]
        noisy = rgb.astype(np.float32) + field[oy:oy + n, ox:ox + n]
        bgr = cv2.cvtColor(np.clip(noisy, 0.0, 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, params)
        if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on a valid uint8 image
            raise RuntimeError(f"JPEG encoding failed for {name} frame {f + 1}")
        buf.tofile(str(image_dir / f"{f + 1:05d}.jpg"))

    audio = synth_audio(va[:, 1], spec.fps, spec.sample_rate, _rng(spec, split, index, _STREAM_AUDIO))
    sf.write(str(tmp / "audio" / f"{name}.wav"), audio, spec.sample_rate, subtype="PCM_16", format="WAV")


def _marker_content(spec: DemoSpec) -> dict:
    return {"demo_version": DEMO_VERSION, "spec": asdict(spec)}


def _is_complete(root: pathlib.Path, spec: DemoSpec) -> bool:
    """True if ``root`` holds a finished dataset for exactly this spec and version."""
    try:
        found = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = _marker_content(spec)
    return isinstance(found, dict) and all(found.get(key) == value for key, value in expected.items())


def _validate(spec: DemoSpec) -> None:
    if spec.num_train < 1 or spec.num_val < 0:
        raise ValueError(f"DemoSpec needs num_train >= 1 and num_val >= 0, got {spec.num_train}, {spec.num_val}")
    if spec.frames < 1 or spec.fps < 1:
        raise ValueError(f"DemoSpec needs frames >= 1 and fps >= 1, got {spec.frames}, {spec.fps}")
    if spec.size < 32:
        raise ValueError(f"DemoSpec.size must be >= 32 pixels to draw a face, got {spec.size}")
    if spec.sample_rate < 8000:
        raise ValueError(f"DemoSpec.sample_rate must be >= 8000 Hz, got {spec.sample_rate}")


def _remove_stale(root: pathlib.Path) -> None:
    """Delete an incomplete or outdated demo folder, refusing anything that does not look like one.

    The root may come from a config or an environment variable; a typo must never wipe user data,
    so only a folder holding nothing but demo entries is deleted.
    """
    if root.is_symlink() or not root.is_dir():
        raise DataError(f"{root}: exists but is not a demo dataset folder; remove it or choose another root")
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _OWN_ENTRIES)
    if foreign:
        raise DataError(f"{root}: not a demo dataset (contains {', '.join(foreign[:3])}); refusing to delete it, "
                        "remove it yourself or choose another root")
    log.info("Removing outdated or incomplete demo dataset %s", root)
    try:
        shutil.rmtree(root)
    except FileNotFoundError:  # a concurrent run removed it first
        pass


def _clean_old_partials(root: pathlib.Path) -> None:
    """Remove partial folders that killed runs left next to ``root`` (only old ones: others may be live)."""
    now = time.time()
    for p in root.parent.glob(f".{root.name}{_PARTIAL_TAG}*"):
        try:
            if p.is_dir() and not p.is_symlink() and now - p.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def ensure_demo_dataset(root: pathlib.Path | str | None = None, spec: DemoSpec = DemoSpec()) -> pathlib.Path:  # noqa: B008
    """Generate the dataset into ``root`` (default_demo_root() if None) unless it is already complete; return root.

    Complete means ``root/DEMO_DONE.json`` holds DEMO_VERSION and ``asdict(spec)``. The dataset is
    written into a temporary sibling folder, the marker last, and renamed into place, so a run killed
    mid-generation never leaves a half-written folder that looks complete. An existing root with
    another spec/version or without a marker is removed and regenerated (after checking that it holds
    only demo entries, so a mistyped root cannot delete user data). If another process installs the
    same dataset concurrently, its copy is kept and ours discarded.

    Raises:
        ValueError: ``spec`` cannot be generated (e.g. no training videos, images under 32 px).
        DataError: ``root`` exists but is not a demo dataset folder.
    """
    _validate(spec)
    root = default_demo_root() if root is None else pathlib.Path(root).expanduser()
    if _is_complete(root, spec):
        log.debug("Demo dataset already complete at %s", root)
        return root
    if root.exists() or root.is_symlink():
        _remove_stale(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_old_partials(root)

    start = time.perf_counter()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}{_PARTIAL_TAG}", dir=root.parent))
    try:
        for folder in _SPLIT_FOLDERS.values():
            (tmp / "annotations" / "VA_Set" / folder).mkdir(parents=True)
        (tmp / "cropped_aligned").mkdir()
        (tmp / "audio").mkdir()
        plan = _corruption_plan(spec)
        for split, names in video_names(spec).items():
            for index, name in enumerate(names):
                _write_video(tmp, spec, split, index, name, *plan[(split, index)])
        (tmp / MARKER).write_text(json.dumps(_marker_content(spec), indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is ordinary shared data
        try:
            os.replace(tmp, root)
        except OSError:
            if not _is_complete(root, spec):  # not a concurrent twin that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_videos = spec.num_train + spec.num_val
    log.info("Generated synthetic demo dataset (%d videos x %d frames, demo v%d) in %s in %.1f s",
             n_videos, spec.frames, DEMO_VERSION, root, time.perf_counter() - start)
    return root


__all__ = [
    "DEMO_VERSION", "DemoSpec", "FaceIdentity", "default_demo_root", "ensure_demo_dataset", "render_face",
    "sample_identity", "synth_audio", "va_traces", "video_names",
]


def _contact_sheet(path: str | os.PathLike, size: int = 112, seed: int = 0) -> None:  # pragma: no cover
    """Write a PNG grid (identities x V/A corners) for eyeballing the renderer; a development aid."""
    grid = [(-0.9, -0.9), (-0.9, 0.9), (0.0, 0.0), (0.9, -0.9), (0.9, 0.9)]
    rows = []
    for i in range(6):
        identity = sample_identity(np.random.default_rng([seed, i]))
        rows.append(np.concatenate([render_face(v, a, identity, size) for v, a in grid], axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))

