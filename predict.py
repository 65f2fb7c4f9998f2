"""Predict valence/arousal for a raw video: ``python predict.py VIDEO [--checkpoint PATH] [--out DIR] [--draw]``.

Runs the whole pipeline on one video file:

1. preprocessing, as ``python -m data.prepare`` does it (PyAV decoding, face detection and landmarks,
   similarity-aligned crops, the 16 kHz audio track and its eGeMAPS features) into ``OUT/prepared``;
2. the checkpoint's test-time path (AEG cleans each face, CD scores it with z and the frame's audio
   window, standardised with the checkpoint's training statistics);
3. ``OUT/<video>.csv`` with ``frame,time,valence,arousal`` for every frame where a face was found
   (frames without a face are absent rather than invented), and ``OUT/<video>_trace.png``;
4. with ``--draw``, ``OUT/<video>_va.mp4``: the video with the values drawn on each frame.

The default checkpoint is the demo run's ``runs/demo/best.pt`` (``python train.py`` writes it). A model
trained on the synthetic demo faces gives meaningless numbers on real faces; the command is for
checking the pipeline and for models trained on real data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from data.datasets.meta import read_meta
from data.errors import DataError
from data.preprocess.audio import AudioStandardiser, video_audio_features
from data.preprocess.faces import make_landmarker
from data.preprocess.pipeline import PrepareOptions, prepare_video
from data.preprocess.video import iter_frames
from data.samples.dataset import read_rgb, to_tensor
from fileio.atomic import atomic_path, write_text
from gan.checkpoint import load_checkpoint, model_from_checkpoint
from runconfig import build_config, resolve_device, run_cli
from scoring.plots import plot_traces

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "runs" / "demo" / "best.pt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", help="video file (mp4, avi, mkv, ...)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="default: runs/demo/best.pt")
    parser.add_argument("--out", default=None, help="output folder (default: predictions/<video>)")
    parser.add_argument("--backend", default="mtcnn", choices=("mtcnn", "face-alignment"))
    parser.add_argument("--draw", action="store_true", help="also write the video with V/A drawn on it")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def predict_video(args: argparse.Namespace) -> Path:
    video = Path(args.video)
    if not video.is_file():
        raise DataError(f"{video}: video file not found")
    if not Path(args.checkpoint).is_file() and Path(args.checkpoint) == DEFAULT_CHECKPOINT:
        raise DataError(f"{DEFAULT_CHECKPOINT}: no demo checkpoint yet; run python train.py first or pass --checkpoint")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = build_config(ckpt["config"])
    device = resolve_device(args.device)
    model = model_from_checkpoint(ckpt).to(device).eval()
    out = Path(args.out) if args.out else Path("predictions") / video.stem
    prepared = out / "prepared"
    # crops at the size the readers' crops usually have (112, or 128 for 128 px models); the model resizes
    opts = PrepareOptions(out=prepared, backend=args.backend, size=128 if cfg.model.image_size > 112 else 112,
                          progress=True)
    result = prepare_video(video, make_landmarker(args.backend), opts)
    if result.status == "failed":
        raise DataError(result.error)
    meta = read_meta(prepared, video.stem)
    if meta is None:
        raise DataError(f"{video}: preprocessing wrote no metadata ({result.status}); see the messages above")
    crops = sorted((prepared / "cropped_aligned" / video.stem).glob("*.jpg"))
    if not crops:
        raise DataError(f"{video}: no face found in any of its {meta.frames} frames")
    frames = np.array([int(p.stem) for p in crops])
    wav = prepared / "audio" / f"{video.stem}.wav"
    audio = video_audio_features(wav if wav.is_file() else None, meta.frames, meta.fps, cfg.data.audio)
    audio = AudioStandardiser.from_state_dict(ckpt["audio_stats"])(audio)

    size = cfg.model.image_size
    values = []
    for start in range(0, len(crops), args.batch_size):
        chunk = crops[start:start + args.batch_size]
        faces = torch.stack([to_tensor(cv2.resize(read_rgb(p), (size, size), interpolation=cv2.INTER_AREA))
                             for p in chunk]).to(device)
        rows = torch.from_numpy(audio[frames[start:start + len(chunk)] - 1]).to(device)
        values.append(model.predict(faces, rows).float().cpu().numpy())
    va = np.concatenate(values)
    times = (frames - 1) / meta.fps

    csv_path = out / f"{video.stem}.csv"
    lines = ["frame,time,valence,arousal"] + [f"{f},{t:.3f},{v:.6f},{a:.6f}" for f, t, (v, a) in zip(frames, times, va,
                                                                                                   strict=True)]
    write_text(csv_path, "\n".join(lines) + "\n")
    plot_traces(out / f"{video.stem}_trace.png", times, va, None, ("valence", "arousal"),
                f"{video.name}: predicted valence/arousal ({cfg.model.variant}, step {ckpt['step']})")
    if args.draw:
        draw_values(video, out / f"{video.stem}_va.mp4", dict(zip(frames.tolist(), va.tolist(), strict=True)), meta.fps)
    print(f"{video.name}: {len(frames)} of {meta.frames} frames with a face; wrote {csv_path} and the trace plot"
          + (" and the annotated video" if args.draw else ""))
    return csv_path


def draw_values(source: Path, target: Path, values: dict[int, list[float]], fps: float) -> None:
    """Re-encode ``source`` with each frame's V/A (or "no face") written in its corner."""
    with atomic_path(target, suffix=target.suffix) as partial, av.open(str(partial), "w") as container:
        stream = None
        for frame in iter_frames(source):
            rgb = np.ascontiguousarray(frame.rgb)
            if stream is None:
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2, "yuv420p"
            va = values.get(frame.index + 1)
            text = f"V {va[0]:+.2f}  A {va[1]:+.2f}" if va else "no face"
            cv2.putText(rgb, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(rgb, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
            rgb = rgb[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return run_cli(lambda: predict_video(args) and 0)


if __name__ == "__main__":
    sys.exit(main())
