"""What the sequence models read and how they are built: per-recording inputs, models, per-frame predictions.

Shared by the training loop (``training/sequence_loop.py``) and ``evaluate.py``, so a checkpoint is scored on
exactly the inputs it was trained on. A recording's inputs are its per-frame features and, for the
spatial-attention models, its face crops (``sequence.maps=faces``). ``sequence.features``:

* ``egemaps`` — the ALN pipeline's per-frame audio vector (two LLD rows per frame, standardised on training);
* ``egemaps_hop`` — the 25 eGeMAPS LLDs averaged over each frame's hop, z-scored per recording;
* ``avec`` — AVEC 2018/2019 feature files (``features_dir/<recording>.csv``, any of the challenge's sets) at
  the nearest row to each frame time, z-scored per recording;
* ``aln`` — per-frame ALN features exported from a checkpoint (``features_dir``, or on the fly from
  ``aln_checkpoint``). Labels are shifted earlier by the
annotator delays for training; predictions are shifted back for scoring (:func:`predict_frames`).

Face crops come from the memory-mapped face cache (``data.samples.sequences.cached_face_maps``), and prediction
runs in windows of ``sequence.predict_chunk`` steps plus each model's context (:func:`predict_sequences`), so
neither a recording's maps nor its activations are ever needed whole (Aff-Wild2's recordings reach 47 k frames).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from baselines.aminbeidokhti import AugmentedEnsemble, TemporalAttentionNet
from baselines.pandit import PanditCNN, feature_attribution, fold_b_into_d, save_attribution_png
from baselines.raju import RajuRNN
from baselines.temporal_conv import TemporalConvNet
from data.datasets.affwild2 import VideoRecord
from data.datasets.avec_features import align_to_labels, read_feature_file
from data.errors import DataError
from data.preprocess.audio import N_LLD, AudioStandardiser, lld_names, lld_track, pool_to_hop
from data.samples.loaders import SplitData, load_split
from data.samples.sequences import (
    INVALID,
    Sequence,
    cached_face_maps,
    collate_sequences,
    delay_labels,
    face_maps,
)
from fileio.atomic import atomic_open
from gan.checkpoint import CheckpointError, load_checkpoint
from gan.features import LAYOUT
from gan.inference import Predictions
from runconfig import ConfigError, RunConfig, build_config
from training.export_features import checkpoint_fingerprint, export

log = logging.getLogger(__name__)

PREDICT_CHUNK = 4096     # sequence.predict_chunk's default (baselines.sequence_config.SequenceSection), for direct callers
PREDICT_CONTEXT = 0      # sequence.predict_context's default


def dimensions(cfg: RunConfig) -> tuple[str, ...]:
    """The predicted dimensions, in label column order."""
    return ("valence", "arousal", "liking") if cfg.sequence.liking else ("valence", "arousal")


def delays_in_steps(cfg: RunConfig, fps: float) -> list[int]:
    s = cfg.sequence
    seconds = [s.delay_valence, s.delay_arousal] + ([s.delay_liking] if s.liking else [])
    return [round(d * fps) for d in seconds]


def labels_of(record: VideoRecord, cfg: RunConfig) -> np.ndarray:
    """(n_frames, D) labels: valence, arousal and, with ``sequence.liking``, liking (INVALID where unknown)."""
    labels = np.asarray(record.labels, np.float32)
    if not cfg.sequence.liking:
        return labels
    liking = record.liking if record.liking is not None else np.full(len(labels), INVALID, np.float32)
    return np.concatenate([labels, np.asarray(liking, np.float32)[:, None]], axis=1)


def sequences_of(split: SplitData, cfg: RunConfig, export: bool = True,
                 corruption: Callable[[np.ndarray, int], np.ndarray] | None = None) -> list[Sequence]:
    """One sequence per recording: its per-frame features, its labels delayed per dimension, its face maps.

    ``export=False`` (scoring) reads the ALN features as they are: a trained head is scored on the features it
    was trained on, never on a fresh export. ``corruption`` (robustness) corrupts every face crop; those maps
    are decoded into RAM, not taken from the face cache."""
    if export:
        ensure_aln_features(cfg)
    columns = None
    if cfg.sequence.features == "aln" and cfg.sequence.aln_parts:
        columns = _part_columns(aln_features_info(cfg)["parts"], cfg.sequence.aln_parts)
    if cfg.sequence.liking:
        without = [r.name for r in split.records if r.liking is None]
        if len(without) == len(split.records):
            raise ConfigError(f"sequence.liking=true, but no recording of {cfg.data.dataset} has liking labels "
                              "(SEWA's label files do)")
        if without:
            log.warning("%d recording(s) without liking labels: their liking counts as unlabelled (%s)",
                        len(without), ", ".join(without[:5]))
    maps = [None] * len(split.records)
    if cfg.sequence.maps == "faces" and corruption is not None:
        maps = [face_maps(r, cfg.sequence.face_size, corruption) for r in split.records]
    elif cfg.sequence.maps == "faces":
        maps = cached_face_maps(split.records, cfg.sequence.face_size, cfg.data.num_workers)
    out = []
    for record, faces in zip(split.records, maps, strict=True):
        labels = delay_labels(labels_of(record, cfg), delays_in_steps(cfg, record.fps))
        out.append(Sequence(record.name, _features(split, record, cfg, columns), labels, faces))
    return out


def ensure_aln_features(cfg: RunConfig) -> None:
    """With ``sequence.aln_checkpoint``, export its features into ``features_dir`` unless they are there already
    (``features.json`` names the same checkpoint file, fingerprint and layout): the documented first step, done
    on the fly. The checkpoint itself is read only to export."""
    s = cfg.sequence
    if s.features != "aln" or not s.aln_checkpoint:
        return
    out, info_path = Path(s.features_dir), Path(s.features_dir) / "features.json"
    if info_path.is_file() and Path(s.aln_checkpoint).is_file():
        info = json.loads(info_path.read_text())
        current = (str(s.aln_checkpoint), LAYOUT, checkpoint_fingerprint(s.aln_checkpoint))
        if (info.get("checkpoint"), info.get("layout"), info.get("fingerprint")) == current and "parts" in info:
            return
    try:
        load_checkpoint(s.aln_checkpoint)
    except CheckpointError as exc:
        raise ConfigError(f"sequence.aln_checkpoint: {exc}; ALN-T reads a trained ALN: run python train.py "
                          "first (its last.pt), or point sequence.aln_checkpoint at one") from None
    log.info("exporting ALN features of %s into %s", s.aln_checkpoint, out)
    export(s.aln_checkpoint, out, [], data_cfg=cfg.data)


def aln_features_info(cfg: RunConfig) -> dict:
    """``features.json`` of the exported ALN features, with the part widths checked."""
    path = Path(cfg.sequence.features_dir) / "features.json"
    try:
        info = json.loads(path.read_text())
        widths = info["parts"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: no part widths ({exc.__class__.__name__}); export the features again with "
                        "python -m training.export_features") from exc
    if sum(widths.values()) != info.get("width"):
        raise DataError(f"{path}: parts {widths} do not add up to the {info.get('width')} columns")
    missing = [p for p in cfg.sequence.aln_parts if p not in widths]
    if missing:
        raise DataError(f"{path.parent}: the exported features have no {missing} part (they hold {list(widths)})")
    return info


def _part_columns(widths: dict[str, int], wanted: list[str]) -> np.ndarray:
    """Column indices of the ``wanted`` parts, from the widths in column order."""
    starts = dict(zip(widths, np.cumsum([0, *widths.values()])[:-1], strict=True))
    return np.concatenate([np.arange(starts[p], starts[p] + widths[p]) for p in wanted])


def _standardise_recording(x: np.ndarray) -> np.ndarray:
    """Per-recording z-score (per-speaker normalisation, common in the AVEC baselines): no statistics to keep."""
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


def _features(split: SplitData, record: VideoRecord, cfg: RunConfig, columns: np.ndarray | None) -> np.ndarray:
    """(n_frames, F) inputs of one recording at its frame times, per ``sequence.features`` (``columns``: the
    selected ALN parts)."""
    name, n_frames, kind = record.name, record.n_frames, cfg.sequence.features
    if kind == "egemaps":
        return np.asarray(split.audio[name], np.float32)   # no copy: the split already holds 200 B per frame
    if kind == "egemaps_hop":
        if record.audio is None or not record.audio.is_file():
            log.warning("%s: no audio file, using zero eGeMAPS features", name)
            return np.zeros((n_frames, N_LLD), np.float32)
        return _standardise_recording(pool_to_hop(lld_track(record.audio, cfg.data.audio), n_frames, 1 / record.fps))
    if kind == "avec":
        path = Path(cfg.sequence.features_dir) / f"{name}.csv"
        if not path.is_file():
            raise DataError(f"{path}: no AVEC feature file for recording {name} (sequence.features_dir holds one "
                            "<recording>.csv per recording)")
        table = align_to_labels(read_feature_file(path), np.arange(n_frames) / record.fps,
                                max_gap_s=cfg.sequence.max_gap_s)
        return _standardise_recording(table)
    path = Path(cfg.sequence.features_dir) / f"{name}.npy"
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: no exported ALN features for {name} ({exc.__class__.__name__}); run "
                        "python -m training.export_features --checkpoint CKPT --out DIR first, or set "
                        "sequence.aln_checkpoint") from exc
    if table.ndim != 2 or len(table) != n_frames:
        raise DataError(f"{path}: expected ({n_frames}, F) features, found {table.shape}")
    if columns is not None:
        table = table[:, columns]
    return table.astype(np.float32)


def with_aln_streams(cfg: RunConfig) -> RunConfig:
    """For Raju's and Aminbeidokhti's models on ALN features with no ``streams`` set: one stream per ALN part
    (z, audio, CD, V/A; those of ``sequence.aln_parts``), read from ``features.json``. The checkpoint stores
    the config with the streams filled in, so evaluation rebuilds the same model."""
    if cfg.sequence.features != "aln" or cfg.system not in ("raju", "aminbeidokhti"):
        return cfg
    section = getattr(cfg.sequence, cfg.system)
    if section.streams:
        return cfg
    widths = aln_features_info(cfg)["parts"]
    streams = [int(widths[p]) for p in (cfg.sequence.aln_parts or list(widths))]
    sequence = dataclasses.replace(cfg.sequence, **{cfg.system: dataclasses.replace(section, streams=streams)})
    return dataclasses.replace(cfg, sequence=sequence)


def build_model(cfg: RunConfig, n_features: int, map_channels: int | None = None) -> torch.nn.Module:
    """The network of ``cfg.system``; Pandit's model D is trained as a linear model B and folded."""
    n = len(dimensions(cfg))
    try:
        if cfg.system == "raju":
            return RajuRNN(cfg.sequence.raju, n_features, n, map_channels)
        if cfg.system == "temporal_conv":
            return TemporalConvNet(cfg.sequence.temporal_conv, n_features, n)
        if cfg.system == "aminbeidokhti":
            a = cfg.sequence.aminbeidokhti
            a.validate(n_features, map_channels is not None)
            if a.model == "temporal_attention":
                return TemporalAttentionNet(a, map_channels, n)
            return AugmentedEnsemble(a, n_features, map_channels, n)
        pandit = cfg.sequence.pandit
        if pandit.model == "D":
            pandit = dataclasses.replace(pandit, model="B", activation="linear")
        return PanditCNN(pandit, n_features, n)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def folds_into_d(cfg: RunConfig) -> bool:
    return cfg.system == "pandit" and cfg.sequence.pandit.model == "D"


