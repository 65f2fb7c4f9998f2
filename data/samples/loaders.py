"""From a :class:`DataConfig` to datasets and loaders: the data glue shared by ``train.py`` and ``evaluate.py``.

Responsibilities: resolve the dataset root (generating the demo data on first use), index the splits,
compute per-video audio features, standardise them with statistics fitted on the *training* frames only
(or given, from a checkpoint), and build loaders whose order is a pure function of (seed, step) so that
an interrupted run resumes bit-exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from data.datasets.affwild2 import VideoRecord, index_split
from data.datasets.demo import DemoSpec, default_root_for, ensure_demo_dataset
from data.datasets.sewa import SewaConfig, index_sewa, split_recordings
from data.errors import DataError
from data.preprocess.audio import AudioConfig, AudioStandardiser, video_audio_features
from data.samples.abaw_test_set import index_test_split
from data.samples.corruptions import Corruption, frame_seed
from data.samples.dataset import AffectFrameDataset, read_crop, read_rgb, to_tensor
from data.samples.degrade import ARTEFACTS, DegradeConfig, Degrader
from data.samples.packed import PackedCrops

log = logging.getLogger(__name__)

DATASETS = ("demo", "affwild2", "sewa")
STORES = ("jpeg", "packed")
VAL_SEED_BASE = 1_000_000_007  # validation degradations use seeds disjoint from training's


@dataclass
class DataConfig:
    """Which data, where, and how it is turned into samples."""

    dataset: str = "demo"          # demo | affwild2 | sewa
    root: str = ""                 # dataset root; "" = the demo cache folder (demo, or sewa with demo.layout=sewa)
    fold: int = 0                  # sewa, protocol folds: the test fold (validation is the next one)
    train_splits: list[str] = field(default_factory=lambda: ["train"])   # [train, val]: the final model (§III-E)
    test_list: str = ""            # affwild2 --split test: the released names file ("" = ROOT/test_set.txt)
    default_fps: float = 30.0      # frame rate of videos whose name does not encode one
    drift_tolerance: float = 0.05  # warn when a video's audio and frames / fps differ in length by more (relative)
    fps_from_audio: bool = True    # for a video at default_fps that drifts: frame rate = frames / audio seconds
    num_workers: int = 1           # DataLoader worker processes for training batches
    store: str = "jpeg"            # jpeg: the crop files | packed: ROOT/cropped_packed (python -m data.pack ROOT)
    eval_batch_size: int = 128
    demo: DemoSpec = field(default_factory=DemoSpec)   # the generated demo data (dataset=demo; layout=sewa: sewa)
    sewa: SewaConfig = field(default_factory=SewaConfig)  # label mapping, delays, protocol (dataset=sewa)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.demo.layout == "sewa" and self.dataset != "sewa":
            raise ValueError(f"data.demo.layout=sewa writes the demo in the SEWA layout, read with data.dataset=sewa "
                             f"(got data.dataset={self.dataset})")
        if self.dataset != "demo" and not self.root and not self.sewa_demo:
            hint = " (or data.demo.layout=sewa for the built-in SEWA-layout demo)" if self.dataset == "sewa" else ""
            raise ValueError(f"data.root must be set for data.dataset={self.dataset}{hint}")
        if self.store not in STORES:
            raise ValueError(f"data.store must be one of {STORES}, got {self.store!r}")
        if self.num_workers < 0 or self.eval_batch_size < 1:
            raise ValueError("data.num_workers must be >= 0 and data.eval_batch_size >= 1")
        try:
            self.sewa.validate()
        except ValueError as exc:
            raise ValueError(str(exc).replace("sewa.", "data.sewa.", 1)) from None
        if not self.train_splits or len(set(self.train_splits)) != len(self.train_splits) \
                or any(s not in ("train", "val") for s in self.train_splits):
            raise ValueError(f"data.train_splits must be [train] or [train, val], got {self.train_splits}")
        if not 0 <= self.fold < self.sewa.num_folds:
            raise ValueError(f"data.fold must be in [0, {self.sewa.num_folds - 1}], got {self.fold}")

    @property
    def sewa_demo(self) -> bool:
        """True when the data is the built-in demo in the SEWA layout (``dataset=sewa``, ``demo.layout=sewa``)."""
        return self.dataset == "sewa" and self.demo.layout == "sewa"


def resolve_root(cfg: DataConfig) -> Path:
    """The dataset root; for the demo (either layout), generated on first use (deterministic, cached).

    ``data.dataset=demo`` (Aff-Wild2 layout) and ``data.dataset=sewa data.demo.layout=sewa`` generate into
    ``data.root`` when it is set, else into the cache folder of the spec
    (:func:`~data.datasets.demo.default_root_for`: a non-default size gets its own folder instead of replacing
    the default one). Any other dataset is read from ``data.root``.
    """
    if cfg.dataset == "demo" or cfg.sewa_demo:
        if cfg.root:
            return ensure_demo_dataset(Path(cfg.root).expanduser(), cfg.demo)
        return ensure_demo_dataset(default_root_for(cfg.demo), cfg.demo)
    if not cfg.root:
        raise DataError(f"data.root is not set (set it to your {cfg.dataset} folder)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist (set data.root to your {cfg.dataset} folder)")
    return root


def index_records(cfg: DataConfig, split: str) -> list[VideoRecord]:
    """The usable videos of ``split`` ("train", "val", and for SEWA "test") of the configured dataset.

    ``"training"`` is the training set: ``data.train_splits`` joined (train, or train + val for a final model).
    """
    if split == "training":
        return [r for s in cfg.train_splits for r in index_records(cfg, s)]
    root = resolve_root(cfg)
    if cfg.dataset == "sewa":
        recordings = split_recordings(root, cfg.sewa, split, cfg.fold)
        return index_sewa(root, recordings, split, cfg.sewa)[0]
    if split == "test" and cfg.dataset == "affwild2":
        return index_test_split(root, cfg.test_list, cfg.default_fps)
    if split not in ("train", "val"):
        raise DataError(f"{root}: {cfg.dataset} has splits train and val (and, for affwild2, the unlabelled test), "
                        f"not {split!r}")
    return index_split(root, split, cfg.default_fps, drift_tolerance=cfg.drift_tolerance,
                       fps_from_audio=cfg.fps_from_audio)[0]


def compute_audio(records: list[VideoRecord], cfg: AudioConfig) -> dict[str, np.ndarray]:
    """Raw (unstandardised) audio features per record, (n_frames, dim) each."""
    return {r.name: video_audio_features(r.audio, r.n_frames, r.fps, cfg) for r in records}


@dataclass
class SplitData:
    records: list[VideoRecord]
    audio: dict[str, np.ndarray]   # standardised
    store: str = "jpeg"            # where build_dataset reads the crops from (DataConfig.store)
    packed: PackedCrops | None = field(default=None, init=False, repr=False, compare=False)  # opened once

    def read_image(self) -> Callable[[VideoRecord, int], np.ndarray]:
        """The crop reader of this split's store; a packed store is opened (and checked) once per split."""
        if self.store != "packed":
            return read_crop
        if self.packed is None:
            self.packed = PackedCrops(self.records)
        return self.packed


