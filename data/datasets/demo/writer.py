"""The demo dataset on disk: names, label files, crops and audio, written atomically and regenerated on change.

``ensure_demo_dataset`` writes either layout of the corpus (``DemoSpec.layout``): the SEWA one is described in
:mod:`data.datasets.demo.sewa_layout`; this module writes the Aff-Wild2 one and owns what both share (the
completeness marker, atomic installation, the refusal to delete folders that are not ours).

Aff-Wild2 layout written under the dataset root::

    cropped_aligned/<video>/<frame:05d>.jpg        1-based; a few frames are deliberately absent
    annotations/VA_Set/Training_Set/<video>.txt    "valence,arousal" header, one "v,a" line per frame
    annotations/VA_Set/Validation_Set/<video>.txt  (invalid frames are "-5,-5")
    audio/<video>.wav                              16 kHz mono PCM_16, frames / fps seconds
    DEMO_DONE.json                                 written last: DEMO_VERSION and the DemoSpec

The validation split uses identities that never occur in training.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import tempfile
import time
from dataclasses import asdict

import numpy as np
import soundfile as sf

from data.datasets.demo import sewa_layout
from data.datasets.demo.crops import head_pose, write_crops
from data.datasets.demo.face_drawing import sample_identity
from data.datasets.demo.spec import DEMO_VERSION, DemoSpec, default_demo_root, validate_spec
from data.datasets.demo.traces import va_traces
from data.datasets.demo.voice import synth_audio
from data.errors import DataError
from fileio.atomic import move_into_place

log = logging.getLogger(__name__)

__all__ = ["DEMO_VERSION", "MARKER", "DemoSpec", "default_demo_root", "default_root_for", "ensure_demo_dataset",
           "video_names"]

MARKER = "DEMO_DONE.json"
_SPLIT_FOLDERS = {"train": "Training_Set", "val": "Validation_Set"}
# Everything a demo root may contain; anything else means the folder is not ours and must not be deleted.
_OWN_ENTRIES = frozenset({"cropped_aligned", "annotations", "audio", MARKER})
_PARTIAL_TAG = ".partial-"
_STALE_PARTIAL_S = 3600.0  # partial folders older than this are leftovers of killed runs

# Independent random streams per video, so that changing how one aspect is drawn never shifts another.
_SPLIT_ID = {"train": 0, "val": 1}
_STREAM_IDENTITY, _STREAM_VA, _STREAM_POSE, _STREAM_NOISE, _STREAM_AUDIO = 1, 2, 3, 4, 5
_STREAM_PLAN = 99


def default_root_for(spec: DemoSpec) -> pathlib.Path:
    """The cache folder of ``spec`` when no root is configured.

    ``default_demo_root()`` for the default Aff-Wild2 demo, with ``-sewa-v<SEWA_DEMO_VERSION>`` appended for
    the SEWA layout; a spec other than its layout's default adds its sizes (``-<train>x<val>x<frames>-<size>px-
    seed<seed>``, and the frame rate for the SEWA layout), so it gets its own folder instead of replacing the
    default one.
    """
    root = default_demo_root()
    if spec.layout == "sewa":
        root = root.with_name(f"{root.name}-sewa-v{sewa_layout.SEWA_DEMO_VERSION}")
    if spec != DemoSpec(layout=spec.layout):
        fps = f"-{spec.fps}fps" if spec.layout == "sewa" else ""
        root = root.with_name(f"{root.name}-{spec.num_train}x{spec.num_val}x{spec.frames}{fps}"
                              f"-{spec.size}px-seed{spec.seed}")
    return root


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
    pose = head_pose(spec.frames, spec.size, _rng(spec, split, index, _STREAM_POSE))

    labels = [f"{v:.6f},{a:.6f}" for v, a in va.tolist()]
    for i in invalid.tolist():
        labels[i] = "-5,-5"
    ann = tmp / "annotations" / "VA_Set" / _SPLIT_FOLDERS[split] / f"{name}.txt"
    ann.write_text("valence,arousal\n" + "\n".join(labels) + "\n", encoding="utf-8", newline="\n")

    write_crops(tmp / "cropped_aligned" / name, identity, va, pose, spec.size,
                _rng(spec, split, index, _STREAM_NOISE), missing.tolist())

    audio = synth_audio(va[:, 1], spec.fps, spec.sample_rate, _rng(spec, split, index, _STREAM_AUDIO))
    sf.write(str(tmp / "audio" / f"{name}.wav"), audio, spec.sample_rate, subtype="PCM_16", format="WAV")


def _write_affwild2(tmp: pathlib.Path, spec: DemoSpec) -> int:
    """Write every video of ``spec`` into the (empty, partial) folder ``tmp``; return the number written."""
    for folder in _SPLIT_FOLDERS.values():
        (tmp / "annotations" / "VA_Set" / folder).mkdir(parents=True)
    (tmp / "cropped_aligned").mkdir()
    (tmp / "audio").mkdir()
    plan = _corruption_plan(spec)
    for split, names in video_names(spec).items():
        for index, name in enumerate(names):
            _write_video(tmp, spec, split, index, name, *plan[(split, index)])
    return spec.num_train + spec.num_val


def _marker_content(spec: DemoSpec) -> dict:
    content = {"demo_version": DEMO_VERSION, "spec": asdict(spec)}
    if spec.layout == "sewa":
        content["sewa_demo_version"] = sewa_layout.SEWA_DEMO_VERSION
    return content


def _read_marker(root: pathlib.Path) -> dict | None:
    try:
        found = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _is_complete(root: pathlib.Path, spec: DemoSpec) -> bool:
    """True if ``root`` holds a finished dataset for exactly this spec and version.

    A marker written before ``DemoSpec.layout`` existed (no ``layout`` in its spec) is an Aff-Wild2 demo:
    the content of that layout did not change, so such a folder is not regenerated.
    """
    found = _read_marker(root)
    if found is None:
        return False
    if isinstance(found.get("spec"), dict) and "layout" not in found["spec"]:
        found = {**found, "spec": {**found["spec"], "layout": "affwild2"}}
    expected = _marker_content(spec)
    return all(found.get(key) == value for key, value in expected.items())


def _validate(spec: DemoSpec) -> None:
    validate_spec(spec)
    if spec.layout == "sewa":
        sewa_layout.validate_sewa(spec)


def _remove_stale(root: pathlib.Path) -> None:
    """Delete an incomplete or outdated demo folder, refusing anything that does not look like one.

    The root may come from a config or an environment variable; a typo must never wipe user data,
    so only a folder holding nothing but demo entries is deleted. A folder with SEWA-layout entries
    must also hold a demo marker (of any version or spec): a real SEWA root holds the same names.
    """
    if root.is_symlink() or not root.is_dir():
        raise DataError(f"{root}: exists but is not a demo dataset folder; remove it or choose another root")
    names = [p.name for p in root.iterdir()]
    foreign = sorted(n for n in names if n not in _OWN_ENTRIES and not sewa_layout.is_own_entry(n))
    if foreign:
        raise DataError(f"{root}: not a demo dataset (contains {', '.join(foreign[:3])}); refusing to delete it, "
                        "remove it yourself or choose another root")
    sewa_like = sorted(n for n in names if n not in _OWN_ENTRIES)
    if sewa_like and (_read_marker(root) or {}).get("demo_version") is None:
        raise DataError(f"{root}: holds {', '.join(sewa_like[:3])} but no demo marker {MARKER} (real SEWA data?); "
                        "refusing to delete it, remove it yourself or choose another root")
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
    """Generate the dataset into ``root`` (``default_root_for(spec)`` if None) unless it is already complete; return root.

    ``spec.layout`` chooses the layout: Aff-Wild2 (this module) or SEWA (:mod:`data.datasets.demo.sewa_layout`).
    Complete means ``root/DEMO_DONE.json`` holds DEMO_VERSION and ``asdict(spec)`` (and, for the SEWA
    layout, its own version). The dataset is written into a temporary sibling folder, the marker last, and
    renamed into place, so a run killed mid-generation never leaves a half-written folder that looks
    complete. An existing root with another spec/version or without a marker is removed and regenerated
    (after checking that it holds only demo entries, so a mistyped root cannot delete user data). If
    another process installs the same dataset concurrently, its copy is kept and ours discarded.

    Raises:
        ValueError: ``spec`` cannot be generated (e.g. no training videos, images under 32 px, SEWA
            recordings shorter than the annotator delay).
        DataError: ``root`` exists but is not a demo dataset folder.
    """
    _validate(spec)
    root = default_root_for(spec) if root is None else pathlib.Path(root).expanduser()
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
        if spec.layout == "sewa":
            count = sewa_layout.write_sewa_demo(tmp, spec)
        else:
            count = _write_affwild2(tmp, spec)
        (tmp / MARKER).write_text(json.dumps(_marker_content(spec), indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is ordinary shared data
        try:
            move_into_place(tmp, root)
        except OSError:
            if not _is_complete(root, spec):  # not a concurrent twin that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("Generated synthetic demo dataset (%s layout, %d videos x %d frames, demo v%d) in %s in %.1f s",
             spec.layout, count, spec.frames, DEMO_VERSION, root, time.perf_counter() - start)
    return root
