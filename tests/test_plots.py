"""scoring/plots.py: PNG traces and density scatters render headless and leak no figures; markdown tables."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

import scoring.plots as plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIMS = ("valence", "arousal")


def _signals(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 25.0
    gold = np.stack([0.6 * np.sin(t / 3), 0.5 * np.cos(t / 5)], axis=1)
    pred = 0.8 * gold + rng.normal(0, 0.1, gold.shape)
    return t, pred, gold


def _read_png(path) -> np.ndarray:
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image[..., :3].var() > 0                                      # not blank
    return image


def _has_colour(image: np.ndarray, hex_colour: str, tol: float = 0.03) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image[..., :3] - rgb).max(axis=-1) < tol).any())


@pytest.fixture(autouse=True)
def _no_figure_leaks():
    before = set(plots.plt.get_fignums())
    yield
    assert set(plots.plt.get_fignums()) == before


def test_backend_is_headless():
    assert plots.matplotlib.get_backend().lower() == "agg"


def test_traces_with_and_without_gold(tmp_path):
    t, pred, gold = _signals()
    with_gold = _read_png(plots.plot_traces(tmp_path / "sub" / "traces.png", t, pred, gold, DIMS, "rec 1"))
    assert with_gold.shape[:2] == (250 * len(DIMS), 900)
    assert _has_colour(with_gold, plots.PRED_COLOR)

    no_gold = _read_png(plots.plot_traces(tmp_path / "pred_only.png", t, pred, None, DIMS, "rec 1"))
    assert no_gold.shape == with_gold.shape
    assert _has_colour(no_gold, plots.PRED_COLOR)
    assert not np.array_equal(no_gold, with_gold)                        # the gold line was drawn


def test_traces_with_nan_gold_and_one_dimension(tmp_path):
    t, pred, gold = _signals()
    gold[100:300] = np.nan
    _read_png(plots.plot_traces(tmp_path / "nan.png", t, pred, gold, DIMS, "gaps"))
    one = _read_png(plots.plot_traces(tmp_path / "one.png", t, pred[:, 0], gold[:, 0], ["valence"], "1-D"))
    assert one.shape[:2] == (250, 900)
    with pytest.raises(ValueError):
        plots.plot_traces(tmp_path / "bad.png", t[:-1], pred, gold, DIMS, "bad")


def test_scatter_skips_nan_gold(tmp_path):
    _, pred, gold = _signals(2000)
    gold[::3, 0] = np.nan                                                # some missing labels
    gold[:, 1] = np.nan                                                  # a dimension with none at all
    image = _read_png(plots.plot_scatter(tmp_path / "scatter.png", pred, gold, DIMS, "density"))
    assert image.shape[:2] == (440, 400 * len(DIMS))
    assert _has_colour(image, plots.PRED_COLOR)                          # the identity line


def test_scatter_title_carries_the_ccc(tmp_path, monkeypatch):
    _, pred, gold = _signals(500)
    gold[:50, 0] = np.nan
    titles = []
    original = plots.plt.Axes.set_title
    monkeypatch.setattr(plots.plt.Axes, "set_title",
                        lambda self, label, *a, **k: titles.append(label) or original(self, label, *a, **k))
    plots.plot_scatter(tmp_path / "s.png", pred, gold, DIMS, "t")
    keep = np.isfinite(gold[:, 0])
    expected = plots.ccc(pred[keep, 0], gold[keep, 0])
    assert titles[0] == f"valence: CCC {expected:.3f} (n=450)"


def test_markdown_table_exact():
    rows = [{"model": "ALN", "ccc": 0.51234, "n": 3},
            {"model": "a|b", "ccc": np.float32(0.5), "extra": "ignored"},
            {"model": "none", "ccc": None}]
    expected = ("| model | ccc | n |\n"
                "| --- | --- | --- |\n"
                "| ALN | 0.512 | 3 |\n"
                "| a\\|b | 0.500 |  |\n"
                "| none |  |  |\n")
    assert plots.markdown_table(rows, ["model", "ccc", "n"]) == expected
    assert plots.markdown_table([{"x": 1.0}], ["x"], floatfmt=".1f") == "| x |\n| --- |\n| 1.0 |\n"