def load_split(cfg: DataConfig, split: str, standardiser: AudioStandardiser | None = None
               ) -> tuple[SplitData, AudioStandardiser]:
    """Index ``split`` and compute its standardised audio features.

    Without a ``standardiser`` one is fitted on this split's usable frames: call it so for the training
    split only, and pass the result (or the one stored in a checkpoint) for every other split.
    """
    records = index_records(cfg, split)
    raw = compute_audio(records, cfg.audio)
    if standardiser is None:
        usable = np.concatenate([raw[r.name][r.frames - 1] for r in records])
        heard = usable[np.any(usable != 0, axis=1)]  # missing or silent audio is all zeros: not a measurement
        standardiser = AudioStandardiser.fit(heard if len(heard) else usable)
    return SplitData(records, {k: _standardise(standardiser, v) for k, v in raw.items()}, cfg.store), standardiser


def _standardise(standardiser: AudioStandardiser, features: np.ndarray) -> np.ndarray:
    """Standardised features, with frames that have no audio (all-zero rows) kept at exactly zero.

    Zero then means "no audio" (the mean of the training audio), rather than the out-of-range values
    that standardising raw zeros would give.
    """
    silent = ~np.any(features != 0, axis=1)
    out = standardiser(features)
    out[silent] = 0.0
    return out


