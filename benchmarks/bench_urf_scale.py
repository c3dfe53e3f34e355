"""Benchmark 3: URF at SDSS scale (2.4 M objects × 1,000 features) — a measured curve, extrapolated.

Writes synthetic float32 spectra-like data to an on-disk ``.npy`` (read as a
memmap), and for each N runs the whole ``fit`` (merged sub-forests of
``--max-fit-samples`` objects each, their own synthetic data, leaves of all N
objects, exact scores) in a fresh subprocess, measuring wall time per stage
and peak memory (max RSS). Running 2.4 M objects for real would take hours
here, so the curve is extrapolated, and the printout says so:

* fit: T trees, each on 2·max_fit_samples rows — independent of N;
* apply and score: proportional to N·T; reading: proportional to N·F;
* memory: the N×T int32 leaf ids + the forest + one block.

All stages are linear in T, so a measured curve with fewer trees is scaled
to T=500 (also labelled).

    python benchmarks/bench_urf_scale.py               # N = 20k, 50k, 100k; T=100 measured
    python benchmarks/bench_urf_scale.py --quick       # N = 5k, 10k; T=20
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(path: Path, n: int, f: int, seed: int = 0, block: int = 20000):
    """Spectrum-like rows: a few smooth components plus noise, float32, written block by block."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, f)
    comps = np.stack([np.ones(f), x, np.sin(6 * x), np.exp(-0.5 * ((x - 0.6) / 0.01) ** 2),
                      np.exp(-0.5 * ((x - 0.3) / 0.02) ** 2)])
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, f))
    for s in range(0, n, block):
        b = min(block, n - s)
        coef = rng.normal(size=(b, comps.shape[0])) * [0.2, 0.3, 0.2, 0.5, 0.5] + [1, 0, 0, 0, 0]
        mm[s:s + b] = coef @ comps + 0.05 * rng.normal(size=(b, f))
    mm.flush()
    del mm


