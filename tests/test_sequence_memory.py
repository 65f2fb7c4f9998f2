"""Sequence models at Aff-Wild2 size: face maps from the memory-mapped face cache (bit for bit those of
face_maps, rebuilt when the crop set changes, the same training batches) and prediction in windows (equal to
whole-recording prediction for every model with a finite receptive field)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from baselines.aminbeidokhti import AminbeidokhtiConfig, AugmentedEnsemble, TemporalAttentionNet
from baselines.pandit import PanditCNN, PanditConfig, fold_b_into_d
from baselines.raju import RajuConfig, RajuRNN
from baselines.temporal_conv import TemporalConvConfig, TemporalConvNet
from data.datasets.affwild2 import VideoRecord
from data.errors import DataError
from data.samples.sequences import (
    FaceMaps,
    Sequence,
    cached_face_maps,
    collate_sequences,
    face_cache_dir,
    face_maps,
)
from runconfig import RunConfig
from training.sequence_inputs import predict_sequences, prediction_windows, run_model
from training.sequence_loop import training_batch

SIZE, F = 8, 5


def _record(root: Path, name: str, n_frames: int, missing: set[int], seed: int = 0) -> VideoRecord:
    """A recording of random 20 px JPEG crops, frames in ``missing`` (1-based) without a crop."""
    rng = np.random.default_rng(seed)
    folder = root / "cropped_aligned" / name
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, n_frames + 1):
        if k not in missing:
            cv2.imwrite(str(folder / f"{k:05d}.jpg"), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    labels = rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32)
    return VideoRecord(name, "train", root / f"{name}.txt", folder, None, 30.0, labels,
                       np.arange(1, n_frames + 1))


def _bits(maps) -> np.ndarray:
    return np.asarray(maps).view(np.uint16)


def _cache_files(name: str) -> list[Path]:
    return sorted(face_cache_dir().glob(f"{name}-*.npy"))


def test_cached_maps_are_face_maps_bit_for_bit_whole_sliced_and_per_frame(tmp_path):
    records = [_record(tmp_path, "a", 30, {1, 7, 8, 30}), _record(tmp_path, "b", 12, set(), seed=1)]
    maps = cached_face_maps(records, SIZE)
    for record, cached in zip(records, maps, strict=True):
        old = face_maps(record, SIZE)
        assert isinstance(cached, FaceMaps) and isinstance(cached.crops, np.memmap)
        assert cached.shape == old.shape and len(cached) == len(old) and cached.dtype == old.dtype
        assert np.array_equal(_bits(cached), _bits(old))
        for index in (slice(3, 11), slice(None), 6, -1):
            assert np.array_equal(_bits(cached[index]), _bits(old[index])), index
    assert not np.asarray(maps[0][6]).any()   # frame 7 has no crop: zeros, as face_maps gives
    again = cached_face_maps(records, SIZE)    # served from the files written above
    assert [m.crops.filename for m in again] == [m.crops.filename for m in maps]


def test_a_changed_crop_set_or_a_broken_cache_file_is_decoded_again(tmp_path):
    record = _record(tmp_path, "c", 20, {4})
    first = cached_face_maps([record], SIZE)[0]
    (path,) = _cache_files("c")
    rng = np.random.default_rng(5)
    cv2.imwrite(str(record.image_path(2)), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))   # rewritten in place
    os.utime(record.image_path(2), ns=(1, 1))
    rewritten = cached_face_maps([record], SIZE)[0]
    assert np.array_equal(_bits(rewritten), _bits(face_maps(record, SIZE)))
    assert not np.array_equal(_bits(rewritten[1]), _bits(first[1]))
    record.image_path(9).unlink()                                                                # removed
    cv2.imwrite(str(record.image_path(4)), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))   # added
    moved = cached_face_maps([record], SIZE)[0]
    assert np.array_equal(_bits(moved), _bits(face_maps(record, SIZE))) and not moved[8].any() and moved[3].any()
    (newer,) = _cache_files("c")             # one file per recording and size: the stale ones are gone
    assert newer != path
    newer.write_bytes(newer.read_bytes()[:200])   # a torn or foreign file is rebuilt, not served
    again = cached_face_maps([record], SIZE)[0]
    assert np.array_equal(_bits(again), _bits(face_maps(record, SIZE)))


def test_a_corrupt_crop_is_a_data_error_naming_it_and_leaves_no_cache(tmp_path):
    record = _record(tmp_path, "bad", 6, set())
    record.image_path(3).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="00003.jpg"):
        cached_face_maps([record], SIZE)
    assert not _cache_files("bad") and not list(face_cache_dir().glob(".bad-*"))


def test_caches_are_built_by_worker_processes_with_the_same_values(tmp_path):
    records = [_record(tmp_path, f"w{i}", 9, {2}, seed=i) for i in range(3)]
    maps = cached_face_maps(records, SIZE, workers=2)
    for record, cached in zip(records, maps, strict=True):
        assert isinstance(cached, FaceMaps) and np.array_equal(_bits(cached), _bits(face_maps(record, SIZE)))


@pytest.mark.parametrize("chunk", [0, 7])
def test_a_training_batch_from_the_cache_equals_one_from_maps_in_ram(tmp_path, chunk):
    records = [_record(tmp_path, f"t{i}", 10 + 3 * i, {2, 5}, seed=i) for i in range(4)]
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(r.n_frames, F)).astype(np.float32) for r in records]

    def sequences(maps):
        return [Sequence(r.name, x, r.labels, m) for r, x, m in zip(records, features, maps, strict=True)]

    cached, in_ram = sequences(cached_face_maps(records, SIZE)), sequences([face_maps(r, SIZE) for r in records])
    cfg = RunConfig(seed=3)
    cfg = dataclasses.replace(cfg, sequence=dataclasses.replace(cfg.sequence, recordings=2, chunk=chunk))
    for step in range(4):
        a, b = training_batch(cached, cfg, step), training_batch(in_ram, cfg, step)
        assert a["names"] == b["names"]
        for key in ("features", "labels", "mask", "valid", "maps"):
            assert torch.equal(a[key], b[key]), key


def _finite_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    pandit_b = PanditCNN(PanditConfig(model="B", kernel=20), F)
    return {
        "pandit_A": PanditCNN(PanditConfig(model="A", hidden=3), F),
        "pandit_D": fold_b_into_d(pandit_b),
        "pandit_E": PanditCNN(PanditConfig(model="E", kernel=11, features=[0, 3]), F),
        "temporal_conv": TemporalConvNet(TemporalConvConfig(channels=4, blocks=3), F),
        "temporal_attention": TemporalAttentionNet(AminbeidokhtiConfig(window=9, cnn_channels=[4], heads=2,
                                                                       attention_hidden=4), 3),
        "augmented_ensemble": AugmentedEnsemble(AminbeidokhtiConfig(model="augmented_ensemble", window=6,
                                                                    cnn_channels=[4], hidden=6, streams=[2, 3]),
                                                F, map_channels=3),
    }


def _long_recordings(seed: int = 0) -> list[Sequence]:
    """One recording of many chunks, and shorter ones that share a forward pass."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate((700, 45, 3, 130)):
        maps = rng.uniform(-1, 1, (n, 3, SIZE, SIZE)).astype(np.float16)
        out.append(Sequence(f"r{i}", rng.normal(size=(n, F)).astype(np.float32),
                            np.zeros((n, 2), np.float32), maps))
    return out