def build_dataset(split: SplitData, image_size: int, degrade: DegradeConfig | None,
                  fixed_seed_base: int | None = None, faces_as_uint8: bool = False) -> AffectFrameDataset:
    """The samples of ``split``, with crops read from its store (``data.store``: JPEG files or packed; same pixels).

    ``faces_as_uint8``: uint8 faces, for a loader whose consumer converts them on its device (training).
    """
    degrader = Degrader(degrade) if degrade is not None else None
    return AffectFrameDataset(split.records, image_size, split.audio, degrader, fixed_seed_base, split.read_image(),
                              faces_as_uint8=faces_as_uint8)


def scoring_dataset(split: SplitData, image_size: int, degrade: DegradeConfig | None) -> AffectFrameDataset:
    """Frames to score (validation, evaluation), with a degraded view of *every* frame when ``degrade`` is on.

    No clean share, so the restored-vs-degraded scores measure restoration, and seeds fixed by the frame's
    position (disjoint from training's), so every evaluation sees the same degraded faces. Training's
    validation and ``evaluate.py`` build their data here, so their numbers agree.
    """
    scored = dataclasses.replace(degrade, clean_share=0.0) if degrade is not None and degrade.enabled else None
    return build_dataset(split, image_size, scored, fixed_seed_base=VAL_SEED_BASE)


def corruption_dataset(split: SplitData, image_size: int,
                       corruption: Callable[[np.ndarray, int], np.ndarray] | None) -> AffectFrameDataset:
    """Frames to score under one corruption of the robustness protocol (``data.samples.corruptions``).

    Every frame gets ``face_degraded`` = the corrupted crop, seeded by the frame's identity
    (:func:`~data.samples.corruptions.frame_seed`); None gives the clean frames of :func:`scoring_dataset`
    without a degradation, in the same order.
    """
    return AffectFrameDataset(split.records, image_size, split.audio, corruption, None, split.read_image(),
                              frame_seed=frame_seed if corruption is not None else None)


class ConditionFrames(torch.utils.data.Dataset):
    """Every frame of a split under each of several corruptions, condition by condition, in one dataset.

    Item ``c * frames + i`` is frame ``i`` of :func:`corruption_dataset` under ``corruptions[c]`` (None: clean),
    with its condition's number under ``"condition"``. One loader (and one set of worker processes) then serves a
    whole robustness run, prefetching across the conditions' boundaries.
    """

    def __init__(self, split: SplitData, image_size: int,
                 corruptions: list[Callable[[np.ndarray, int], np.ndarray] | None]):
        self.sets = [corruption_dataset(split, image_size, c) for c in corruptions]
        self.frames = len(self.sets[0])

    def __len__(self) -> int:
        return len(self.sets) * self.frames

    def __getitem__(self, key: int) -> dict:
        condition, index = divmod(int(key), self.frames)
        return {**self.sets[condition][index], "condition": condition}


def condition_loader(split: SplitData, image_size: int,
                     corruptions: list[Callable[[np.ndarray, int], np.ndarray] | None],
                     batch_size: int, num_workers: int = 0) -> DataLoader:
    """Ordered batches of :class:`ConditionFrames`, none of which mixes two conditions."""
    dataset = ConditionFrames(split, image_size, corruptions)
    n = dataset.frames
    batches = [list(range(c * n + i, c * n + min(i + batch_size, n)))
               for c in range(len(corruptions)) for i in range(0, n, batch_size)]
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate)


