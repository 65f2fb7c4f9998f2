"""Frame-level affect dataset: the sample contract between ``data`` and ``gan`` (docs/design.md, "The sample contract").

A sample is a dict of tensors::

    face           (3, H, W) float32 in [-1, 1], the clean crop
    face_degraded  (3, H, W) float32 in [-1, 1], the crop after the paper's artefacts (when a degrader is set)
    audio          (D_a,) float32, standardised eGeMAPS window features of the frame
    va             (2,) float32 in [-1, 1], (valence, arousal)
    liking         () float32 in [-1, 1], only for datasets that label it (SEWA)
    video          str, frame  int (1-based frame number)

A training loader may carry the faces as uint8 (3, H, W) instead (``faces_as_uint8``): a quarter of the bytes
between the loader's processes and to the GPU, and no float conversion in the workers. :func:`faces_to_float`
turns such a batch into the contract above on the model's device, with the same arithmetic as
:func:`to_tensor`, so both paths give identical floats.

Only frames with a valid label and an image file are indexed, so invalid labels never reach a loss.
Randomness is per *sample*: an index may come with a seed (``dataset[(i, seed)]``) that fixes its
degradation, so the same (index, seed) gives the same sample in any worker, in any run, after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data.datasets.affwild2 import VideoRecord
from data.errors import DataError

# OpenCV's own thread pool competes with torch's for the same cores; decoding one small crop needs none.
cv2.setNumThreads(1)

_JPEG_END = b"\xff\xd9"


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB, refusing corrupt or truncated files.

    OpenCV decodes a truncated JPEG into a partly grey image with only a console warning, so the end-of-image
    marker is checked explicitly: a crop with a missing tail would be silent garbage in training.
    """
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc.__class__.__name__})") from exc
    return decode_rgb(raw, str(path), jpeg=path.suffix.lower() in (".jpg", ".jpeg"))


