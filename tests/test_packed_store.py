"""The packed crop store (data.store=packed): same samples as the JPEG files, refused when stale or unfinished,
and a pack command that resumes. Values are compared exactly; a store that read another frame, decoded other
bytes or skipped a check fails here."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import data.samples.packed as packed_module
from data import pack
from data.errors import DataError
from data.samples.loaders import DataConfig, build_dataset, collate, load_split, scoring_dataset, train_loader
from data.samples.packed import STORE_DIR, PackedCrops, pack_path, read_index
from tests.fixtures import write_affwild2

VIDEOS = {"a": ("train", 24, (5, 6)), "b-30-640x480": ("train", 31, (12,)), "c": ("train", 9, ()),
          "d": ("val", 14, (2,))}   # name: (split, frames, frames without a crop)


def textured_face(k: int) -> np.ndarray:
    """A 112 px crop with texture, so JPEG bytes, degradations and resizes all have something to change."""
    rng = np.random.default_rng(k)
    image = cv2.resize(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (56, 56), 20 + k % 15, (int(k * 37 % 255), 90, 200), -1)
    return image


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small Aff-Wild2 tree: four videos (one in val), missing crops, one invalid label, 112 px JPEGs."""
    videos = {}
    for name, (split, n, missing) in VIDEOS.items():
        labels = np.stack([np.linspace(-0.9, 0.9, n), np.linspace(0.8, -0.7, n)], axis=1)
        labels[n // 2] = -5
        videos[name] = {"split": split, "labels": labels, "missing": missing}
    write_affwild2(tmp_path, "abaw_later", videos)
    for jpg in (tmp_path / "cropped_aligned").rglob("*.jpg"):
        k = int(jpg.stem) + 100 * sorted(VIDEOS).index(jpg.parent.name)
        assert cv2.imwrite(str(jpg), textured_face(k), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return tmp_path


def config(root: Path, store: str) -> DataConfig:
    cfg = DataConfig(dataset="affwild2", root=str(root), store=store)
    cfg.audio.enabled = False
    cfg.validate()
    return cfg


def run_pack(root: Path, *extra: str) -> int:
    return pack.main([str(root), "--workers", "1", *extra])


def assert_same_samples(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == b[key].dtype and torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def test_packed_samples_are_bit_identical_to_jpeg_samples(root: Path) -> None:
    assert run_pack(root) == 0
    jpeg_split, _ = load_split(config(root, "jpeg"), "train")
    packed_split, _ = load_split(config(root, "packed"), "train")
    jpeg = build_dataset(jpeg_split, 128, config(root, "jpeg").degrade)
    packed = build_dataset(packed_split, 128, config(root, "packed").degrade)
    assert isinstance(packed.read_image, PackedCrops)
    keys = [(i, 1000 + 7 * i) for i in range(len(jpeg))]
    reference = [jpeg[key] for key in keys]
    assert sum(not torch.equal(s["face"], s["face_degraded"]) for s in reference) > len(keys) // 2  # degraded
    assert len({s["video"] for s in reference}) == 3
    # the crop files go away: every packed sample must now come from the pack alone
    shutil.move(root / "cropped_aligned", root / "moved")
    for key, expected in zip(keys, reference, strict=True):
        assert_same_samples(expected, packed[key])
    first = next(iter(train_loader(packed, 8, seed=3, start_step=2, num_workers=1)))   # a forked worker maps
    shutil.move(root / "moved", root / "cropped_aligned")
    assert_same_samples(next(iter(train_loader(jpeg, 8, seed=3, start_step=2, num_workers=0))), first)


def test_validation_scoring_samples_are_identical(root: Path) -> None:
    assert run_pack(root) == 0
    sets = {}
    for store in ("jpeg", "packed"):
        cfg = config(root, store)
        split, _ = load_split(cfg, "val")
        sets[store] = scoring_dataset(split, 112, cfg.degrade)
    batch = collate([sets["jpeg"][i] for i in range(len(sets["jpeg"]))])
    assert_same_samples(batch, collate([sets["packed"][i] for i in range(len(sets["packed"]))]))
    assert not torch.equal(batch["face"], batch["face_degraded"])


def test_no_store_or_unfinished_store_is_refused(root: Path) -> None:
    cfg = config(root, "packed")
    split, _ = load_split(cfg, "train")
    with pytest.raises(DataError, match=r"^a: no packed crops .*python -m data\.pack") as info:
        build_dataset(split, 64, None)
    assert "\n" not in str(info.value)
    assert run_pack(root) == 0
    target = pack_path(root / "cropped_aligned" / "a")
    whole = target.read_bytes()
    # a pack killed before its rename: only the temporary file is there
    target.unlink()
    target.with_name("a.pack.tmp").write_bytes(whole[: len(whole) // 2])
    split, _ = load_split(cfg, "train")
    with pytest.raises(DataError, match=r"^a: no packed crops .*unfinished a\.pack\.tmp of an interrupted pack"):
        build_dataset(split, 64, None)
    # a copy cut short, and a file whose table of contents was never written
    for broken, why in ((whole[: len(whole) - 100], "incomplete pack"), (b"\0" * len(whole), "bad header")):
        target.write_bytes(broken)
        split, _ = load_split(cfg, "train")
        with pytest.raises(DataError, match=rf"^a: .*a\.pack: .*{why}.*re-run `python -m data\.pack"):
            build_dataset(split, 64, None)
    assert run_pack(root) == 0       # repacks 'a', removes the temporary file
    assert target.read_bytes() == whole and not target.with_name("a.pack.tmp").exists()
    build_dataset(load_split(cfg, "train")[0], 64, None)


def test_store_that_does_not_match_the_crops_is_refused(root: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert run_pack(root) == 0
    cfg = config(root, "packed")
    crops = root / "cropped_aligned" / "b-30-640x480"
    # crops rewritten after packing (a re-crop): caught by the first/middle/last spot checks
    first = crops / "00001.jpg"
    original = first.read_bytes()
    assert cv2.imwrite(str(first), textured_face(999))
    with pytest.raises(DataError, match=r"^b-30-640x480: packed crops .* do not match .*00001\.jpg differs.*"
                                        r"re-run `python -m data\.pack"):
        build_dataset(load_split(cfg, "train")[0], 64, None)
    first.write_bytes(original)
    # a crop added after packing (a frame that had none)
    shutil.copy(crops / "00011.jpg", crops / "00012.jpg")
    with pytest.raises(DataError, match=r"^b-30-640x480: .*1 crop\(s\) not in the pack, e\.g\. 00012\.jpg"):
        build_dataset(load_split(cfg, "train")[0], 64, None)
    # one crop edited in place off the spot checks: the open does not see it, --check (every crop) does
    (crops / "00012.jpg").unlink()
    assert cv2.imwrite(str(crops / "00004.jpg"), textured_face(998))
    build_dataset(load_split(cfg, "train")[0], 64, None)
    assert run_pack(root, "--check") == 1
    assert "b-30-640x480: stale (00004.jpg differs" in caplog.text
    # a re-run repacks what changed; then the pack holds the new bytes
    assert run_pack(root) == 0 and run_pack(root, "--check") == 0
    assert "b-30-640x480: repacked (00004.jpg differs" in caplog.text
    index = read_index(pack_path(crops))
    assert 4 in index.frames and packed_module.pack_bytes(index, index.position(4)) == (crops / "00004.jpg").read_bytes()


def test_interrupted_pack_resumes_and_skips_complete_videos(root: Path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    reads = {"n": 0}
    real_read = packed_module.read_crop_bytes

    def failing_read(path: Path) -> bytes:
        reads["n"] += 1
        if reads["n"] > 30:   # 'a' (22 crops) is complete, 'b-30-640x480' dies half-way
            raise DataError(f"{path}: cannot read image file (simulated failure)")
        return real_read(path)

    monkeypatch.setattr(packed_module, "read_crop_bytes", failing_read)
    assert run_pack(root) == 2
    store = root / STORE_DIR
    assert sorted(p.name for p in store.glob("*.pack")) == ["a.pack"]   # the pack stopped at b's failure
    assert not list(store.glob("*.tmp"))   # a pack that raised removes its temporary file
    (store / "b-30-640x480.pack.tmp").write_bytes(b"half a pack")   # what a kill leaves (test_atomic_write.py)
    monkeypatch.setattr(packed_module, "read_crop_bytes", real_read)   # one worker packs in this process
    cfg = config(root, "packed")
    with pytest.raises(DataError, match=r"^b-30-640x480: no packed crops .*interrupted pack"):
        build_dataset(load_split(cfg, "train")[0], 64, None)
    done = (store / "a.pack").stat()
    caplog.clear()
    assert run_pack(root) == 0
    assert (store / "a.pack").stat().st_ino == done.st_ino and (store / "a.pack").stat().st_mtime_ns == done.st_mtime_ns
    assert "packed 3, skipped 1" in caplog.text and not list(store.glob("*.tmp"))
    assert sorted(p.name for p in store.glob("*.pack")) == [f"{v}.pack" for v in sorted(VIDEOS)]
    build_dataset(load_split(cfg, "train")[0], 64, None)


def test_bad_crops_in_a_pack_are_named(root: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    crop = root / "cropped_aligned" / "c" / "00003.jpg"
    crop.write_bytes(crop.read_bytes()[:-300])
    bad = root / "cropped_aligned" / "c" / "00007.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    assert run_pack(root) == 0
    assert "c: 1 crop(s) without an end-of-image marker, e.g. 00003.jpg" in caplog.text
    for store in ("jpeg", "packed"):
        ds = build_dataset(load_split(config(root, store), "train")[0], 64, None)
        index = {(ds.locate(i)[0].name, ds.locate(i)[1]): i for i in range(len(ds))}
        with pytest.raises(DataError, match=rf"^{re.escape(str(crop))}.*: truncated JPEG \(no end-of-image marker\)$"):
            ds[index[("c", 3)]]
        with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}.*: cannot decode image"):
            ds[index[("c", 7)]]


def test_store_key_is_checked() -> None:
    with pytest.raises(ValueError, match="data.store must be one of"):
        DataConfig(store="lmdb").validate()
