"""The synthetic "demo" affect dataset in the Aff-Wild2 on-disk layout: the public API of the generator.

Why this exists: ``python train.py`` must run end to end without a licence-gated download, and it
should exercise the *real* dataset readers (``data.datasets.affwild2``, ``data.preprocess.audio``) rather than
a special code path. So we generate, once and deterministically, a small dataset that looks like Aff-Wild2
on disk. It is a sanity benchmark only and is never to be reported as a result on real data.

Modules: ``traces`` (smooth V/A label traces), ``face_drawing`` (faces whose expression follows V/A),
``voice`` (a speech-like sound whose pitch and loudness follow arousal), ``writer`` (the dataset folder,
written atomically and regenerated when its spec changes).
"""

from data.datasets.demo.face_drawing import FaceIdentity, render_face, sample_identity
from data.datasets.demo.traces import va_traces
from data.datasets.demo.voice import synth_audio
from data.datasets.demo.writer import (
    DEMO_VERSION,
    DemoSpec,
    default_demo_root,
    ensure_demo_dataset,
    video_names,
)

__all__ = [
    "DEMO_VERSION", "DemoSpec", "FaceIdentity", "default_demo_root", "ensure_demo_dataset", "render_face",
    "sample_identity", "synth_audio", "va_traces", "video_names",
]
