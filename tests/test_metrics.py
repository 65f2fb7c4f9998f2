"""Metrics against hand-computed cases, degenerate inputs, and both CCC conventions."""

import numpy as np
import pytest

from scoring.metrics import as_columns, ccc, pcc, psnr, rmse, score_va


def test_hand_computed_population_and_avec():
    x = [1.0, 2.0, 3.0, 4.0]
    y = [2.0, 2.0, 4.0, 5.0]
    # means 2.5 and 3.25; deviations (-1.5,-.5,.5,1.5) and (-1.25,-1.25,.75,1.75)
    # sum dx*dy = 1.875+0.625+0.375+2.625 = 5.5; sum dx^2 = 5; sum dy^2 = 1.5625*2+.5625+3.0625 = 6.75
    cov = 5.5 / 4
    vx_pop, vy_pop = 5 / 4, 6.75 / 4
    vx_avec, vy_avec = 5 / 3, 6.75 / 3
    assert ccc(x, y, "population") == pytest.approx(2 * cov / (vx_pop + vy_pop + 0.75**2), abs=1e-12)
    assert ccc(x, y, "avec") == pytest.approx(2 * cov / (vx_avec + vy_avec + 0.75**2), abs=1e-12)
    assert pcc(x, y, "population") == pytest.approx(5.5 / np.sqrt(5 * 6.75), abs=1e-12)
    assert pcc(x, y, "avec") == pytest.approx(cov / np.sqrt(vx_avec * vy_avec), abs=1e-12)
    assert rmse(x, y) == pytest.approx(np.sqrt((1 + 0 + 1 + 1) / 4), abs=1e-12)


def test_conventions_differ_and_match_numpy_formulas_on_random_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    y = 0.6 * x + rng.normal(scale=0.8, size=500) + 0.2
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    pop = 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    avec = 2 * cov / (x.var(ddof=1) + y.var(ddof=1) + (x.mean() - y.mean()) ** 2)
    assert ccc(x, y) == pytest.approx(pop, abs=1e-9)
    assert ccc(x, y, "avec") == pytest.approx(avec, abs=1e-9)
    assert ccc(x, y, "avec") != pytest.approx(ccc(x, y), abs=1e-6)
    assert pcc(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)


def test_perfect_negated_and_shifted():
    x = np.linspace(-1, 1, 50)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)
    assert pcc(x, x + 0.5) == pytest.approx(1.0)
    assert ccc(x, x + 0.5) < 1.0  # CCC penalises the bias PCC ignores
    assert rmse(x, x + 0.5) == pytest.approx(0.5)


def test_constant_inputs():
    gold = np.array([0.1, 0.5, -0.2, 0.3])
    const = np.full(4, 0.2)
    assert pcc(const, gold) == 0.0
    assert ccc(const, gold) == 0.0
    assert ccc(const, const) == 1.0
    assert ccc(const, np.full(4, 0.7)) == 0.0  # both constant, different level


def test_single_sample_and_empty():
    assert ccc([0.3], [0.3]) == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        ccc([0.3], [0.2], "avec")
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])
    with pytest.raises(ValueError, match="NaN"):
        ccc([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="length"):
        ccc([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="convention"):
        ccc([1.0, 2.0], [1.0, 2.0], "abaw")


def test_score_va_shape_and_columns():
    rng = np.random.default_rng(0)
    gold = rng.uniform(-1, 1, size=(100, 2))
    pred = gold.copy()
    pred[:, 1] = 0.0
    scores = score_va(pred, gold)
    assert set(scores) == {"valence", "arousal"}
    assert scores["valence"]["ccc"] == pytest.approx(1.0)
    assert scores["arousal"]["ccc"] == 0.0
    assert scores["arousal"]["rmse"] == pytest.approx(np.sqrt(np.mean(gold[:, 1] ** 2)))


def test_psnr():
    a = np.zeros((2, 3, 4, 4))
    b = a.copy()
    b[0] += 0.2  # mse 0.04 on image 0, image 1 identical (capped at 100 dB)
    expected = (10 * np.log10(4 / 0.04) + 100.0) / 2
    assert psnr(b, a) == pytest.approx(expected)


def test_ssim_matches_scikit_image_and_orders_degradations():
    from skimage.metrics import structural_similarity

    from scoring.metrics import ssim

    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(0, 0.4, (2, 3, 24, 30)).cumsum(axis=-1) / 4, -1, 1)
    light = np.clip(clean + rng.normal(0, 0.05, clean.shape), -1, 1)
    heavy = np.clip(clean + rng.normal(0, 0.4, clean.shape), -1, 1)
    for noisy in (light, heavy):
        expected = np.mean([structural_similarity(noisy[i], clean[i], channel_axis=0, gaussian_weights=True,
                                                  sigma=1.5, use_sample_covariance=False, data_range=2.0)
                            for i in range(len(clean))])
        assert ssim(noisy, clean) == pytest.approx(expected, abs=1e-10)
    assert ssim(clean, clean) == pytest.approx(1.0) and ssim(heavy, clean) < ssim(light, clean) < 1.0
    with pytest.raises(ValueError, match="11x11"):
        ssim(clean[..., :8, :8], clean[..., :8, :8])


def test_as_columns_accepts_one_column_vectors_and_names_a_wrong_shape():
    assert as_columns([1, 2, 3], 1, "pred").tolist() == [[1.0], [2.0], [3.0]]
    assert as_columns(np.zeros((4, 2)), 2, "gold").shape == (4, 2)
    with pytest.raises(ValueError, match=r"gold must be \(N, 2\), got shape \(4, 3\)"):
        as_columns(np.zeros((4, 3)), 2, "gold")
