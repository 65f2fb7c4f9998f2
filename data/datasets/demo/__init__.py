"""The synthetic "demo" affect dataset, in the Aff-Wild2 or the SEWA / AVEC 2019 layout: the generator's public API.

Why this exists: ``python train.py`` must run end to end without a licence-gated download, and it
should exercise the *real* dataset readers (``data.datasets.affwild2``, ``data.datasets.sewa``,
``data.preprocess.audio``) rather than a special code path. So we generate, once and deterministically, a
small dataset that looks like real data on disk: Aff-Wild2 by default (``data.dataset=demo``), or SEWA with
annotator delays built into its label files (``data.dataset=sewa data.demo.layout=sewa``). It is a sanity
benchmark only and is never to be reported as a result on real data.

Modules: ``spec`` (:class:`DemoSpec`: sizes, seed, layout), ``traces`` (smooth V/A label traces),
``face_drawing`` (faces whose expression follows V/A), ``crops`` (a video's face crops: pose, noise, JPEG),
``voice`` (a speech-like sound whose pitch and loudness follow arousal), ``writer`` (the dataset folder,
written atomically and regenerated when its spec changes; the Aff-Wild2 layout), ``sewa_layout`` (the SEWA
layout and its built-in delays).
"""

from data.datasets.demo.face_drawing import FaceIdentity, render_face, sample_identity
from data.datasets.demo.sewa_layout import DELAYS as SEWA_DEMO_DELAYS
from data.datasets.demo.sewa_layout import SEWA_DEMO_VERSION, expressed_traces, recording_names
from data.datasets.demo.spec import LAYOUTS
from data.datasets.demo.traces import SinusoidTrace, va_traces
from data.datasets.demo.voice import synth_audio
from data.datasets.demo.writer import (
    DEMO_VERSION,
    DemoSpec,
    default_demo_root,
    default_root_for,
    ensure_demo_dataset,
    video_names,
)

__all__ = [
    "DEMO_VERSION", "LAYOUTS", "SEWA_DEMO_DELAYS", "SEWA_DEMO_VERSION", "DemoSpec", "FaceIdentity", "SinusoidTrace",
    "default_demo_root", "default_root_for", "ensure_demo_dataset", "expressed_traces", "recording_names",
    "render_face", "sample_identity", "synth_audio", "va_traces", "video_names",
]
