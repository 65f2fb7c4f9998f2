"""The demo corpus in the SEWA / AVEC 2019 CES layout, with annotator delays built into its label files.

Select it with ``data.dataset=sewa data.demo.layout=sewa`` (generated on first use into
``default_demo_root()`` + ``-sewa-v<SEWA_DEMO_VERSION>``, or into ``data.root`` when given); it is then read by
the real SEWA reader (``data.datasets.sewa``) like AVEC 2019 data, under all three ``sewa.protocol`` s.
Layout written under the dataset root (what the reader reads; see ``data.datasets.sewa``)::

    labels/<Partition>_<Culture>_<NN>.csv     Partition Train|Devel, Culture DE|HU; 10 Hz rows
                                               'Train_DE_01';0.000000;<arousal>;<valence>;<liking>
    audio/<stem>.wav                           16 kHz mono PCM_16, as long as the video
    cropped_aligned/<stem>/<frame:05d>.jpg     1-based; in a quarter of the recordings a run of frames is absent
    meta/<stem>.json                           VideoMeta: the video's frame rate and frame count
    DEMO_DONE.json                             written last: versions and the DemoSpec

Sizes (:class:`~data.datasets.demo.spec.DemoSpec` with ``layout="sewa"``): ``num_train`` Train and ``num_val``
Devel recordings, each split between the cultures (DE takes the odd one), of ``frames`` video frames at
``fps``. Default: 24 Train + 12 Devel recordings of 30 s at 10 fps (10,800 frames; 9,360 keep every label
after a 4 s delay compensation). Every recording is one identity, seen in no other recording (the reader's
default: one subject per recording).

What the recordings express: per recording, smooth ``valence``, ``arousal`` and ``liking`` traces defined at
every time (:func:`expressed_traces`, :class:`~data.datasets.demo.traces.SinusoidTrace`). The frame at
``t = (f - 1) / fps`` shows ``valence(t)`` and ``arousal(t)`` (the same faces as the Aff-Wild2 demo) and the
voice at time ``t`` follows ``arousal(t)``. Liking is not drawn; it is half valence, half its own trace.

Annotator delays: the label files record each trace late, ``label_d(t) = expressed_d(t - DELAYS[d])``, with
the AVEC 2019 CES delays of Pandit et al. (arousal 4.0 s, valence 2.8 s) and none for liking (no published
value; 0 keeps liking aligned with the raw files). Reading with ``sewa.delay_arousal=4.0
sewa.delay_valence=2.8`` (and ``sewa.delay_liking=0``) therefore gives every frame the trace value it shows,
up to the 10 Hz label interpolation; reading without them gives labels 2.8-4 s stale, which is what
delay compensation is meant to fix on real data. The traces are expressed from ``-max(DELAYS)`` s on, so the
first rows of a label file are defined too.
"""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

from data.datasets.demo.crops import head_pose, write_crops
from data.datasets.demo.face_drawing import sample_identity
from data.datasets.demo.spec import DemoSpec
from data.datasets.demo.traces import SinusoidTrace, expression_traces
from data.datasets.demo.voice import synth_audio
from data.datasets.meta import VideoMeta, write_meta

SEWA_DEMO_VERSION: int = 1   # bump when the generated SEWA-layout content changes; part of its folder name
#: seconds each label file lags behind what the faces and voice express (Pandit et al.'s AVEC 2019 CES delays)
DELAYS: dict[str, float] = {"arousal": 4.0, "valence": 2.8, "liking": 0.0}
LABEL_HOP_S = 0.1            # AVEC 2019: one label row per 0.1 s, from 0.0
CULTURES = ("DE", "HU")
PARTITIONS = {"train": "Train", "val": "Devel"}   # DemoSpec split -> AVEC partition
HEADER = "name;timestamp;arousal;valence;liking"
_CONTROL_HZ = 100            # the voice follows arousal sampled at this rate
_STREAM_IDENTITY, _STREAM_VA, _STREAM_POSE, _STREAM_NOISE, _STREAM_AUDIO = 1, 2, 3, 4, 5
_STREAM_PLAN = 99
_LAYOUT_TAG = 2              # first seed word after spec.seed: keeps these streams apart from the Aff-Wild2 demo's
# Everything a SEWA demo root may contain (besides the marker): what we write, and what the toolkit adds to
# a SEWA root (fold manifests folds_seed<k>.json, the packed crop store).
_OWN_DIRS = frozenset({"labels", "audio", "cropped_aligned", "meta", "cropped_packed"})


def is_own_entry(name: str) -> bool:
    """True for the names a SEWA-layout demo root may hold besides its marker (see ``_OWN_DIRS``)."""
    return name in _OWN_DIRS or (name.startswith("folds_seed") and name.endswith(".json"))


def recording_seconds(spec: DemoSpec) -> float:
    """Length of every recording (video, audio and label track), ``frames / fps``."""
    return spec.frames / spec.fps


def validate_sewa(spec: DemoSpec) -> None:
    """Raise ValueError when the SEWA layout cannot be written for ``spec`` (on top of the general checks)."""
    if spec.num_train < 2 or spec.num_val < 2:
        raise ValueError(f"the SEWA-layout demo needs num_train >= 2 and num_val >= 2 (one recording per culture "
                         f"in each of Train and Devel), got {spec.num_train}, {spec.num_val}")
    shortest = max(DELAYS.values()) + 1.0
    if recording_seconds(spec) < shortest:
        raise ValueError(f"the SEWA-layout demo needs recordings of at least {shortest:g} s (the {max(DELAYS.values()):g} s "
                         f"annotator delay plus 1 s), got frames / fps = {spec.frames} / {spec.fps}")


