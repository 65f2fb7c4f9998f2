"""Benchmark: raw-video preprocessing throughput per landmark backend, side by side in one run.

    python -m bench.prepare_bench [--frames 90] [--width 640] [--height 360] [--threads 1] [--every 1 3]

Generates a short video of a real face (scikit-image's astronaut photo panning across a 640x360 frame,
h264 + AAC tone, i.e. a typical Aff-Wild2 YouTube resolution) and times, in frames per second:

* decode only: PyAV decode to RGB (the floor every other row pays);
* decode + detect + align: the landmarker on every frame and the similarity warp, nothing written;
* full prepare: ``data.preprocess.pipeline.prepare_video`` (JPEG crops, 16 kHz wav, eGeMAPS with a cold cache,
  metadata), once per ``--every`` value.

Landmarker construction is timed separately (startup). The face-alignment backend only runs when its
weights are in ``$TORCH_HOME/hub/checkpoints``; otherwise its rows say why they were skipped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from skimage import data as skdata

from data.errors import DataError
from data.preprocess.faces import BACKENDS, align_face, check_face_alignment_weights, make_landmarker
from data.preprocess.pipeline import PrepareOptions, prepare_video
from data.preprocess.video import iter_frames


def write_bench_video(path: Path, frames: int, width: int, height: int, fps: int = 30) -> Path:
    """The astronaut's head and shoulders panning slowly across a grey frame, with a 440 Hz tone."""
    photo = skdata.astronaut()[0:300, 100:400]  # face about 90 px wide in a 300x300 patch
    side = int(height * 0.8)
    patch = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="mono")
        for i in range(frames):
            frame = np.full((height, width, 3), 110, np.uint8)
            x = int((width - side) * (0.5 + 0.4 * np.sin(i / frames * 2 * np.pi)))
            frame[(height - side) // 2:(height - side) // 2 + side, x:x + side] = patch
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        n = round(44100 * frames / fps)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)[None]
        step = audio.codec_context.frame_size or 1024
        for s in range(0, n, step):
            samples = np.ascontiguousarray(tone[:, s:s + step])
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 44100, s
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3],
                        help="--every values for the full prepare rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)  # see data.preprocess.batch._thread_limits

    rows: list[tuple[str, str, float | None, str]] = []  # backend, stage, frames/s, note
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = write_bench_video(tmp / "astronaut.mp4", args.frames, args.width, args.height)
        start = time.perf_counter()
        frames = [f.rgb for f in iter_frames(video)]
        decode = _rate(len(frames), time.perf_counter() - start)
        rows.append(("-", "decode only", decode, ""))

        for backend in BACKENDS:
            if backend == "face-alignment":
                try:
                    check_face_alignment_weights()
                except DataError as exc:
                    for stage in ("decode + detect + align", "full prepare"):
                        rows.append((backend, stage, None, "skipped: weights missing (see message)"))
                    print(f"face-alignment: {exc}")
                    continue
            start = time.perf_counter()
            landmarker = make_landmarker(backend, "cpu")
            landmarker(frames[0])  # first call allocates and (face-alignment) JIT-compiles
            startup = time.perf_counter() - start

            start = time.perf_counter()
            faces = 0
            for frame in iter_frames(video):
                points = landmarker(frame.rgb)
                if points is not None:
                    align_face(frame.rgb, points, args.size)
                    faces += 1
            rows.append((backend, "decode + detect + align", _rate(len(frames), time.perf_counter() - start),
                         f"faces {faces}/{len(frames)}, startup {startup:.1f} s"))

            for every in args.every:
                opts = PrepareOptions(out=tmp / f"out-{backend}-{every}", backend=backend, size=args.size,
                                      every=every, audio_cache=str(tmp / f"cache-{backend}-{every}"),
                                      progress=False)
                result = prepare_video(video, landmarker, opts)
                assert result.status == "done", result.error
                rows.append((backend, f"full prepare, every {every}", _rate(result.frames, result.seconds),
                             f"crops {result.faces}/{result.frames}, audio {result.audio_seconds:.1f} s"))

    print(f"{args.frames} frames {args.width}x{args.height} h264 @30 fps, crops {args.size} px, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'backend':16s}{'stage':28s}{'frames/s':>10s}{'vs decode':>11s}{'x realtime':>12s}  note")
    for backend, stage, rate, note in rows:
        if rate is None:
            print(f"{backend:16s}{stage:28s}{'-':>10s}{'-':>11s}{'-':>12s}  {note}")
        else:
            print(f"{backend:16s}{stage:28s}{rate:10.1f}{rate / decode:11.3f}{rate / 30:12.2f}  {note}")


if __name__ == "__main__":
    main()
