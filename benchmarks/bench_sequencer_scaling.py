"""Time and peak memory of the Sequencer at large N (no reference: it cannot run there).

Each case runs in a fresh subprocess so its peak RSS is its own.

    python benchmarks/bench_sequencer_scaling.py --exact 10000            # faithful, exact, N=10,000 x 500
    python benchmarks/bench_sequencer_scaling.py --knn 5000,20000,100000  # kNN curve (improved mode)
    python benchmarks/bench_sequencer_scaling.py --quick                  # small smoke run

Data: the moving-emission-line sequence of ``sequencer_reference/datasets.py`` (M=500).
Printed: wall seconds, CPU seconds (all threads; on a shared machine wall time
is inflated by other load, CPU time much less), peak RSS (GB), |Spearman rho| against the hidden index, elongation.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {here!r})
import datasets
from scipy.stats import spearmanr
from serendip.sequencer import Sequencer
g, f, t = datasets.moving_line(20, 50)
Sequencer(scales=[1], progress=False).fit(f, g)  # compile numba kernels outside the timing
grid, flux, t = datasets.moving_line({n}, {m})
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
s = Sequencer(mode={mode!r}, method={method!r}, scales={scales!r}, n_neighbors={k}, random_state=0,
              progress=False).fit(flux, grid)
sec = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
rho = abs(spearmanr(t[s.order_], np.arange(len(t)))[0])
print(json.dumps(dict(seconds=sec, cpu=cpu, rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, rho=rho,
                      eta=s.elongation_, eta_norm=s.elongation_normalized_, scales=s.scales_, method=s.method_)))
"""


def run(n, m, mode, method, scales, k):
    code = CHILD.format(here=str(HERE / "sequencer_reference"), n=n, m=m, mode=mode, method=method, scales=scales, k=k)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exact", default="", help="comma list of N for faithful exact runs")
    ap.add_argument("--knn", default="", help="comma list of N for improved kNN runs")
    ap.add_argument("--m", type=int, default=500)
    ap.add_argument("--scales", default="", help="comma list (default: reference default, powers of two < M/20)")
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    scales = [int(s) for s in a.scales.split(",")] if a.scales else None
    cases = []
    if a.quick:
        cases = [(500, "faithful", "exact"), (2000, "improved", "knn")]
        scales = scales or [1, 2]
    cases += [(int(n), "faithful", "exact") for n in a.exact.split(",") if n]
    cases += [(int(n), "improved", "knn") for n in a.knn.split(",") if n]
    print(f"{'N':>8} {'M':>4} {'mode':<9}{'method':<7}{'seconds':>9}{'cpu s':>9}{'peak GB':>9}{'|rho|':>8}{'eta':>10}{'eta_norm':>9}  scales")
    for n, mode, method in cases:
        r = run(n, a.m, mode, method, scales, a.k)
        if "error" in r:
            print(f"{n:>8} {a.m:>4} {mode:<9}{method:<7} failed: {r['error']}")
            continue
        print(f"{n:>8} {a.m:>4} {mode:<9}{method:<7}{r['seconds']:>9.1f}{r['cpu']:>9.1f}{r['rss_gb']:>9.2f}{r['rho']:>8.4f}"
              f"{r['eta']:>10.1f}{r['eta_norm']:>9.3f}  {','.join(map(str, r['scales']))}", flush=True)


if __name__ == "__main__":
    main()