@pytest.mark.parametrize("name", list(_finite_models()))
def test_chunked_prediction_equals_whole_recording_prediction_for_finite_receptive_fields(name):
    model = _finite_models()[name]
    sequences = _long_recordings()
    whole = predict_sequences(model, sequences, batch_size=4, chunk=0)
    chunked = predict_sequences(model, sequences, batch_size=4, chunk=64)
    assert len(prediction_windows([len(s) for s in sequences], 64, model.temporal_context())) > 12
    for a, b in zip(whole, chunked, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(_finite_models()))
def test_a_recordings_outputs_do_not_depend_on_what_it_is_batched_with(name):
    """What makes windows of different lengths in one forward pass exact (Pandit's model A once let its hidden
    layers' bias leak from padded steps into real ones)."""
    model = _finite_models()[name].eval()
    short, long = _long_recordings()[1], _long_recordings()[0]
    with torch.no_grad():
        alone = run_model(model, collate_sequences([short]))[0]
        batched = run_model(model, collate_sequences([short, long]))[0, :len(short)]
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-6)


def test_chunks_without_enough_context_would_differ():
    """The equality above is not vacuous: a window cut without the receptive field changes the outputs."""
    model = _finite_models()["temporal_conv"]
    model.temporal_context = lambda: (0, 0)
    sequences = _long_recordings()
    whole, chunked = (predict_sequences(model, sequences, 4, chunk=c) for c in (0, 64))
    assert np.abs(whole[0] - chunked[0]).max() > 1e-3


@pytest.mark.parametrize("arch", ["EAF", "AED", "EMAFN"])
def test_recurrent_models_are_predicted_exactly_with_their_faces_read_in_chunks(arch):
    """Raju's RNNs see whole recordings: by default their per-step inputs (the faces' CNN included) are computed
    a chunk at a time and the RNN runs over the whole recording (exact); a window context N > 0 is an
    approximation, exact only once the windows reach the recordings' ends."""
    torch.manual_seed(0)
    model = RajuRNN(RajuConfig(model=arch, hidden=4, cnn_channels=[4]), F, map_channels=3).eval()
    assert model.temporal_context() is None
    sequences = _long_recordings()[1:3]
    whole = predict_sequences(model, sequences, 4, chunk=0)
    for chunk, context, exact in ((20, 0, True), (5, 0, True), (20, 2, False), (20, 50, True)):
        chunked = predict_sequences(model, sequences, 4, chunk=chunk, recurrent_context=context)
        gap = max(np.abs(a - b).max() for a, b in zip(whole, chunked, strict=True))
        assert (gap < 1e-5) if exact else (gap > 1e-4), (chunk, context, gap)
    assert model.decoder is None or model.decoder.last_weights is None   # no (T, T) matrix kept when predicting
