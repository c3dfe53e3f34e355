"""The demo's planted-vs-found check: top-k recall of the best detector at n = 2,000.

Runs the whole ``serendip demo`` pipeline on a synthetic survey of ``--n``
spectra (default 2,000; about 3 % planted anomalies of four kinds), then
prints, per anomaly kind and detector, the fraction of the planted objects
found among the top k weirdest, with k = the number of planted anomalies.
The baseline measured in the same run is a random ranking, whose expected
recall in the top k is k / N; the ratio to it is printed too. The target is a
recall of at least 0.5 over all planted anomalies for the best detector.
Also prints the run time of every stage and the sequence-vs-truth
Spearman correlation.

    python benchmarks/bench_demo_recall.py            # n = 2000
    python benchmarks/bench_demo_recall.py --quick    # n = 400, smoke run
    python benchmarks/bench_demo_recall.py --n 5000 --out demo-5000   # keep the run folder
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 400")
    ap.add_argument("--out", default=None, help="keep the run folder here (default: a temporary folder)")
    args = ap.parse_args()
    n = 400 if args.quick else args.n

    from serendip.pipeline import RunFolder, run_demo

    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="serendip-bench-demo-")
        out = str(Path(tmp) / "run")
    try:
        t0 = time.perf_counter()
        res = run_demo(n=n, seed=args.seed, out=out, progress=False, force=True)
        total = time.perf_counter() - t0
        run = RunFolder(out, create=False)
        print(f"serendip demo, n = {n}, seed = {args.seed}: {total:.1f} s wall in all")
        for name, rec in res.records.items():
            print(f"  {name:<10s} {rec['seconds']:7.1f} s  {rec['summary']}")
        planted = run.read_table("planted")
        k = int(planted.meta["k"])
        dets = list(planted.meta["detectors"])
        random_recall = k / n
        print(f"\nrecall in the top k = {k} (random ranking: {random_recall:.3f})")
        print(f"{'kind':<14s}{'planted':>8s}" + "".join(f"{d:>14s}" for d in dets))
        for row in planted:
            print(f"{str(row['kind']):<14s}{int(row['n_planted']):>8d}"
                  + "".join(f"{float(row[d]):>14.3f}" for d in dets))
        overall = {d: float(planted[d][-1]) for d in dets}
        best = max(overall, key=overall.get)
        print(f"\nbest detector: {best}, recall {overall[best]:.3f} over all planted anomalies "
              f"= {overall[best] / random_recall:.1f}x random; target >= 0.5: "
              f"{'MET' if overall[best] >= 0.5 else 'NOT MET'}")
        for d in dets:  # the run's weirdness (first) and the forests
            if d.startswith("urf"):
                what = "  (the run's weirdness)" if d == dets[0] else ""
                print(f"  {d}: {overall[d]:.3f} ({overall[d] / random_recall:.1f}x random){what}")
        rho = planted.meta.get("sequence_spearman")
        if rho is not None and np.isfinite(float(rho)):
            print(f"sequence vs hidden parameter: Spearman rho = {float(rho):+.3f}")
        if tmp is None:
            print(f"report: {res.report_path}")
        return 0 if overall[best] >= 0.5 else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
