"""Tests for the synthetic demo dataset (data/datasets/demo/).

They check behaviour a training run relies on: the exact Aff-Wild2 layout the readers parse, byte-level
determinism, safe caching (idempotent, regenerates when stale, never half-written), the deliberate
invalid labels and missing frames, and that faces and audio really encode valence/arousal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import cv2
import numpy as np
import pytest
import soundfile as sf

from data.datasets import demo
from data.datasets.demo import (
    DEMO_VERSION,
    DemoSpec,
    default_demo_root,
    ensure_demo_dataset,
    face_drawing,
    render_face,
    sample_identity,
    synth_audio,
    va_traces,
    video_names,
    writer,
)
from data.errors import DataError

SMALL = DemoSpec(num_train=3, num_val=2, frames=40)
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> pathlib.Path:
    return ensure_demo_dataset(tmp_path_factory.mktemp("demo") / "root", SMALL)


def _labels(path: pathlib.Path) -> tuple[str, np.ndarray]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], np.array([[float(x) for x in ln.split(",")] for ln in lines[1:]])


def _annotation(root: pathlib.Path, split: str, name: str) -> pathlib.Path:
    folder = {"train": "Training_Set", "val": "Validation_Set"}[split]
    return root / "annotations" / "VA_Set" / folder / f"{name}.txt"


def _all_videos(spec: DemoSpec) -> list[tuple[str, str]]:
    return [(split, name) for split, names in video_names(spec).items() for name in names]


# ------------------------------------------------------------------------------------------ layout


def test_layout_matches_affwild2(small_root):
    assert json.loads((small_root / "DEMO_DONE.json").read_text()) == {
        "demo_version": DEMO_VERSION, "spec": dataclasses.asdict(SMALL)}
    assert sorted(p.name for p in small_root.iterdir()) == ["DEMO_DONE.json", "annotations", "audio",
                                                           "cropped_aligned"]
    videos = _all_videos(SMALL)
    assert len(videos) == 5
    assert sorted(p.name for p in (small_root / "cropped_aligned").iterdir()) == sorted(n for _, n in videos)
    for split, name in videos:
        header, labels = _labels(_annotation(small_root, split, name))
        assert header == "valence,arousal"
        assert labels.shape == (SMALL.frames, 2)
        valid = (labels != -5).all(axis=1)
        assert np.all(np.abs(labels[valid]) <= 1.0) and np.all(labels[~valid] == -5)

        images = sorted((small_root / "cropped_aligned" / name).iterdir())
        assert images and all(p.suffix == ".jpg" and len(p.stem) == 5 for p in images)
        numbers = [int(p.stem) for p in images]
        assert min(numbers) >= 1 and max(numbers) <= SMALL.frames and len(set(numbers)) == len(numbers)
        for p in images[:: max(1, len(images) // 4)]:
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            assert img is not None and img.shape == (SMALL.size, SMALL.size, 3) and img.dtype == np.uint8

        info = sf.info(str(small_root / "audio" / f"{name}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == round(SMALL.frames / SMALL.fps * SMALL.sample_rate)


def test_annotation_lines_are_six_decimal_pairs(small_root):
    split, name = _all_videos(SMALL)[0]
    for line in _annotation(small_root, split, name).read_text().splitlines()[1:]:
        if line != "-5,-5":
            v, a = line.split(",")
            assert len(v.split(".")[1]) == 6 and len(a.split(".")[1]) == 6


def test_video_names_carry_fps_and_size():
    names = video_names(DemoSpec())
    assert names["train"][0] == "demo_t01-30-112x112" and names["val"][0] == "demo_v01-30-112x112"
    assert len(names["train"]) == 96 and len(names["val"]) == 32
    assert len(set(names["train"]) | set(names["val"])) == 128
    assert video_names(DemoSpec(num_train=120, fps=25, size=64))["train"][-1] == "demo_t120-25-64x64"


def test_default_root_honours_cache_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ALN_CACHE_DIR", str(tmp_path))
    assert default_demo_root() == tmp_path / f"demo-v{DEMO_VERSION}"
    monkeypatch.delenv("ALN_CACHE_DIR")
    assert default_demo_root() == pathlib.Path.home() / ".cache" / "aln" / f"demo-v{DEMO_VERSION}"


def test_real_reader_indexes_the_demo(small_root):
    affwild2 = pytest.importorskip("data.datasets.affwild2")
    records, report = affwild2.index_split(small_root, "train")
    assert [r.name for r in records] == video_names(SMALL)["train"]
    assert all(r.fps == SMALL.fps and r.n_frames == SMALL.frames and r.audio is not None for r in records)
    records_val, _ = affwild2.index_split(small_root, "val")
    assert len(records_val) == SMALL.num_val
    assert report.valid_labels > 0


# ------------------------------------------------------------------------------------ determinism


def test_generation_is_deterministic(small_root, tmp_path):
    other = ensure_demo_dataset(tmp_path / "again", SMALL)
    for split, name in _all_videos(SMALL):
        assert _annotation(small_root, split, name).read_bytes() == _annotation(other, split, name).read_bytes()
        wav = pathlib.Path("audio") / f"{name}.wav"
        assert (small_root / wav).read_bytes() == (other / wav).read_bytes()
        a_dir, b_dir = small_root / "cropped_aligned" / name, other / "cropped_aligned" / name
        assert sorted(os.listdir(a_dir)) == sorted(os.listdir(b_dir))
        for f in sorted(os.listdir(a_dir)):
            assert np.array_equal(cv2.imread(str(a_dir / f)), cv2.imread(str(b_dir / f)))


def test_seed_changes_content(small_root, tmp_path):
    other = ensure_demo_dataset(tmp_path / "seed1", dataclasses.replace(SMALL, seed=1))
    split, name = _all_videos(SMALL)[0]
    assert _annotation(small_root, split, name).read_bytes() != _annotation(other, split, name).read_bytes()


# ------------------------------------------------------------------------------------ caching


def _mtimes(root: pathlib.Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_complete_folder_is_not_rewritten(tmp_path):
    root = ensure_demo_dataset(tmp_path / "d", SMALL)
    before = _mtimes(root)
    assert ensure_demo_dataset(str(root), SMALL) == root  # str roots are accepted
    assert _mtimes(root) == before


def test_other_spec_regenerates(tmp_path):
    root = ensure_demo_dataset(tmp_path / "d", SMALL)
    spec = dataclasses.replace(SMALL, frames=30, num_val=1)
    assert ensure_demo_dataset(root, spec) == root
    marker = json.loads((root / "DEMO_DONE.json").read_text())
    assert marker["spec"] == dataclasses.asdict(spec)
    split, name = _all_videos(spec)[0]
    assert _labels(_annotation(root, split, name))[1].shape == (30, 2)
    assert len(list((root / "audio").iterdir())) == 4  # stale videos of the old spec are gone


def test_folder_without_marker_is_regenerated(tmp_path):
    root = ensure_demo_dataset(tmp_path / "d", SMALL)
    split, name = _all_videos(SMALL)[0]
    good = _annotation(root, split, name).read_bytes()
    (root / "DEMO_DONE.json").unlink()
    _annotation(root, split, name).write_text("valence,arousal\n")  # a half-written file
    ensure_demo_dataset(root, SMALL)
    assert (root / "DEMO_DONE.json").is_file()
    assert _annotation(root, split, name).read_bytes() == good


def test_old_version_marker_is_regenerated(tmp_path):
    root = ensure_demo_dataset(tmp_path / "d", SMALL)
    marker = root / "DEMO_DONE.json"
    marker.write_text(json.dumps({"demo_version": DEMO_VERSION - 1, "spec": dataclasses.asdict(SMALL)}))
    ensure_demo_dataset(root, SMALL)
    assert json.loads(marker.read_text())["demo_version"] == DEMO_VERSION


def test_refuses_to_delete_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="refusing"):
        ensure_demo_dataset(root, SMALL)
    assert (root / "thesis.tex").read_text() == "precious"


def test_killed_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = writer._write_video

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "_write_video", dying)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_dataset(tmp_path / "d", SMALL)
    assert list(tmp_path.iterdir()) == []  # neither the root nor a partial sibling remains
    monkeypatch.setattr(writer, "_write_video", real)
    assert (ensure_demo_dataset(tmp_path / "d", SMALL) / "DEMO_DONE.json").is_file()


def test_invalid_spec_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        ensure_demo_dataset(tmp_path / "d", DemoSpec(num_train=0))
    with pytest.raises(ValueError):
        ensure_demo_dataset(tmp_path / "d", DemoSpec(size=16))
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------- invalid labels, missing frames


def test_invalid_runs_and_missing_frames_on_disk(small_root):
    runs, missing_total = 0, 0
    for split, name in _all_videos(SMALL):
        _, labels = _labels(_annotation(small_root, split, name))
        invalid = np.flatnonzero((labels == -5).all(axis=1))
        if len(invalid):
            runs += 1
            assert 3 <= len(invalid) <= 10 and np.all(np.diff(invalid) == 1)  # one consecutive run
        present = {int(p.stem) for p in (small_root / "cropped_aligned" / name).iterdir()}
        absent = sorted(set(range(1, SMALL.frames + 1)) - present)
        if absent:
            missing_total += 1
            assert 2 <= len(absent) <= 5
            assert all((labels[f - 1] != -5).all() for f in absent)  # missing frames have valid labels
        for f in invalid + 1:
            assert int(f) in present  # invalid-label frames keep their image
    assert runs >= 1 and missing_total >= 1


def test_corruption_plan_for_default_spec():
    spec = DemoSpec()
    plan, again = writer._corruption_plan(spec), writer._corruption_plan(spec)
    assert plan.keys() == again.keys()
    assert all(np.array_equal(plan[k][i], again[k][i]) for k in plan for i in (0, 1))
    with_invalid = [k for k, (inv, _) in plan.items() if len(inv)]
    with_missing = [k for k, (_, mis) in plan.items() if len(mis)]
    assert len(with_invalid) == len(with_missing) == 32  # a quarter of 128 videos
    for invalid, missing in plan.values():
        if len(invalid):
            assert 3 <= len(invalid) <= 10 and np.all(np.diff(invalid) == 1)
        if len(missing):
            assert 2 <= len(missing) <= 5 and not set(missing) & set(invalid)
        assert np.all((invalid >= 0) & (invalid < spec.frames)) and np.all((missing >= 0) & (missing < spec.frames))


# ------------------------------------------------------------------------------ faces encode V/A


def _identities(n: int = 6) -> list[demo.FaceIdentity]:
    """Varied identities with neutral lighting, so that colour thresholds below mean the same for all."""
    return [dataclasses.replace(sample_identity(np.random.default_rng(seed)), light_strength=0.0, brightness=1.0)
            for seed in range(n)]


def _mouth_lift(img: np.ndarray, identity, size: int) -> float:
    """How much higher (px) the dark mouth line sits at the corners than at the centre (> 0 = smile)."""
    lay = face_drawing._face_layout(identity, size)
    darkness = np.clip(float(np.asarray(identity.skin) @ LUMA) - img.astype(float) @ LUMA - 15.0, 0.0, None)
    ys, xs = np.arange(size), np.abs(np.arange(size) - lay.cx)
    rows = (ys >= lay.mouth_y - 0.5 * lay.mouth_w) & (ys <= lay.mouth_y + 0.7 * lay.mouth_w)

    def centroid(cols: np.ndarray) -> float:
        sub = darkness[np.ix_(rows, cols)]
        assert sub.sum() > 0, "no mouth pixels where the layout puts the mouth"
        return float((sub * ys[rows][:, None]).sum() / sub.sum())

    centre = centroid(xs < 0.2 * lay.mouth_w)
    corners = centroid((xs > 0.6 * lay.mouth_w) & (xs < 0.85 * lay.mouth_w))
    return centre - corners


def test_valence_bends_the_mouth():
    for identity in _identities():
        for arousal in (-0.5, 0.6):  # closed and open mouth
            frown = _mouth_lift(render_face(-0.9, arousal, identity, 112), identity, 112)
            smile = _mouth_lift(render_face(0.9, arousal, identity, 112), identity, 112)
            assert smile - frown > 2.0, (identity, arousal, frown, smile)
        assert _mouth_lift(render_face(-0.9, -0.5, identity, 112), identity, 112) < -1.0
        assert _mouth_lift(render_face(0.9, -0.5, identity, 112), identity, 112) > 1.0


def _sclera_pixels(img: np.ndarray, identity, size: int) -> int:
    """White-of-the-eye pixels (bright, unsaturated) inside the two eye boxes."""
    lay = face_drawing._face_layout(identity, size)
    f = img.astype(float)
    sclera = (f.min(axis=2) > 0.85 * f.max(axis=2)) & (f.max(axis=2) > 150)
    total = 0
    for s in (-1.0, 1.0):
        ex = lay.cx + s * lay.eye_dx
        y0, y1 = int(lay.eye_y - 0.8 * lay.eye_h), int(np.ceil(lay.eye_y + 0.6 * lay.eye_h))
        x0, x1 = int(ex - lay.eye_w), int(np.ceil(ex + lay.eye_w))
        total += int(sclera[y0:y1 + 1, x0:x1 + 1].sum())
    return total


def test_arousal_opens_the_eyes():
    for identity in _identities():
        calm = _sclera_pixels(render_face(0.0, -0.9, identity, 112), identity, 112)
        excited = _sclera_pixels(render_face(0.0, 0.9, identity, 112), identity, 112)
        assert excited >= 15 and excited > 3 * calm + 10, (identity, calm, excited)


def test_arousal_drops_the_jaw():
    for identity in _identities(3):
        lay = face_drawing._face_layout(identity, 112)
        y0, y1 = int(lay.mouth_y - 2), int(lay.mouth_y + 0.8 * lay.mouth_w)
        x0, x1 = int(lay.cx - 0.3 * lay.mouth_w), int(lay.cx + 0.3 * lay.mouth_w)
        cavity = [int((render_face(0.0, a, identity, 112)[y0:y1, x0:x1].max(axis=2) < 80).sum()) for a in (-0.9, 0.9)]
        assert cavity[1] > cavity[0] + 10, cavity


def test_render_face_is_deterministic_and_pose_moves_it():
    identity = sample_identity(np.random.default_rng(7))
    a = render_face(0.2, -0.3, identity, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_face(0.2, -0.3, identity, 64))
    assert not np.array_equal(a, render_face(0.2, -0.3, identity, 64, (8.0, 2.0, -2.0)))
    assert not np.array_equal(a, render_face(0.2, -0.3, sample_identity(np.random.default_rng(8)), 64))


# ------------------------------------------------------------------------------ audio encodes arousal


def _pitch(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (Hz) of 40 ms frames, searching 70-400 Hz."""
    lags = np.arange(int(sr / 400), int(sr / 70) + 1)
    estimates = []
    for start in range(0, len(x) - 640, 320):
        frame = x[start:start + 640] - x[start:start + 640].mean()
        r = np.array([frame[:-lag] @ frame[lag:] for lag in lags])
        if r.max() <= 0:
            continue
        first = np.flatnonzero(r > 0.85 * r.max())[0]  # earliest strong peak: the period, not a multiple
        peak = first + int(np.argmax(r[first:first + 10]))
        estimates.append(sr / lags[peak])
    return float(np.median(estimates))