def _groups(spec: DemoSpec) -> list[tuple[str, str, int]]:
    """(partition, culture, recordings) in file order: Train_DE, Train_HU, Devel_DE, Devel_HU."""
    out = []
    for split, total in (("train", spec.num_train), ("val", spec.num_val)):
        for c, culture in enumerate(CULTURES):
            out.append((PARTITIONS[split], culture, (total + 1 - c) // 2))
    return out


def recording_names(spec: DemoSpec) -> list[str]:
    """Recording stems in file order, e.g. ``["Train_DE_01", ..., "Train_HU_01", ..., "Devel_HU_06"]``."""
    width = max(2, len(str(max(spec.num_train, spec.num_val))))
    return [f"{partition}_{culture}_{i:0{width}d}" for partition, culture, n in _groups(spec) for i in range(1, n + 1)]


def _rng(spec: DemoSpec, stem: str, stream: int) -> np.random.Generator:
    partition, culture, number = stem.split("_")
    words = [spec.seed, _LAYOUT_TAG, list(PARTITIONS.values()).index(partition), CULTURES.index(culture),
             int(number), stream]
    return np.random.default_rng(words)


def expressed_traces(spec: DemoSpec, stem: str) -> dict[str, SinusoidTrace]:
    """What recording ``stem`` expresses: ``valence``, ``arousal``, ``liking`` as functions of time (seconds).

    Defined over ``[-max(DELAYS), recording_seconds(spec)]``; the faces and the voice sample them at their
    own times and the label files at their row times minus :data:`DELAYS`.
    """
    return expression_traces(-max(DELAYS.values()), recording_seconds(spec), _rng(spec, stem, _STREAM_VA))


def label_times(spec: DemoSpec) -> np.ndarray:
    """The label rows' timestamps: 0.0, 0.1, ... while inside the recording (AVEC 2019: one per 0.1 s from 0)."""
    rows = int(np.floor(recording_seconds(spec) / LABEL_HOP_S + 1e-9))
    return np.round(np.arange(rows) * LABEL_HOP_S, 6)


def label_rows(spec: DemoSpec, stem: str) -> np.ndarray:
    """(rows, 4) float64 ``timestamp, arousal, valence, liking`` as written: the traces ``DELAYS`` late."""
    traces, times = expressed_traces(spec, stem), label_times(spec)
    return np.column_stack([times] + [traces[d](times - DELAYS[d]) for d in ("arousal", "valence", "liking")])


def missing_plan(spec: DemoSpec) -> dict[str, np.ndarray]:
    """0-based frames without a crop per recording: in a quarter of them (at least one) one run of 0.3-1 s.

    As in SEWA's webcam recordings, where the face tracker loses the face now and then.
    """
    names = recording_names(spec)
    rng = np.random.default_rng([spec.seed, _LAYOUT_TAG, _STREAM_PLAN])
    chosen = set(rng.choice(len(names), max(1, round(len(names) / 4)), replace=False).tolist())
    plan = {}
    for j, stem in enumerate(names):
        missing = np.zeros(0, np.int64)
        if j in chosen:
            length = min(max(1, int(round(rng.uniform(0.3, 1.0) * spec.fps))), spec.frames - 1)
            start = int(rng.integers(0, spec.frames - length + 1))
            missing = np.arange(start, start + length, dtype=np.int64)
        plan[stem] = missing
    return plan


def _write_recording(tmp: pathlib.Path, spec: DemoSpec, stem: str, missing: np.ndarray) -> None:
    """Labels, crops, audio and metadata of one recording into the partial dataset folder."""
    traces = expressed_traces(spec, stem)
    rows = label_rows(spec, stem)
    lines = [HEADER] + [f"'{stem}';{t:.6f};{a:.6f};{v:.6f};{lk:.6f}" for t, a, v, lk in rows.tolist()]
    (tmp / "labels" / f"{stem}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")

    identity = sample_identity(_rng(spec, stem, _STREAM_IDENTITY))
    frame_times = np.arange(spec.frames) / spec.fps
    va = np.column_stack([traces["valence"](frame_times), traces["arousal"](frame_times)])
    # Head sway over 2-8 s, as the Aff-Wild2 demo's 60-240 frames at 30 fps.
    pose = head_pose(spec.frames, spec.size, _rng(spec, stem, _STREAM_POSE), (2.0 * spec.fps, 8.0 * spec.fps))
    write_crops(tmp / "cropped_aligned" / stem, identity, va, pose, spec.size, _rng(spec, stem, _STREAM_NOISE),
                missing.tolist())

    seconds = recording_seconds(spec)
    control = traces["arousal"]((np.arange(int(round(seconds * _CONTROL_HZ))) + 0.5) / _CONTROL_HZ)
    audio = synth_audio(control, _CONTROL_HZ, spec.sample_rate, _rng(spec, stem, _STREAM_AUDIO))
    sf.write(str(tmp / "audio" / f"{stem}.wav"), audio, spec.sample_rate, subtype="PCM_16", format="WAV")
    write_meta(tmp, VideoMeta(video=stem, fps=float(spec.fps), frames=spec.frames, faces=spec.frames - len(missing),
                              audio_seconds=len(audio) / spec.sample_rate, source="procedural demo",
                              backend="demo", size=spec.size, complete=True))


def write_sewa_demo(tmp: pathlib.Path, spec: DemoSpec) -> int:
    """Write every recording of ``spec`` into the (empty, partial) folder ``tmp``; return the number written."""
    for folder in ("labels", "audio", "cropped_aligned"):
        (tmp / folder).mkdir()
    plan = missing_plan(spec)
    for stem in recording_names(spec):
        _write_recording(tmp, spec, stem, plan[stem])
    return len(plan)
