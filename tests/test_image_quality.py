"""Torch PSNR/SSIM (scoring.image_quality) against scikit-image and NumPy, and validation's reuse of fixed scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity

from gan.inference import DegradedReference, degraded_references, predict_batches, restoration_scores
from gan.models import ALN, ModelConfig
from scoring.image_quality import psnr_per_image, ssim_per_image
from scoring.metrics import score_va


def _faces(n: int = 4, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Crops of a real face photo in [-1, 1] (B, 3, size, size), and a noisy, darkened copy of them."""
    photo = skdata.astronaut()[30:30 + 2 * size, 150:150 + 2 * size].astype(np.float64) / 127.5 - 1
    rng = np.random.default_rng(0)
    crops = np.stack([photo[i * 8:i * 8 + size, i * 8:i * 8 + size].transpose(2, 0, 1) for i in range(n)])
    degraded = np.clip(0.8 * crops + rng.normal(0, 0.08 * (1 + np.arange(n))[:, None, None, None], crops.shape),
                       -1, 1)
    return crops, degraded


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([structural_similarity(a[i], b[i], channel_axis=0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=2.0) for i in range(len(a))])


def test_float32_ssim_matches_scikit_image_per_image_to_1e5():
    clean, degraded = _faces()
    expected = _skimage_ssim(degraded, clean)
    assert np.ptp(expected) > 0.05   # the images differ in quality, so a constant answer would fail
    got = ssim_per_image(torch.from_numpy(degraded).float(), torch.from_numpy(clean).float())
    assert got.dtype == torch.float64 and got.shape == (len(clean),)
    assert np.abs(got.numpy() - expected).max() < 1e-5
    # float64 inputs take the float64 path: scikit-image's own numbers to rounding
    exact = ssim_per_image(torch.from_numpy(degraded), torch.from_numpy(clean)).numpy()
    assert np.abs(exact - expected).max() < 1e-10


def test_ssim_of_non_square_images_and_a_single_image():
    clean, degraded = _faces(2, 64)
    clean, degraded = clean[..., :40], degraded[..., :40]   # 64 x 40
    expected = _skimage_ssim(degraded, clean)
    got = ssim_per_image(torch.from_numpy(degraded).float(), torch.from_numpy(clean).float()).numpy()
    assert np.abs(got - expected).max() < 1e-5
    one = ssim_per_image(torch.from_numpy(degraded[0]), torch.from_numpy(clean[0]))
    assert one.shape == (1,) and float(one) == pytest.approx(expected[0], abs=1e-10)
    with pytest.raises(ValueError, match="11x11"):
        ssim_per_image(torch.zeros(1, 3, 8, 30), torch.zeros(1, 3, 8, 30))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_per_image(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))


def test_ssim_leaves_the_global_matmul_precision_as_it_was():
    clean, degraded = _faces(1, 32)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        got = ssim_per_image(torch.from_numpy(degraded).float(), torch.from_numpy(clean).float())
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert float(got) == pytest.approx(_skimage_ssim(degraded, clean)[0], abs=1e-5)


def test_psnr_per_image_against_the_formula():
    clean, degraded = _faces()
    mse = ((degraded - clean) ** 2).reshape(len(clean), -1).mean(1)
    expected = 10 * np.log10(4.0 / mse)
    got = psnr_per_image(torch.from_numpy(degraded).float(), torch.from_numpy(clean).float()).numpy()
    assert np.abs(got - expected).max() < 1e-4
    same = psnr_per_image(torch.from_numpy(clean), torch.from_numpy(clean))
    assert same.tolist() == [100.0] * len(clean)   # identical images: the cap, not inf


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_match_the_cpu_ones():
    clean, degraded = _faces()
    c, d = torch.from_numpy(clean).float(), torch.from_numpy(degraded).float()
    on_gpu = ssim_per_image(d.cuda(), c.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), ssim_per_image(d, c), atol=1e-5)
    assert torch.allclose(psnr_per_image(d.cuda(), c.cuda()).cpu(), psnr_per_image(d, c), atol=1e-4)


# ------------------------------------------------------------------ validation's use of them


def _model(seed: int = 0) -> ALN:
    torch.manual_seed(seed)
    return ALN(ModelConfig(image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4), audio_dim=6).eval()


def _batches(n_batches: int = 3, size: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n_batches):
        face = torch.rand(5, 3, size, size, generator=g) * 2 - 1
        out.append({"face": face, "face_degraded": (face + 0.3 * torch.randn(face.shape, generator=g)).clamp(-1, 1),
                    "audio": torch.randn(5, 6, generator=g), "va": torch.rand(5, 2, generator=g) * 2 - 1,
                    "video": ["v"] * 5, "frame": list(range(5))})
    return out


