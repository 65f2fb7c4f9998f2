"""Per-video metadata written by preprocessing (``python -m data.prepare``) and read by the dataset readers.

``ROOT/meta/<video>.json`` records what preprocessing found for one source video: its frame rate and
frame count (authoritative for mapping labels to frames), how many frames had a face, and the audio
track. Its presence with ``complete: true`` also marks the video as finished, so an interrupted
preprocessing run skips it and redoes only half-written videos.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from data.errors import DataError
from fileio.atomic import write_json

META_DIR = "meta"


@dataclass
class VideoMeta:
    """What preprocessing learned about one video."""

    video: str                         # stem used for cropped_aligned/<video>/ and audio/<video>.wav
    fps: float                         # frame rate from the container (average rate of the video stream)
    frames: int                        # decoded video frames (--keep-crops: counted packets, not decoded)
    faces: int = 0                     # frames with a detected face (crops written), or crop files kept
    audio_seconds: float | None = None  # length of audio/<video>.wav; None when the video has no audio track
    source: str = ""                   # path of the source video
    backend: str = ""                  # landmark backend used for the crops ("" when kept)
    size: int = 0                      # crop side in pixels
    complete: bool = False             # True once crops (unless kept), audio and features are all written
    subjects: int = 1                  # 2: crops in <video>_left/ and <video>_right/ (two-subject video)
    crops_kept: bool = False           # True: prepare --keep-crops ran no detection; faces counts the crop
                                       # files found in cropped_aligned/, which it left as they were
    warnings: list[str] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return self.audio_seconds is not None


def meta_path(root: Path, video: str) -> Path:
    return Path(root) / META_DIR / f"{video}.json"


def write_meta(root: Path, meta: VideoMeta) -> Path:
    """Write ``meta`` atomically (:mod:`fileio.atomic`)."""
    path = meta_path(root, meta.video)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, asdict(meta))


def read_meta(root: Path, video: str) -> VideoMeta | None:
    """The metadata of ``video`` under ``root``, or None when preprocessing wrote none."""
    path = meta_path(root, video)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(VideoMeta)}
        return VideoMeta(**{k: v for k, v in raw.items() if k in known})
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(f"{path}: unreadable video metadata ({exc.__class__.__name__}); delete it and re-run "
                        "python -m data.prepare for this video") from exc
