"""Training and prediction time of the 1-D CNN on the CPU and on a CUDA GPU, in the same run.

    python benchmarks/bench_cnn_device.py                       # 20,000 spectra x 3,000 pixels
    python benchmarks/bench_cnn_device.py --n 4000 --epochs 2   # smaller
    python benchmarks/bench_cnn_device.py --devices cpu         # no GPU here

Synthetic spectra (continuum + noise + one emission line whose position sets the
class) are trained for a fixed number of epochs (early stopping is switched off so
both devices do the same work). It prints seconds per epoch, prediction time,
held-out accuracy and the ratio CPU/GPU. The CPU uses every core PyTorch sees.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def spectra(n, p, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(p, dtype=np.float32)
    y = rng.integers(0, 4, n)
    centres = np.linspace(0.2, 0.8, 4)[y] * p + rng.normal(0, 0.01 * p, n)
    slope = rng.normal(0, 0.3, n)[:, None] * (x / p)
    X = 1 + slope + 0.2 * rng.normal(size=(n, p)) + np.exp(-0.5 * ((x[None] - centres[:, None]) / 4) ** 2)
    return X.astype(np.float32), y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--pixels", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 spectra x 500 pixels, 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.n, args.pixels, args.epochs = 2000, 500, 1

    import torch

    from serendip.learn.cnn import CNN1DClassifier

    X, y = spectra(args.n, args.pixels)
    n_tr = int(0.8 * args.n)
    print(f"{args.n} spectra x {args.pixels} pixels, {args.epochs} epochs, batch {args.batch_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    rows = {}
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"   {device}: skipped (no CUDA GPU)")
            continue
        clf = CNN1DClassifier(epochs=args.epochs, patience=args.epochs + 1, batch_size=args.batch_size,
                              random_state=0, device=device)
        if device.startswith("cuda"):  # start-up (context, kernels) is not part of the per-epoch cost
            CNN1DClassifier(epochs=1, random_state=0, device=device).fit(X[:256], y[:256])
            torch.cuda.synchronize()
        t = time.perf_counter()
        clf.fit(X[:n_tr], y[:n_tr])
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = clf.predict(X[n_tr:])
        pred_s = time.perf_counter() - t
        acc = float((pred == y[n_tr:]).mean())
        rows[device] = (fit_s / clf.n_epochs_, pred_s)
        print(f"   {device:5s}: {fit_s / clf.n_epochs_:7.2f} s/epoch, predict {pred_s:6.2f} s "
              f"({args.n - n_tr} spectra), held-out accuracy {acc:.3f}")
    if "cpu" in rows and "cuda" in rows:
        print(f"   ratio CPU/GPU: training {rows['cpu'][0] / rows['cuda'][0]:.1f}x, "
              f"prediction {rows['cpu'][1] / rows['cuda'][1]:.1f}x")


if __name__ == "__main__":
    main()