def test_predict_batches_restoration_equals_the_per_image_mean_and_reuses_a_reference():
    model, batches = _model(), _batches()
    first = predict_batches(model, batches, torch.device("cpu"), amp=False)
    clean = torch.cat([b["face"] for b in batches])
    degraded = torch.cat([b["face_degraded"] for b in batches])
    with torch.no_grad():
        restored = model.clean(degraded)[0].clamp(-1, 1)
    assert first.psnr_degraded == pytest.approx(float(psnr_per_image(degraded, clean).mean()), abs=1e-6)
    assert first.ssim_degraded == pytest.approx(float(ssim_per_image(degraded, clean).mean()), abs=1e-6)
    assert first.psnr_restored == pytest.approx(float(psnr_per_image(restored, clean).mean()), abs=1e-6)
    assert first.ssim_restored == pytest.approx(float(ssim_per_image(restored, clean).mean()), abs=1e-6)
    assert first.gold.tolist() == torch.cat([b["va"] for b in batches]).tolist()
    # a later pass given the first pass's degraded scores reports them and recomputes only the restored ones
    reference = DegradedReference(first.psnr_degraded, first.ssim_degraded)
    trained = _model(seed=1)
    again = predict_batches(trained, batches, torch.device("cpu"), amp=False, degraded_reference=reference)
    full = predict_batches(trained, batches, torch.device("cpu"), amp=False)
    assert (again.psnr_degraded, again.ssim_degraded) == (full.psnr_degraded, full.ssim_degraded)
    assert (again.psnr_restored, again.ssim_restored) == (full.psnr_restored, full.ssim_restored)
    assert again.psnr_restored != first.psnr_restored   # the restored scores did follow the other model
    np.testing.assert_array_equal(again.pred, full.pred)


def test_restoration_scores_with_precomputed_references_equal_the_full_computation():
    batches = _batches(2)
    clean = torch.cat([b["face"] for b in batches])
    sets = {"noise": (clean, torch.cat([b["face_degraded"] for b in batches])), "clean": (clean, clean)}
    model = _model()
    references = degraded_references(sets, torch.device("cpu"), batch_size=4)
    assert references["clean"] == DegradedReference(100.0, pytest.approx(1.0))
    assert restoration_scores(model, sets, torch.device("cpu"), 4, references) == \
        restoration_scores(model, sets, torch.device("cpu"), 4)


def test_restoration_on_every_kth_frame_is_a_fixed_subset_across_batch_boundaries():
    model, batches = _model(), _batches(3)   # 15 frames in batches of 5
    clean = torch.cat([b["face"] for b in batches])
    degraded = torch.cat([b["face_degraded"] for b in batches])
    with torch.no_grad():
        restored = model.clean(degraded)[0].clamp(-1, 1)
    every = 4   # frames 0, 4, 8, 12: positions 0 and 4 of the first batch, 3 of the second, 2 of the third
    subset = predict_batches(model, batches, torch.device("cpu"), amp=False, restoration_every=every)
    picks = slice(0, None, every)
    assert subset.psnr_restored == pytest.approx(float(psnr_per_image(restored[picks], clean[picks]).mean()),
                                                 abs=1e-6)
    assert subset.ssim_degraded == pytest.approx(float(ssim_per_image(degraded[picks], clean[picks]).mean()),
                                                 abs=1e-6)
    full = predict_batches(model, batches, torch.device("cpu"), amp=False)
    assert subset.psnr_degraded != full.psnr_degraded
    np.testing.assert_array_equal(subset.pred, full.pred)   # V/A always over every frame


def test_views_on_every_kth_frame_are_a_fixed_subset_and_the_headline_covers_every_frame():
    model, batches = _model(), _batches(3)   # 15 frames in batches of 5
    full = predict_batches(model, batches, torch.device("cpu"), amp=False)
    every = 4   # frames 0, 4, 8, 12, across the batch boundaries
    subset = predict_batches(model, batches, torch.device("cpu"), amp=False, views_every=every)
    np.testing.assert_array_equal(subset.pred, full.pred)   # the headline: every frame
    assert full.views_gold is None and subset.views_gold.tolist() == full.gold[::every].tolist()
    for view, pred in subset.views().items():
        assert pred.shape == (4, 2)
        np.testing.assert_allclose(pred, full.views()[view][::every], rtol=1e-5, atol=1e-6)
    clean = torch.cat([b["face"] for b in batches])[::every]
    degraded = torch.cat([b["face_degraded"] for b in batches])[::every]
    with torch.no_grad():
        restored = model.clean(degraded)[0].clamp(-1, 1)
    assert subset.psnr_restored == pytest.approx(float(psnr_per_image(restored, clean).mean()), abs=1e-5)
    scores = subset.view_scores()
    assert scores["degraded"] == score_va(subset.pred_degraded, full.gold[::every])