def decode_rgb(raw: np.ndarray, where: str, jpeg: bool = True) -> np.ndarray:
    """Decode an image file's bytes (uint8 array) to (H, W, 3) uint8 RGB with :func:`read_rgb`'s checks.

    Shared by the crop files and the packed store (``data.samples.packed``), so both refuse the same bad
    input and give bit-identical pixels; ``where`` names the file in the error (for a packed crop, its file
    and the pack holding it).
    """
    if jpeg and raw[-2:].tobytes() != _JPEG_END and raw.tobytes().rstrip(b"\x00")[-2:] != _JPEG_END:
        raise DataError(f"{where}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if image is None:
        raise DataError(f"{where}: cannot decode image (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_crop(record: VideoRecord, frame: int) -> np.ndarray:
    """The face crop of ``frame`` of ``record`` from its JPEG file (``data.store=jpeg``, the default)."""
    return read_rgb(record.image_path(frame))


FACE_KEYS = ("face", "face_degraded")


def to_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> uint8 (3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_float(faces: torch.Tensor) -> torch.Tensor:
    """uint8 faces (any shape, any device) -> float32 in [-1, 1]: the one place this arithmetic lives."""
    return faces.float().div_(127.5).sub_(1.0)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    return to_float(to_uint8_tensor(image))


def faces_to_float(batch: dict) -> dict:
    """A batch whose faces are uint8 (``faces_as_uint8``) with float32 faces in [-1, 1]; float faces unchanged."""
    return {k: to_float(v) if k in FACE_KEYS and torch.is_tensor(v) and v.dtype == torch.uint8 else v
            for k, v in batch.items()}


class AffectFrameDataset(Dataset):
    """Frames of a set of videos, each with its clean (and degraded) face, audio features and V/A label.

    Args:
        records: indexed videos (see :func:`data.datasets.affwild2.index_split`).
        image_size: crops are resized to this square size (INTER_AREA) after degradation.
        audio: per-video standardised audio features, (n_frames, D_a) each, keyed by record name.
        degrader: ``(image, seed) -> image`` applied to the full-resolution crop; None for no
            ``face_degraded``.
        fixed_seed_base: when set, a plain integer index uses seed ``fixed_seed_base + index`` for its
            degradation (validation: the same degraded frame at every evaluation).
        frame_seed: instead, ``frame_seed(video, frame)`` seeds a plain index's degradation: a seed from the
            frame's identity, which other readers of the same frame (sequence models) can reproduce.
        read_image: ``(record, frame) -> (H, W, 3) uint8 RGB``, where the crops come from: the JPEG files
            (:func:`read_crop`, default) or a packed store (:class:`data.samples.packed.PackedCrops`), which
            gives the same pixels.
        faces_as_uint8: give ``face`` / ``face_degraded`` as uint8 (3, H, W); the consumer converts them with
            :func:`faces_to_float` (training does, on its device).
    """

    def __init__(self, records: Sequence[VideoRecord], image_size: int, audio: dict[str, np.ndarray],
                 degrader: Callable[[np.ndarray, int], np.ndarray] | None = None,
                 fixed_seed_base: int | None = None,
                 read_image: Callable[[VideoRecord, int], np.ndarray] = read_crop,
                 frame_seed: Callable[[str, int], int] | None = None, faces_as_uint8: bool = False):
        self.records = list(records)
        self.face_tensor = to_uint8_tensor if faces_as_uint8 else to_tensor
        self.read_image = read_image
        self.image_size = image_size
        self.audio = audio
        self.degrader = degrader
        self.fixed_seed_base = fixed_seed_base
        self.frame_seed = frame_seed
        self.audio_dim = next(iter(audio.values())).shape[1] if audio else 0
        counts = [len(r.frames) for r in self.records]
        self._video_of = np.repeat(np.arange(len(self.records)), counts)
        self._frame_of = np.concatenate([r.frames for r in self.records]) if self.records else np.zeros(0, np.int64)
        self.labels = np.concatenate([r.labels[r.frames - 1] for r in self.records]).astype(np.float32) \
            if self.records else np.zeros((0, 2), np.float32)

    def __len__(self) -> int:
        return len(self._frame_of)

    def locate(self, index: int) -> tuple[VideoRecord, int]:
        return self.records[self._video_of[index]], int(self._frame_of[index])

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Square ``image_size`` crop (INTER_AREA), or the image itself when it has that size already."""
        if image.shape[0] == self.image_size and image.shape[1] == self.image_size:
            return image
        return cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict]:
        """The samples of one batch (a DataLoader asks for a batch at once): ``[self[key] for key in keys]``.

        A reader that can (the packed store) first starts reading every crop of the batch, so their cold reads
        overlap instead of queueing one behind the other; the samples are the same either way.
        """
        prefetch = getattr(self.read_image, "prefetch", None)
        if prefetch is not None:
            prefetch([self.locate(int(key[0] if isinstance(key, tuple) else key)) for key in keys])
        return [self[key] for key in keys]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        record, frame = self.locate(int(index))
        if seed is None and self.frame_seed is not None:
            seed = self.frame_seed(record.name, frame)
        elif seed is None and self.fixed_seed_base is not None:
            seed = self.fixed_seed_base + int(index)
        image = self.read_image(record, frame)
        sample = {
            "face": self.face_tensor(self.resize(image)),
            "va": torch.from_numpy(record.labels[frame - 1].copy()),
            "audio": torch.from_numpy(self.audio[record.name][frame - 1]) if self.audio
            else torch.zeros(0),
            "video": record.name,
            "frame": frame,
        }
        if record.liking is not None:
            sample["liking"] = torch.tensor(record.liking[frame - 1], dtype=torch.float32)
        if self.degrader is not None:
            if seed is None:
                raise ValueError("a degrading dataset needs a per-sample seed: index it with (index, seed)")
            sample["face_degraded"] = self.face_tensor(self.resize(self.degrader(image, int(seed))))
        return sample