def _proc_status(key):
    """A memory figure in bytes from /proc/self/status (VmRSS = now, VmHWM = peak since exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args):
    from serendip.outliers import UnsupervisedRandomForest

    X = np.load(args.data, mmap_mode="r")[: args.n]
    base = _proc_status("VmRSS")
    t0 = time.perf_counter()
    model = UnsupervisedRandomForest(args.trees, max_fit_samples=args.max_fit_samples, n_jobs=args.n_jobs,
                                     block_size=args.block_size, random_state=0, progress=False).fit(X)
    total = time.perf_counter() - t0
    rss = _proc_status("VmHWM")  # peak resident set (includes memmap pages touched; they are page cache)
    print(json.dumps({"n": args.n, "base": base, "scan": model.scan_time_, "fit": model.fit_time_ - model.scan_time_, "apply": model.apply_time_, "score": model.score_time_,
                      "total": total, "rss": rss, "leaves_bytes": int(model.leaves_.nbytes),
                      "n_sub": int(model.n_subforests_), "n_leaves": int(model.good_leaf_.size)}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,50000,100000")
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--trees", type=int, default=100, help="trees measured (scaled to --target-trees)")
    ap.add_argument("--target-trees", type=int, default=500)
    ap.add_argument("--target-n", type=int, default=2_400_000)
    ap.add_argument("--max-fit-samples", type=int, default=5000)
    ap.add_argument("--block-size", type=int, default=8192)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.n is not None:
        return child(args)
    if args.quick:
        args.sizes, args.trees, args.max_fit_samples = "5000,10000", 20, 2000
    sizes = [int(s) for s in args.sizes.split(",")]
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="urf_scale_") as tmp:
        data = Path(tmp) / "X.npy"
        t0 = time.perf_counter()
        make_data(data, max(sizes), args.features)
        print(f"wrote {max(sizes)}×{args.features} float32 to disk ({data.stat().st_size / 1e9:.2f} GB) "
              f"in {time.perf_counter() - t0:.1f} s; cores={cores}, n_jobs={args.n_jobs}, "
              f"max_fit_samples={args.max_fit_samples}, T={args.trees} measured")
        res = []
        print(f"{'N':>8s} {'subforests':>10s} {'read s':>7s} {'fit s':>8s} {'apply s':>8s} {'score s':>8s} {'total s':>8s} "
              f"{'peak RSS GB':>11s} {'obj/s (apply+score)':>20s}")
        for n in sizes:
            cmd = [sys.executable, __file__, "--data", str(data), "--n", str(n), "--trees", str(args.trees),
                   "--max-fit-samples", str(args.max_fit_samples), "--n-jobs", str(args.n_jobs),
                   "--block-size", str(args.block_size)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            res.append(r)
            rate = r["n"] / (r["apply"] + r["score"])
            print(f"{r['n']:8d} {r['n_sub']:10d} {r['scan']:7.1f} {r['fit']:8.1f} {r['apply']:8.1f} {r['score']:8.2f} "
                  f"{r['total']:8.1f} {r['rss'] / 1e9:11.2f} {rate:20.0f}")
    # ---- extrapolation (labelled): see the module docstring
    ns = np.array([r["n"] for r in res], float)
    k = args.target_trees / args.trees
    N = args.target_n
    n_sub_target = int(np.ceil(N / args.max_fit_samples))
    # reading/checking: linear in N, independent of T
    read_s = sum(r["scan"] for r in res) / ns.sum() * N  # proportional fit through the origin
    # tree building: a part proportional to T, plus a per-sub-forest overhead (start-up, reading its rows)
    subs = np.array([r["n_sub"] for r in res], float)
    fits = np.array([r["fit"] for r in res])
    slope, icpt = np.polyfit(subs, fits, 1) if np.ptp(subs) > 0 else (0.0, fits.mean())
    slope, icpt = max(slope, 0.0), max(icpt, 0.0)
    t_fit = icpt * k + slope * n_sub_target
    # apply + score: proportional to N·T
    per_obj = sum(r["apply"] + r["score"] for r in res) / ns.sum()
    t_apply = max(per_obj, 0) * N * k
    total = read_s + t_fit + t_apply
    leaves_gb = N * args.target_trees * 4 / 1e9
    forest_gb = float(np.median([r["rss"] - r["base"] - r["leaves_bytes"] for r in res])) / 1e9 * k
    base_gb = float(np.median([r["base"] for r in res])) / 1e9
    print("\nEXTRAPOLATED from the measured curve (not measured at this size):")
    print(f"  N={N:,} F={args.features} T={args.target_trees}, {n_sub_target} sub-forests of <= {args.max_fit_samples}:")
    print(f"    read+check {read_s / 60:.1f} min, fit {t_fit / 60:.1f} min, apply+score {t_apply / 60:.1f} min "
          f"-> total ≈ {total / 3600:.2f} h on {cores} cores (target ≤ 2 h: {'met' if total <= 7200 else 'NOT met'})")
    print(f"    memory ≈ leaf ids {leaves_gb:.1f} GB (int32 N×T) + forest/blocks {forest_gb:.1f} GB "
          f"(measured, ×{k:g} for T) + interpreter {base_gb:.1f} GB ≈ {leaves_gb + forest_gb + base_gb:.1f} GB "
          f"(target ≤ 12 GB)")
    print(f"    throughput ≈ {N / total:,.0f} objects/s end-to-end; apply+score alone ≈ "
          f"{1 / max(per_obj * k, 1e-12):,.0f} objects/s at T={args.target_trees}")
    par = t_fit + t_apply
    for c in (4, 8, 16):
        print(f"    projected with {c} cores (tree fitting and application parallel over trees, assumed linear "
              f"from {cores}; reading not): ≈ {(read_s + par * cores / c) / 3600:.2f} h "
              f"(each extra core saves ≈ {par * cores * (1 / (c - 1) - 1 / c) / 60:.1f} min at {c})")
    print("  bounded by: tree application (N·T node walks) and the scikit-learn fit; memory by the N×T leaf ids")


if __name__ == "__main__":
    main()