def scoring_model(cfg: RunConfig, model: torch.nn.Module) -> torch.nn.Module:
    """The model that predicts: the folded D for Pandit's model D, else the trained one."""
    return fold_b_into_d(model) if folds_into_d(cfg) else model


def sequence_model_from_checkpoint(ckpt: dict) -> tuple[RunConfig, torch.nn.Module]:
    """The config and the predicting model of a sequence checkpoint (``system`` other than aln)."""
    cfg = build_config(ckpt["config"], [])
    model = build_model(cfg, int(ckpt["n_features"]), ckpt.get("map_channels"))
    model.load_state_dict(ckpt["model"])
    return cfg, scoring_model(cfg, model).eval()


def run_model(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(batch["features"], batch["mask"], maps=batch["maps"])


def prediction_settings(cfg: RunConfig) -> tuple[int, int]:
    """(``sequence.predict_chunk``, ``sequence.predict_context``): windows of prediction and validation."""
    return cfg.sequence.predict_chunk, cfg.sequence.predict_context


@dataclasses.dataclass(frozen=True)
class Window:
    """Steps [lo, hi) of recording ``index`` are run; outputs [start, stop) of them are kept."""

    index: int
    lo: int
    hi: int
    start: int
    stop: int


def prediction_windows(lengths: list[int], chunk: int, context: tuple[int, int]) -> list[Window]:
    """Each recording cut into ``chunk`` output steps with ``context`` on both sides (clipped to the recording);
    ``chunk`` 0 keeps recordings whole."""
    left, right = context
    out = []
    for i, n in enumerate(lengths):
        step = chunk or max(n, 1)
        for start in range(0, n, step):
            stop = min(start + step, n)
            out.append(Window(i, max(0, start - left), min(n, stop + right), start, stop))
    return out


def window_batches(windows: list[Window], batch_size: int, chunk: int, context: tuple[int, int]
                   ) -> list[list[Window]]:
    """Windows grouped into forward passes: with ``chunk`` 0, ``batch_size`` recordings each (as whole-recording
    prediction always did); else as many windows as fit in one full window's steps once padded to the longest
    (short recordings share a pass), so a pass never holds more than chunk + context steps."""
    if not chunk:
        return [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    budget = chunk + sum(context)
    batches, current, longest = [], [], 0
    for w in windows:
        longest_with = max(longest, w.hi - w.lo)
        if current and longest_with * (len(current) + 1) > budget:
            batches.append(current)
            current, longest_with = [], w.hi - w.lo
        current.append(w)
        longest = longest_with
    return batches + ([current] if current else [])


@torch.no_grad()
def predict_sequences(model: torch.nn.Module, sequences: list[Sequence], batch_size: int,
                      chunk: int = PREDICT_CHUNK, recurrent_context: int = PREDICT_CONTEXT) -> list[np.ndarray]:
    """(T, D) outputs per recording (output t answers the delayed label t), never holding a whole recording's
    face maps or activations: a 47 k-frame recording costs what a ``chunk``-step one does.

    * Finite receptive field (Pandit's CNNs, ALN-T's temporal convolution, Aminbeidokhti's windowed models,
      ``temporal_context()``): windows of ``chunk`` steps plus that context on each side, keeping each window's
      central outputs. Equal to whole-recording prediction to float rounding (tests/test_sequence_memory.py).
    * Recurrent (Raju's RNNs, ``temporal_context()`` None), ``recurrent_context`` 0 (the default): exact. The
      per-step inputs (features, the faces' CNN stream, EAF's attention front) are computed in chunks and the
      LSTMs and AED's decoder run over whole recordings on those W numbers per step (~80 floats; AED's attention
      costs O(T²) time, as it always did, but no longer a (T, T) matrix). ``recurrent_context`` N > 0 instead
      predicts windows with N steps of context per side: faster for AED on long recordings, but an
      APPROXIMATION (each output sees N steps around its chunk, not the whole recording; measured in docs/scale.md).
    * ``chunk`` 0: whole recordings, ``batch_size`` at a time (the old behaviour, for comparisons)."""
    model.eval()
    context = model.temporal_context() if hasattr(model, "temporal_context") else None
    lengths = [len(s) for s in sequences]
    if context is None and recurrent_context > 0:
        context = (recurrent_context, recurrent_context)
    if context is None and chunk and hasattr(model, "recurrent"):
        return _predict_recurrent(model, sequences, chunk)
    if context is None:   # a model without a known context: whole recordings
        chunk, context = 0, (0, 0)
    filled: list[np.ndarray | None] = [None] * len(sequences)
    for group in window_batches(prediction_windows(lengths, chunk, context), batch_size, chunk, context):
        pred = run_model(model, collate_sequences([_window_of(sequences[w.index], w) for w in group]))
        _keep(filled, lengths, group, pred)
    return _outputs(filled)


def _predict_recurrent(model: torch.nn.Module, sequences: list[Sequence], chunk: int) -> list[np.ndarray]:
    """Exact prediction of a recurrent model: its per-step inputs a chunk at a time, then its recurrent part
    over whole recordings (packed like windows: short recordings share a pass, a long one has its own)."""
    lengths = [len(s) for s in sequences]
    steps: list[np.ndarray | None] = [None] * len(sequences)
    for group in window_batches(prediction_windows(lengths, chunk, (0, 0)), 1, chunk, (0, 0)):
        batch = collate_sequences([_window_of(sequences[w.index], w) for w in group])
        _keep(steps, lengths, group, model.step_inputs(batch["features"], batch["mask"], batch["maps"]))
    filled: list[np.ndarray | None] = [None] * len(sequences)
    whole = prediction_windows(lengths, 0, (0, 0))
    for group in window_batches(whole, 1, chunk, (0, 0)):
        x = torch.zeros(len(group), max(w.hi for w in group), steps[group[0].index].shape[1])
        mask = torch.zeros(x.shape[:2], dtype=torch.bool)
        for j, w in enumerate(group):
            x[j, :w.hi], mask[j, :w.hi] = torch.from_numpy(steps[w.index]), True
        _keep(filled, lengths, group, model.recurrent(x, mask))
    return _outputs(filled)


def _keep(filled: list[np.ndarray | None], lengths: list[int], group: list[Window], out: torch.Tensor) -> None:
    """Copy each window's kept rows of ``out`` (B, T, W) into its recording's (T, W) array."""
    for j, w in enumerate(group):
        kept = out[j, w.start - w.lo:w.stop - w.lo].numpy()
        if filled[w.index] is None:
            filled[w.index] = np.empty((lengths[w.index], kept.shape[1]), np.float32)
        filled[w.index][w.start:w.stop] = kept


def _outputs(filled: list[np.ndarray | None]) -> list[np.ndarray]:
    """The per-recording arrays, an empty recording as (0, W)."""
    width = next((f.shape[1] for f in filled if f is not None), 0)
    return [f if f is not None else np.empty((0, width), np.float32) for f in filled]


def _window_of(sequence: Sequence, w: Window) -> Sequence:
    """Steps [lo, hi) of a recording (a FaceMaps slice copies only those frames' maps)."""
    window = slice(w.lo, w.hi)
    return Sequence(sequence.name, sequence.features[window], sequence.labels[window],
                    None if sequence.maps is None else sequence.maps[window])


def undelay(pred: np.ndarray, delays: list[int]) -> np.ndarray:
    """Predictions aligned with the undelayed labels: frame t takes output t − delay (the first one before it)."""
    out = np.empty_like(pred)
    for d, shift in enumerate(delays):
        out[:, d] = pred[np.clip(np.arange(len(pred)) - shift, 0, len(pred) - 1), d]
    return out


def feature_names(cfg: RunConfig, width: int) -> list[str]:
    """Names of the input columns for plots: eGeMAPS LLD names per LLD frame, else the column index."""
    if cfg.sequence.features in ("egemaps", "egemaps_hop"):
        names = lld_names()
        frames = width // len(names)
        if frames * len(names) == width:
            return [f"{n} +{10 * k} ms" if frames > 1 else n for k in range(frames) for n in names]
    return [f"feature {i}" for i in range(width)]


def attribution_maps(model: torch.nn.Module, cfg: RunConfig, split: SplitData) -> dict[str, np.ndarray]:
    """Pandit et al.'s §5.1 attribution (x·w + b/(F·T_F)) per dimension, averaged over the split's recordings
    that are at least one filter long; only for single-filter models without a dense layer (C, and B folded
    into D)."""
    if not (isinstance(model, PanditCNN) and model.dense is None and model.cfg.model in ("C", "D")):
        return {}
    sequences = [s for s in sequences_of(split, cfg, export=False) if len(s) >= model.cfg.kernel]
    if not sequences:
        log.warning("no recording is as long as the filter (%d steps): no attribution map", model.cfg.kernel)
        return {}
    return {dim: np.mean([feature_attribution(model, s.features, d) for s in sequences], axis=0)
            for d, dim in enumerate(("valence", "arousal"))}


def predict_frames(model: torch.nn.Module, cfg: RunConfig, split: SplitData,
                   corruption: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Predictions:
    """Per-frame predictions at every usable frame of the split, in the layout of ALN's inference: the same
    protocols, files and scorers then apply to a sequence model. ``corruption`` corrupts its face crops."""
    sequences = sequences_of(split, cfg, export=False, corruption=corruption)
    outputs = predict_sequences(model, sequences, cfg.sequence.recordings, *prediction_settings(cfg))
    preds, gold, videos, frames = [], [], [], []
    for record, pred in zip(split.records, outputs, strict=True):
        aligned = undelay(pred, delays_in_steps(cfg, record.fps))
        preds.append(aligned[record.frames - 1])
        gold.append(labels_of(record, cfg)[record.frames - 1])
        videos += [record.name] * len(record.frames)
        frames += [int(f) for f in record.frames]
    pred, gold = np.concatenate(preds), np.concatenate(gold)
    # the V/A protocols read two columns; liking (when predicted) is scored apart by the caller
    liking = (pred[:, 2], gold[:, 2]) if pred.shape[1] > 2 else None
    return Predictions(pred[:, :2], gold[:, :2], videos, frames, liking=liking)


class SequencePredictor:
    """The predictor of a sequence checkpoint; it keeps each split it read for the attribution maps."""

    def __init__(self, ckpt: dict, cfg: RunConfig, standardiser: AudioStandardiser):
        _, self.model = sequence_model_from_checkpoint(ckpt)
        self.cfg, self.standardiser, self.n_features = cfg, standardiser, int(ckpt["n_features"])
        trained_on = ckpt.get("aln_features")
        if cfg.sequence.features == "aln" and trained_on:
            now = aln_features_info(cfg)
            if now.get("fingerprint") != trained_on.get("fingerprint"):
                raise DataError(f"{cfg.sequence.features_dir}: these ALN features come from {now.get('checkpoint')} "
                                f"({now.get('fingerprint')}), not from the ALN checkpoint this model was trained "
                                f"on ({trained_on.get('checkpoint')}, {trained_on.get('fingerprint')}); export "
                                "that one's features, or train this model again")
        self.splits: dict[str, SplitData] = {}

    @property
    def takes_faces(self) -> bool:
        return self.cfg.sequence.maps == "faces"

    def __call__(self, split: str, degraded_views: bool = False,
                 corruption: Callable[[np.ndarray, int], np.ndarray] | None = None
                 ) -> tuple[list, Predictions, dict]:
        """``(records, predictions, {})`` on ``split``; ``corruption`` corrupts the face crops it reads."""
        if split not in self.splits:
            self.splits[split] = load_split(self.cfg.data, split, self.standardiser)[0]
        data = self.splits[split]
        return data.records, predict_frames(self.model, self.cfg, data, corruption), {}

    def attribution_pngs(self, out: Path, split: str, label: str) -> list[Path]:
        """Pandit et al.'s §5.1 heatmaps (PiYG, centred at 0) of a single-filter model, one per dimension."""
        written = []
        names = feature_names(self.cfg, self.n_features)
        for dim, attribution in attribution_maps(self.model, self.cfg, self.splits[split]).items():
            path = out / f"attribution_{dim}.png"
            save_attribution_png(attribution, path, names,
                                 title=f"{label}: {dim} attribution x·w + b/(F·T_F), mean over recordings")
            with atomic_open(out / f"attribution_{dim}.npy", "wb") as fh:
                np.save(fh, attribution)
            written.append(path)
        return written
