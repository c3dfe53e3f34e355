"""Parity and speed of serendip's Sequencer against the reference ``thesequencer`` 0.0.5.

The reference runs in its own virtual environment (``benchmarks/sequencer_reference/setup_env.sh``
builds ``benchmarks/_envs/seqref`` with numpy<1.24, networkx<3, scipy 1.10, joblib 1.3).
Its results (order, elongation, wall and CPU seconds) are cached in ``benchmarks/_out/ref_*.json``;
by default a cached result is reused (the N=800 run costs ~6.5 min of CPU) and
``--rerun-reference`` runs it again. Both sides use the same data
(``benchmarks/sequencer_reference/datasets.py``), in the same machine session. On a shared machine wall times swing with other
load; the CPU-seconds line (reference: single process; ours: all threads) is the steadier ratio.

    python benchmarks/bench_sequencer_parity.py            # all parity sets
    python benchmarks/bench_sequencer_parity.py --quick    # N=100 smoke run (reference run live)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sequencer_reference"))
import datasets  # noqa: E402

from serendip.sequencer import Sequencer  # noqa: E402

REF_PY = HERE / "_envs" / "seqref" / "bin" / "python"
OUT = HERE / "_out"

CASES = [  # (set, n, m, scales or None for default, best_k)
    ("line", 400, 500, [1], 0),
    ("line", 400, 500, [1, 2, 4], 0),
    ("line", 800, 500, [1], 0),
    ("line", 800, 500, [1, 2, 4], 0),
    ("line", 1500, 500, [1], 0),
    ("pulses", 200, 400, None, 0),
    ("pulses", 200, 400, None, 3),
    ("pulses_hard", 200, 400, None, 0),
    ("pulses_hard", 200, 400, None, 3),
    ("pulses_nb", 200, 400, None, 0),  # the notebook's own recipe (datasets.pulses_notebook)
    ("pulses_nb", 200, 400, None, 3),
]

#: Sets whose data are generated once here and handed to the reference as a file
#: (their covariance draws may differ in the last bits between numpy builds).
FILE_SETS = ("pulses_nb",)


def load_set(name, n, m):
    if name not in FILE_SETS:
        return datasets.make(name, n, m), None
    path = OUT / f"data_{name}_{n}_{m}.npz"
    if not path.exists():
        grid, flux, t = datasets.make(name, n, m)
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(path, grid=grid, flux=flux, t=t)
    with np.load(path) as z:
        return (z["grid"], z["flux"], z["t"]), path


def ref_path(name, n, m, scales, k):
    sc = "-".join(map(str, scales)) if scales else "default"
    return OUT / f"ref_{name}_{n}_{m}_{sc}_k{k}.json"


def run_reference(name, n, m, scales, k, rerun, data=None):
    path = ref_path(name, n, m, scales, k)
    if path.exists() and not rerun:
        return json.loads(path.read_text()), True
    if not REF_PY.exists():
        raise SystemExit(f"reference environment missing: run {HERE / 'sequencer_reference' / 'setup_env.sh'}")
    cmd = [str(REF_PY), str(HERE / "sequencer_reference" / "run_reference.py"), "--set", name, "--n", str(n),
           "--m", str(m), "--out", str(path)]
    if scales:
        cmd += ["--scales", ",".join(map(str, scales))]
    if k:
        cmd += ["--best-k", str(k)]
    if data is not None:
        cmd += ["--data", str(data)]
    subprocess.run(cmd, check=True)
    return json.loads(path.read_text()), False


def rho(t, order):
    return abs(spearmanr(t[np.asarray(order)], np.arange(len(order)))[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one small case, reference run live")
    ap.add_argument("--rerun-reference", action="store_true", help="ignore cached reference results")
    ap.add_argument("--cached-only", action="store_true", help="skip sets without a cached reference result")
    a = ap.parse_args()
    cases = [("line", 100, 500, [1, 2], 0)] if a.quick else CASES
    # warm numba caches so the first timing does not include compilation
    g, f, _ = datasets.moving_line(20, 50)
    Sequencer(scales=[1], progress=False).fit(f, g)
    print(f"{'set':<12}{'N':>6}{'M':>5} {'scales':<10}{'K':>3} {'ref s':>8} {'ours s':>8} {'speedup':>8}  "
          f"{'same order':<10} {'|rho| ref':>9} {'faithful':>9} {'improved':>9}")
    ok = True
    for name, n, m, scales, k in cases:
        if a.cached_only and not a.quick and not ref_path(name, n, m, scales, k).exists():
            print(f"{name:<12}{n:>6}{m:>5} (no cached reference result; skipped)")
            continue
        (grid, flux, t), data = load_set(name, n, m)
        ref, cached = run_reference(name, n, m, scales, k, a.rerun_reference or a.quick, data)
        t0 = time.perf_counter()
        c0 = time.process_time()
        s = Sequencer(scales=scales, mode="faithful", method="exact", best_k=k or None, progress=False).fit(flux, grid)
        ours = time.perf_counter() - t0
        ours_cpu = time.process_time() - c0
        imp = Sequencer(scales=scales, mode="improved", method="exact", progress=False).fit(flux, grid)
        same = bool(np.array_equal(s.order_, np.asarray(ref["order"])))
        ok &= same
        sc = ",".join(map(str, scales)) if scales else "default"
        print(f"{name:<12}{n:>6}{m:>5} {sc:<10}{k:>3} {ref['seconds']:>8.1f} {ours:>8.2f} {ref['seconds'] / ours:>7.0f}x  "
              f"{str(same):<10} {rho(t, ref['order']):>9.4f} {rho(t, s.order_):>9.4f} {rho(t, imp.order_):>9.4f}"
              + ("  (cached ref)" if cached else ""))
        if "cpu_seconds" in ref:
            print(f"    CPU seconds: reference {ref['cpu_seconds']:.1f}, ours {ours_cpu:.2f} (all threads) -> "
                  f"{ref['cpu_seconds'] / ours_cpu:.0f}x less CPU")
        if abs(s.elongation_ - ref["elongation"]) > 1e-9 * ref["elongation"]:
            print(f"    elongation differs: ours {s.elongation_!r} reference {ref['elongation']!r}")
    print("parity:", "IDENTICAL final order on every set" if ok else "MISMATCH on some set")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
