"""Where the 1-D CNN runs: the ``device`` parameter (CPU everywhere; the CUDA tests need a GPU).

CI has no GPU, so the tests marked ``needs_cuda`` are skipped there; they are run by
hand on a GPU machine (see ``benchmarks/bench_cnn_device.py`` for the timing).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from serendip.learn.cnn import CNN1DClassifier, CNN1DRegressor  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the behaviour without a GPU")


def _line_spectra(seed=0, n=240, p=128):
    rng = np.random.default_rng(seed)
    x = np.arange(p)
    y = rng.integers(0, 3, n)
    centers = np.array([30, 64, 100])
    X = 1 + 0.2 * rng.normal(size=(n, p)) + np.exp(-0.5 * ((x[None] - centers[y][:, None]) / 3) ** 2)
    return X.astype(np.float32), y


@pytest.mark.parametrize("device", ["gpu", "cuda:x", 0])
def test_unknown_device_is_a_clear_error(device):
    X, y = _line_spectra(n=40)
    with pytest.raises(ValueError, match="device must be"):
        CNN1DClassifier(epochs=1, device=device).fit(X, y)


def test_auto_device_picks_what_torch_sees():
    X, y = _line_spectra(n=60)
    clf = CNN1DClassifier(epochs=2, random_state=0, n_threads=1, device="auto").fit(X, y)
    assert clf.device_ == ("cuda" if HAS_CUDA else "cpu")
    assert all(isinstance(v, np.ndarray) for v in clf.state_.values())


def test_chunked_validation_loss_equals_one_pass():
    """The early-stopping loss is computed in chunks; class weights make that non-trivial."""
    X, y = _line_spectra(n=300)
    y = np.where(np.arange(300) < 250, 0, y)  # imbalanced, so the weighted mean matters
    clf = CNN1DClassifier(epochs=1, random_state=0, n_threads=1).fit(X, y)
    net = clf._module(torch).eval()
    from serendip.learn.cnn import _standardise_rows

    xt = torch.from_numpy(_standardise_rows(X)[:, None, :])
    y_enc = np.searchsorted(clf.classes_, y).astype(np.int64)
    yt = torch.from_numpy(y_enc)
    loss_fn = clf._loss(torch, y_enc, clf.n_outputs_)
    rows = np.arange(300)
    with torch.no_grad():
        whole = float(loss_fn(net(xt), yt))
        chunked = clf._batched_loss(torch, net, loss_fn, xt, yt, rows, lambda t: t, chunk=7)
    assert chunked == pytest.approx(whole, rel=1e-5)


@needs_no_cuda
def test_cuda_without_a_gpu_is_a_clear_error():
    X, y = _line_spectra(n=40)
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        CNN1DClassifier(epochs=1, device="cuda").fit(X, y)


@needs_no_cuda
def test_cli_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    from serendip.cli import main

    X, y = _line_spectra(n=60, p=32)
    table = tmp_path / "spectra.csv"
    header = ",".join(f"p{i}" for i in range(X.shape[1])) + ",kind"
    rows = [",".join(f"{v:.5f}" for v in x) + f",k{c}" for x, c in zip(X, y)]
    table.write_text(header + "\n" + "\n".join(rows) + "\n")
    rc = main(["learn", "train", str(table), "--target", "kind", "--raw", "--algorithm", "cnn", "--cv", "2",
               "--device", "cuda", "-o", str(tmp_path / "m.skops")])
    assert rc == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "m.skops").exists()


@needs_no_cuda
def test_gpu_trained_model_predicts_on_a_cpu_only_machine(caplog):
    X, y = _line_spectra()
    clf = CNN1DClassifier(epochs=6, random_state=0, n_threads=1).fit(X[:180], y[:180])
    proba = clf.predict_proba(X[180:])
    clf.set_params(device="cuda")  # as if it had been trained on a GPU and loaded here
    with caplog.at_level(logging.WARNING, logger="serendip"):
        again = clf.predict_proba(X[180:])
    assert np.array_equal(again, proba)
    assert "predicting on the CPU instead" in caplog.text


@needs_cuda
@pytest.mark.parametrize("cls", [CNN1DClassifier, CNN1DRegressor])
def test_cuda_training_learns_and_its_weights_work_on_the_cpu(cls):
    X, y = _line_spectra(n=600)
    target = y if cls is CNN1DClassifier else y.astype(float)
    est = cls(epochs=15, random_state=0, device="cuda").fit(X[:450], target[:450])
    assert est.device_ == "cuda"
    assert all(isinstance(v, np.ndarray) for v in est.state_.values())
    on_gpu = est.predict(X[450:])
    if cls is CNN1DClassifier:
        assert (on_gpu == y[450:]).mean() > 0.9
        p_gpu = est.predict_proba(X[450:])
        p_cpu = est.set_params(device="cpu").predict_proba(X[450:])
        assert np.allclose(p_cpu, p_gpu, atol=1e-4)
    else:
        assert np.sqrt(np.mean((on_gpu - y[450:]) ** 2)) < 0.5
        assert np.allclose(est.set_params(device="cpu").predict(X[450:]), on_gpu, atol=1e-3)


@needs_cuda
def test_cuda_training_matches_cpu_training_in_quality():
    """Same data, same seed: the two devices' networks differ in rounding only, so both learn."""
    X, y = _line_spectra(n=600, seed=3)
    acc = {}
    for device in ("cpu", "cuda"):
        clf = CNN1DClassifier(epochs=15, random_state=0, device=device).fit(X[:450], y[:450])
        acc[device] = (clf.predict(X[450:]) == y[450:]).mean()
    assert acc["cuda"] > 0.9 and abs(acc["cuda"] - acc["cpu"]) < 0.05
