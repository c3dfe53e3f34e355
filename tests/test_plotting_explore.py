"""Exploration figures: each returns (fig, ax), never calls show, and writes a non-blank PNG."""
from __future__ import annotations

import numpy as np
import pytest

from serendip.plotting import (plot_cluster_medians, plot_comparison, plot_embedding, plot_spectrum_gallery,
                               save_png)


def _nonblank(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    rgb = img[..., :3]
    # more than a sliver of non-white pixels, and more than one colour
    assert (rgb < 0.95).any(axis=-1).mean() > 0.005
    assert np.unique(rgb.reshape(-1, 3).round(2), axis=0).shape[0] > 5


@pytest.fixture(autouse=True)
def _no_show(monkeypatch):
    import matplotlib.pyplot as plt

    def boom(*a, **k):
        raise AssertionError("plotting functions must not call show()")

    monkeypatch.setattr(plt, "show", boom)


def test_embedding_numeric_categorical_and_hexbin(rng, tmp_path):
    from matplotlib.collections import PathCollection, PolyCollection

    emb = rng.normal(size=(500, 2))
    fig, ax = plot_embedding(emb, color=emb[:, 0] ** 2, label="weirdness", highlight=np.arange(5))
    pts = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert pts and all(c.get_rasterized() for c in pts[:1])
    _nonblank(save_png(fig, tmp_path / "num.png"))
    fig, ax = plot_embedding(emb, color=np.r_[np.full(250, -1), np.zeros(125, int), np.ones(125, int)])
    assert len(ax.get_legend().get_texts()) == 3 and "noise (250)" in ax.get_legend().get_texts()[0].get_text()
    big = rng.normal(size=(2000, 2))
    fig, ax = plot_embedding(big, color=big[:, 1], hexbin_above=1000)
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # hexbin, not 2000 markers
    _nonblank(save_png(fig, tmp_path / "hex.png"))
    with pytest.raises(ValueError, match="color has shape"):
        plot_embedding(emb, color=np.zeros(3))


def test_gallery_marks_lines_masks_and_overlays(rng, tmp_path):
    from serendip.spectra import LINES, Spectra

    wave = np.linspace(4000, 8000, 800)
    z = np.array([0.1, 0.05])
    flux = 1.0 + 0.05 * rng.normal(size=(2, 800))
    mask = np.zeros_like(flux, dtype=bool)
    mask[0, 100:120] = True
    s = Spectra(wave, flux, mask=mask, meta={"id": ["a", "b"], "z": z})
    fig, axes = plot_spectrum_gallery(s, scores=[0.9, 0.1], overlays=np.ones_like(flux), residuals=flux - 1)
    assert len(axes) == 2
    assert "a" in axes[0].get_title(loc="left") and "z = 0.1000" in axes[0].get_title(loc="left")
    assert "weirdness = 0.9" in axes[0].get_title(loc="left")
    # rest frame: x runs from 4000/1.1; Hα (6564.6 Å rest) is marked at its rest wavelength
    assert axes[0].get_xlim()[0] == pytest.approx(4000 / 1.1)
    labels = [t.get_text() for t in axes[0].texts]
    assert "Hα" in labels and "Lyα" not in labels
    xs = [ln.get_xdata()[0] for ln in axes[0].lines if ln.get_linestyle() == ":"]
    assert any(abs(x - LINES["Hα"]) < 1e-6 for x in xs)
    flux_line = axes[0].lines[0].get_ydata()
    assert np.isnan(flux_line[100:120]).all() and np.isfinite(flux_line[:100]).all()
    _nonblank(save_png(fig, tmp_path / "gallery.png"))
    # observed frame: lines move to (1+z) λ
    fig, axes = plot_spectrum_gallery(wave, flux, ids=["a", "b"], z=z, rest_frame=False)
    xs = [ln.get_xdata()[0] for ln in axes[1].lines if ln.get_linestyle() == ":"]
    assert any(abs(x - LINES["Hα"] * 1.05) < 1e-6 for x in xs)
    with pytest.raises(ValueError, match="unknown line name"):
        plot_spectrum_gallery(wave, flux, lines=("Hzeta",))
    with pytest.raises(ValueError, match="overlay"):
        plot_spectrum_gallery(wave, flux, overlays=np.ones((2, 5)))


def test_cluster_medians_and_comparison(rng, tmp_path):
    from serendip.explore import cluster, compare_detectors
    from serendip.spectra import Spectra

    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 6])
    t = np.linspace(0, 6, 50)
    flux = np.vstack([np.sin(t) + np.zeros((40, 1)), np.cos(t) + np.zeros((40, 1))])
    res = cluster(X, "kmeans", n_clusters=2, spectra=Spectra(np.linspace(5000, 6000, 50), flux), random_state=0)
    fig, ax = plot_cluster_medians(res)
    assert len(ax.lines) == 2
    _nonblank(save_png(fig, tmp_path / "medians.png"))
    with pytest.raises(ValueError, match="no median spectra"):
        plot_cluster_medians(cluster(X, "kmeans", n_clusters=2, random_state=0))

    labels = np.zeros(80, bool)
    labels[:3] = True
    X[:3] += 20
    tab = compare_detectors(X, labels, detectors=("knn", "iforest"), random_state=0, progress=False)
    fig, axes = plot_comparison(tab)
    assert len(axes) == 2 and len(axes[0].patches) == 2
    _nonblank(save_png(fig, tmp_path / "compare.png"))


def test_user_text_is_drawn_literally_and_nan_colours_are_shown(rng, tmp_path):
    """Ids or labels with '$' were parsed as mathtext (and crashed); NaN colours hid their points."""
    from serendip.plotting import plot_embedding, save_png

    emb = rng.normal(size=(30, 2))
    fig, ax = plot_embedding(emb, color=np.array(["a$\\q$", "b"] * 15), label="cl$\\x$", title="t$\\q$ $1$")
    save_png(fig, tmp_path / "c.png")  # drawing is where mathtext failed
    assert ax.get_title() == "t\\$\\q\\$ \\$1\\$"
    v = rng.normal(size=30)
    v[:5] = np.nan
    fig, ax = plot_embedding(emb, color=v)
    drawn = sum(len(c.get_offsets()) for c in ax.collections)
    assert drawn == 30  # the five without a value are drawn (grey), not hidden
    save_png(fig, tmp_path / "n.png")


def test_report_cluster_map_of_many_objects_shows_real_clusters(rng):
    """Above 100,000 objects the cluster panel was a hexbin of the median cluster number (3.5 of 0 and 7)."""
    from matplotlib.collections import PolyCollection

    from serendip.report.figures import embedding_maps

    n = 100_001
    xy = np.vstack([rng.uniform(0, 10, size=(n - 1000, 2)), 5 + 0.1 * rng.uniform(size=(1000, 2))])
    lab = np.r_[np.zeros(n - 1000), np.full(1000, 7.0)]  # a small, tight cluster inside a wide one
    fig, axes = embedding_maps(xy, [("cluster", lab, "cluster")], method="umap")
    ax = np.atleast_1d(axes)[0]
    hexes = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(hexes) == 2  # one layer per cluster, each in one colour
    for c in hexes:
        assert len({tuple(np.round(fc, 6)) for fc in c.get_facecolors()}) == 1
    widths = {round(float(np.ptp(c.get_paths()[0].vertices[:, 0])), 9) for c in hexes}
    assert len(widths) == 1  # one grid for all layers, so their hexagons coincide
