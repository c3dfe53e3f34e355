"""Run the reference ``thesequencer`` 0.0.5 on one synthetic parity set; write JSON.

Runs inside the separate virtual environment built by ``setup_env.sh`` (numpy<1.24,
networkx<3, scipy 1.10, joblib 1.3). Example::

    benchmarks/_envs/seqref/bin/python benchmarks/sequencer_reference/run_reference.py \
        --set line --n 800 --m 500 --scales 1,2,4 --out benchmarks/_out/ref_line_800.json
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=["line", "pulses", "pulses_hard", "pulses_nb"], default="line")
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--m", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metrics", default="EMD,energy,KL,L2")
    ap.add_argument("--scales", default="", help="comma list; empty = reference default")
    ap.add_argument("--best-k", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="", help="read grid/flux/t from this .npz instead of generating")
    a = ap.parse_args()
    from sequencer import Sequencer

    if a.data:
        with np.load(a.data) as z:
            grid, flux, t = z["grid"], z["flux"], z["t"]
    else:
        grid, flux, t = datasets.make(a.set, a.n, a.m, a.seed)
    metrics = a.metrics.split(",")
    scales = [int(s) for s in a.scales.split(",")] if a.scales else None
    scale_list = [list(scales) for _ in metrics] if scales else None
    seq = Sequencer(grid, flux, metrics, scale_list)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        c0 = time.process_time()
        kw = {}
        if a.best_k:
            kw = dict(to_average_N_best_estimators=True, number_of_best_estimators=a.best_k)
        eta, order = seq.execute(tmp, to_print_progress=False, to_save_distance_matrices=False,
                                 to_save_elongations=False, **kw)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
    est, sc, elong = seq.return_elongation_of_weighted_products_all_metrics_and_scales()
    res = {
        "set": a.set, "n": a.n, "m": a.m, "seed": a.seed, "metrics": metrics,
        "scales": [int(s) for s in (seq.scale_list[0] if scales is None else scales)], "best_k": a.best_k,
        "elongation": float(eta), "order": [int(i) for i in order], "seconds": elapsed, "cpu_seconds": cpu,
        "per_metric_scale": [[e, int(s), float(v)] for e, s, v in zip(est, sc, elong)],
        "numpy": np.__version__,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh)
    print(f"reference {a.set} N={a.n} M={a.m}: {elapsed:.1f} s, elongation {eta:.4f}")


if __name__ == "__main__":
    main()
