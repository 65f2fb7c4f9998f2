"""Procedurally drawn faces whose expression follows valence and arousal, and nothing else does.

How V/A are encoded: valence bends the mouth (smile / frown), slants the brows (inner ends raised when
negative), deepens the smile folds and pushes the lower lids up; arousal opens the eyes (nearly closed to
wide), drops the jaw and raises the brows. Identity (skin, face shape, eye spacing, hair, background,
lighting), head pose and sensor noise vary as nuisances so that a model must read the expression to
generalise to unseen identities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Sub-pixel drawing: cv2 drawing functions take fixed-point coordinates with this many fractional bits,
# so that expression changes of a fraction of a pixel still change the (anti-aliased) image smoothly.
_SHIFT = 4
_FIX = float(1 << _SHIFT)
_AA = cv2.LINE_AA
REF_SIZE = 112.0  # all geometry is designed at this size and scaled


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
    k = size / REF_SIZE
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
