"""Post-processing chain (scoring/postprocess.py): each step, the fit on validation, frozen application."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from scoring.metrics import ccc
from scoring.postprocess import (
    DimensionChain,
    PostProcessChain,
    PostProcessConfig,
    centre,
    fit_chain,
    median_filter,
    median_filter_tracks,
    scale,
    shift_track,
)

DIMS = ("valence", "arousal")


def _smooth_gold(rng: np.random.Generator, n: int, n_dim: int) -> np.ndarray:
    """Slow, bounded affect-like traces: a few low-frequency sinusoids with random phases."""
    t = np.arange(n)[:, None]
    out = np.zeros((n, n_dim))
    for period in (400.0, 150.0, 60.0):
        out += np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, n_dim)) / 3
    return 0.6 * out + 0.1


def _delay(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` moved k samples later along axis 0 (independent of the module's ``shift_track``)."""
    return np.concatenate([np.repeat(x[:1], k, axis=0), x[:-k]]) if k > 0 else x.copy()


def _advance(x: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([x[k:], np.repeat(x[-1:], k, axis=0)]) if k > 0 else x.copy()


def _degraded(rng, golds, k: int, lag: bool = True):
    """Noisy, shifted by k, biased (+0.3) and shrunk (x0.4) copies of ``golds``."""
    move = _delay if lag else _advance
    return [0.4 * move(g, k) + 0.3 + rng.normal(0, 0.12, g.shape) for g in golds]


@pytest.fixture()
def data():
    rng = np.random.default_rng(7)
    val_gold = [_smooth_gold(rng, int(n), 2) for n in rng.integers(600, 900, size=6)]
    train = np.concatenate([_smooth_gold(rng, 5000, 2) for _ in range(3)])
    return rng, val_gold, train.mean(axis=0), train.std(axis=0)


def _pooled_ccc(preds, golds, d: int) -> float:
    p = np.concatenate([x[:, d] for x in preds])
    g = np.concatenate([x[:, d] for x in golds])
    keep = np.isfinite(g)
    return ccc(p[keep], g[keep])


# ------------------------------------------------------------------------------------ single steps


def test_median_filter_removes_a_spike():
    np.testing.assert_array_equal(median_filter(np.array([0.0, 0, 9, 0, 0]), 3), np.zeros(5))
    np.testing.assert_array_equal(median_filter(np.array([1.0, 5, 2]), 1), [1.0, 5, 2])
    # edges are padded by repetition: [1, 1, 5] -> 1 at the start, [5, 2, 2] -> 2 at the end
    np.testing.assert_array_equal(median_filter(np.array([1.0, 5, 2]), 3), [1.0, 2, 2])
    with pytest.raises(ValueError):
        median_filter(np.zeros(4), 4)


def test_shift_moves_later_for_positive_and_repeats_the_edge():
    x = np.array([1.0, 2, 3, 4, 5])
    np.testing.assert_array_equal(shift_track(x, 2), [1.0, 1, 1, 2, 3])    # out[t] = x[t - 2]
    np.testing.assert_array_equal(shift_track(x, -2), [3.0, 4, 5, 5, 5])   # out[t] = x[t + 2]
    np.testing.assert_array_equal(shift_track(x, 0), x)
    np.testing.assert_array_equal(shift_track(x, 9), np.ones(5))


def test_centre_and_scale_hit_the_given_mean_and_std_exactly():
    a, b = np.array([0.2, 0.4, 0.9]), np.array([-0.3, 0.1])
    c = centre([a, b], 0.25)
    assert np.concatenate(c).mean() == pytest.approx(0.25, abs=1e-12)
    np.testing.assert_allclose(c[0] - a, c[1][0] - b[0])                  # one offset for all recordings
    s = scale([a, b], 0.5)
    pooled = np.concatenate(s)
    assert pooled.std() == pytest.approx(0.5, abs=1e-12)
    assert pooled.mean() == pytest.approx(np.concatenate([a, b]).mean(), abs=1e-12)   # centred scaling
    const = scale([np.full(4, 0.3)], 0.5)[0]
    np.testing.assert_array_equal(const, np.full(4, 0.3))                 # std 0: left alone, no NaN


def test_filters_stay_within_each_recording():
    a, b = np.array([0.0, 0, 0, 0, 5, 0]), np.full(6, 9.0)
    per_recording = median_filter_tracks([a, b], 3)
    np.testing.assert_array_equal(per_recording[0], [0, 0, 0, 0, 0, 0])   # [5, 0, 0(edge)] -> 0
    joined = median_filter(np.concatenate([a, b]), 3)
    assert joined[5] == 5.0 and not np.array_equal(joined[:6], per_recording[0])  # [5, 0, 9] would leak
    for single, batched in zip([median_filter(a, 5), median_filter(b, 5)],
                               median_filter_tracks([a, b], 5), strict=True):
        np.testing.assert_array_equal(single, batched)

    chain = PostProcessChain({"valence": DimensionChain(shift=1, steps=["shift"])})
    out = chain.apply([np.array([[1.0], [2], [3]]), np.array([[7.0], [8], [9]])], ["valence"])
    np.testing.assert_array_equal(out[1][:, 0], [7.0, 7, 8])               # not [3, 7, 8]


# ----------------------------------------------------------------------------------------- fitting


@pytest.mark.parametrize("lag", [True, False])
def test_fit_recovers_the_shift_and_keeps_every_useful_step(data, lag):
    rng, val_gold, train_mean, train_std = data
    k = 4
    val_pred = _degraded(rng, val_gold, k, lag=lag)
    chain = fit_chain(val_pred, val_gold, DIMS, train_mean, train_std)
    for d, name in enumerate(DIMS):
        ch = chain.dimensions[name]
        # lagging predictions are moved earlier (negative shift), leading ones later (positive)
        assert ch.shift == (-k if lag else k)
        assert ch.median_window > 1
        assert ch.steps == ["median", "centre", "scale", "shift"]
        assert ch.val_ccc_after > ch.val_ccc_before + 0.1
        assert ch.val_ccc_before == pytest.approx(_pooled_ccc(val_pred, val_gold, d), abs=1e-12)
        assert ch.centre_target == pytest.approx(train_mean[d]) and ch.scale_target == pytest.approx(train_std[d])
        assert ch.scale_factor > 1.5                                        # undoes the 0.4 shrink
    # the reported validation CCC is what applying the chain to validation gives
    applied = chain.apply(val_pred, DIMS)
    for d, name in enumerate(DIMS):
        assert chain.dimensions[name].val_ccc_after == pytest.approx(_pooled_ccc(applied, val_gold, d), abs=1e-12)


def test_perfect_prediction_keeps_nothing_and_apply_is_identity(data):
    _, val_gold, train_mean, train_std = data
    # training statistics that differ from validation: centring/scaling would hurt a perfect prediction
    for mean, std in [(train_mean + 0.1, train_std * 1.3), (np.concatenate(val_gold).mean(0),
                                                           np.concatenate(val_gold).std(0))]:
        chain = fit_chain(val_gold, val_gold, DIMS, mean, std)
        for ch in chain.dimensions.values():
            assert ch.steps == [] and ch.median_window == 1 and ch.shift == 0
            assert ch.centre_offset is None and ch.scale_factor is None
            assert ch.val_ccc_before == pytest.approx(1.0) and ch.val_ccc_after == ch.val_ccc_before
        out = chain.apply(val_gold, DIMS)
        for o, g in zip(out, val_gold, strict=True):
            np.testing.assert_array_equal(o, g)


def test_disabled_or_useless_steps_are_not_kept(data):
    rng, val_gold, train_mean, train_std = data
    val_pred = _degraded(rng, val_gold, 3)
    cfg = PostProcessConfig(median_windows=(1,), shifts=(0,), centre=False, scale=True)
    chain = fit_chain(val_pred, val_gold, DIMS, train_mean, train_std, cfg)
    for ch in chain.dimensions.values():
        assert ch.steps == ["scale"] and ch.centre_offset is None and ch.centre_target is None

    constant = [np.full_like(g, 0.2) for g in val_gold]                  # std 0: no step can help
    chain = fit_chain(constant, val_gold, DIMS, train_mean, train_std)
    for ch in chain.dimensions.values():
        assert ch.steps == [] and np.isfinite(ch.val_ccc_after)
    with pytest.raises(ValueError):
        PostProcessConfig(median_windows=(2,))


def test_nan_gold_rows_are_ignored(data):
    rng, val_gold, train_mean, train_std = data
    val_pred = _degraded(rng, val_gold, 4)
    holed = [g.copy() for g in val_gold]
    holed[0][100:200, 0] = np.nan
    holed[2][:, 1] = np.nan
    chain = fit_chain(val_pred, holed, DIMS, train_mean, train_std)
    for d, name in enumerate(DIMS):
        ch = chain.dimensions[name]
        assert np.isfinite(ch.val_ccc_before) and np.isfinite(ch.val_ccc_after)
        assert ch.val_ccc_before == pytest.approx(_pooled_ccc(val_pred, holed, d), abs=1e-12)
        assert ch.shift == -4
    with pytest.raises(ValueError):
        fit_chain(val_pred, [np.full_like(g, np.nan) for g in val_gold], DIMS, train_mean, train_std)


def test_chain_is_frozen_when_applied_to_test(data):
    rng, val_gold, train_mean, train_std = data
    val_pred = _degraded(rng, val_gold, 4)
    chain = fit_chain(val_pred, val_gold, DIMS, train_mean, train_std)
    fitted = copy.deepcopy(chain.to_dict())

    test_gold = [_smooth_gold(rng, 700, 2) - 0.3 for _ in range(3)]
    test_pred = [0.7 * g + 0.5 + rng.normal(0, 0.05, g.shape) for g in test_gold]    # other bias/shrink
    out = chain.apply(test_pred, DIMS)
    assert chain.to_dict() == fitted                                      # nothing refitted on test

    for d, name in enumerate(DIMS):
        ch = chain.dimensions[name]
        expected = median_filter_tracks([p[:, d] for p in test_pred], ch.median_window)
        expected = scale(centre(expected, train_mean[d]), train_std[d])   # statistics of the test predictions
        expected = [shift_track(e, ch.shift) for e in expected]
        for o, e in zip(out, expected, strict=True):
            np.testing.assert_allclose(o[:, d], e, atol=1e-12)

    only_centre = PostProcessChain({n: DimensionChain(centre_target=0.05, steps=["centre"]) for n in DIMS})
    centred = np.concatenate(only_centre.apply(test_pred, DIMS))
    np.testing.assert_allclose(centred.mean(axis=0), 0.05, atol=1e-12)   # offset recomputed on test data


def test_round_trip_through_json(data):
    rng, val_gold, train_mean, train_std = data
    val_pred = _degraded(rng, val_gold, 2)
    chain = fit_chain(val_pred, val_gold, DIMS, train_mean, train_std)
    back = PostProcessChain.from_dict(json.loads(json.dumps(chain.to_dict())))
    assert back == chain
    for a, b in zip(chain.apply(val_pred, DIMS), back.apply(val_pred, DIMS), strict=True):
        np.testing.assert_array_equal(a, b)


def test_apply_checks_its_inputs():
    chain = PostProcessChain({"valence": DimensionChain()})
    with pytest.raises(ValueError):
        chain.apply([np.zeros((5, 2))], ["valence", "liking"])
    with pytest.raises(ValueError):
        chain.apply([np.full((5, 1), np.nan)], ["valence"])
    with pytest.raises(ValueError):
        fit_chain([np.zeros((5, 2))], [np.zeros((4, 2))], DIMS, [0, 0], [1, 1])