def corruption_sets(split: SplitData, image_size: int, frames: int,
                    selected: list[tuple[str, int]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed (clean, corrupted) batches of ``frames`` frames spread over the split, one per ``(artefact, severity)``
    of the robustness protocol, keyed ``"<artefact>-<severity>"``; the same frames and seeds as the protocol
    gives them (:func:`corruption_dataset`), for :func:`gan.inference.restoration_scores`."""
    plain = corruption_dataset(split, image_size, None)
    picks = np.linspace(0, len(plain) - 1, min(frames, len(plain))).astype(int)
    clean = torch.stack([plain[int(i)]["face"] for i in picks])
    out = {}
    for artefact, severity in selected:
        dataset = corruption_dataset(split, image_size, Corruption(artefact, severity) if severity else None)
        key = "face_degraded" if severity else "face"
        out[f"{artefact}-{severity}"] = (clean, torch.stack([dataset[int(i)][key] for i in picks]))
    return out


def restoration_sets(split: SplitData, image_size: int, degrade: DegradeConfig, frames: int = 256,
                     seed_base: int = VAL_SEED_BASE) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed (clean, degraded) batches for restoration scores: each artefact alone, and all of them mixed.

    ``frames`` frames spread evenly over the split are degraded by blur, noise, downscale and colour alone
    (at the configured strengths) and by the training mix without its clean share (``all``), with seeds
    fixed by the frame's position, so every evaluation scores the same degraded faces; ``clean`` passes the
    clean face itself (its degraded-vs-clean PSNR is the 100 dB cap), measuring the AEG's fidelity. Tensors are
    (frames, 3, image_size, image_size) in [-1, 1].
    """
    plain = build_dataset(split, image_size, None)
    picks = np.linspace(0, len(plain) - 1, min(frames, len(plain))).astype(int)
    images = [read_rgb(record.image_path(frame)) for record, frame in (plain.locate(int(i)) for i in picks)]
    clean = torch.stack([to_tensor(plain.resize(image)) for image in images])
    degrader = Degrader(dataclasses.replace(degrade, enabled=True, clean_share=0.0))
    makers = {name: degrader.single(name) for name in ARTEFACTS}
    makers["all"] = degrader
    makers["clean"] = lambda image, _seed: image   # the AEG's own fidelity: how well it reproduces a clean face
    return {name: (clean, torch.stack([to_tensor(plain.resize(make(image, seed_base + k)))
                                       for k, image in enumerate(images)]))
            for name, make in makers.items()}


class ResumableShuffleSampler(Sampler):
    """Endless stream of global batches of ``(index, seed)`` keys; this process yields its shard of each.

    Position p of the stream (p = samples consumed since step 0) maps to epoch p // n and to the
    permutation of that epoch drawn from ``seed`` and the epoch number; the sample's degradation seed is
    derived from (seed, p). Step s covers positions [s * B, (s + 1) * B) for the global batch B, and a
    process of a data-parallel job takes the positions ``shard`` of that range. The stream is therefore a
    pure function of (seed, step): starting at ``start_step`` resumes exactly where an interrupted run
    stopped, whatever the loader's prefetching had read ahead and whatever the number of processes.
    """

    def __init__(self, n: int, seed: int, global_batch: int, start_step: int = 0, shard: slice | None = None):
        if n <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.seed, self.global_batch, self.start_step = n, seed, global_batch, start_step
        self.shard = shard or slice(0, global_batch)
        self._epoch, self._perm = -1, None

    def key(self, p: int) -> tuple[int, int]:
        """The (index, seed) at stream position ``p``."""
        epoch, offset = divmod(p, self.n)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(self._perm[offset]), (self.seed * 1_000_003 + p) % (2**31 - 1)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            first = step * self.global_batch
            yield [self.key(first + i) for i in range(self.shard.start, self.shard.stop)]
            step += 1

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader never needs it with an endless sampler
        raise TypeError("ResumableShuffleSampler is endless")


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep strings and ints as lists."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def train_loader(dataset: AffectFrameDataset, batch_size: int, seed: int, start_step: int,
                 num_workers: int, pin_memory: bool = False, shard: slice | None = None) -> DataLoader:
    """Endless training loader from ``start_step`` of the (seed-determined) stream of global batches.

    ``batch_size`` is the global batch; ``shard`` selects this process's part of each batch (all of it
    by default).
    """
    sampler = ResumableShuffleSampler(len(dataset), seed, batch_size, start_step, shard)
    # A loader draws its workers' base seed from the global torch RNG unless given its own generator; that
    # draw would shift the training loop's random stream when a resumed run creates its loader.
    own_rng = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0, generator=own_rng, worker_init_fn=_ignore_sigint)


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is the main process's to handle (it saves last.pt); a worker that died of it would lose that."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def eval_loader(dataset: AffectFrameDataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Ordered loader over every frame once."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate)