def test_audio_follows_arousal():
    fps, sr = 30, 16000
    arousal = np.concatenate([np.full(60, -0.9), np.full(60, 0.9)])
    x = synth_audio(arousal, fps, sr, np.random.default_rng(3))
    assert x.dtype == np.float32 and len(x) == round(120 / fps * sr) and np.abs(x).max() <= 1.0
    calm, excited = x[int(0.2 * sr):int(1.8 * sr)], x[int(2.2 * sr):int(3.8 * sr)]
    assert np.sqrt(np.mean(excited ** 2)) > 3.0 * np.sqrt(np.mean(calm ** 2))
    f_calm, f_excited = _pitch(calm, sr), _pitch(excited, sr)
    assert 90 < f_calm < 130 and 220 < f_excited < 290, (f_calm, f_excited)


def test_audio_is_deterministic_and_sized():
    ar = va_traces(45, np.random.default_rng(0))[:, 1]
    a = synth_audio(ar, 30, 16000, np.random.default_rng(1))
    assert np.array_equal(a, synth_audio(ar, 30, 16000, np.random.default_rng(1)))
    assert len(a) == round(45 / 30 * 16000) and len(synth_audio(ar, 25, 8000, np.random.default_rng(1))) == 14400


def test_audio_is_voiced_for_egemaps():
    opensmile = pytest.importorskip("opensmile")
    ar = va_traces(90, np.random.default_rng(2))[:, 1]
    x = synth_audio(ar, 30, 16000, np.random.default_rng(2))
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    f0 = smile.process_signal(x, 16000)["F0semitoneFrom27.5Hz_sma3nz"].to_numpy()
    assert (f0 > 0).mean() > 0.6


# ------------------------------------------------------------------------------ V/A traces


def test_va_traces_are_bounded_smooth_and_spread():
    stds, corrs = [], []
    for seed in range(40):
        va = va_traces(300, np.random.default_rng(seed))
        assert va.shape == (300, 2) and va.dtype == np.float32
        assert np.all(np.abs(va) <= 0.95)
        assert np.abs(np.diff(va, axis=0)).max() < 0.15
        stds.append(va.std(axis=0))
        corrs.append(np.corrcoef(va.T)[0, 1])
    stds = np.array(stds)
    assert np.mean(stds > 0.25, axis=0).min() >= 0.9
    assert np.abs(corrs).max() < 0.2  # valence and arousal do not predict each other
    assert va_traces(0, np.random.default_rng(0)).shape == (0, 2)
