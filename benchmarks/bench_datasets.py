"""Speed of the synthetic survey and of the SDSS-format writer.

Prints spectra/s for ``make_survey`` and files/s for ``write_sdss_files``,
against a baseline measured in the same run: the obvious writer that builds an
``astropy.io.fits.HDUList`` per object and calls ``writeto``.

    python benchmarks/bench_datasets.py            # n = 5000
    python benchmarks/bench_datasets.py --quick    # n = 500
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def astropy_writer(survey, folder: Path, rows) -> None:
    """Baseline: one HDUList per file through astropy (same HDUs and columns)."""
    from astropy.io import fits
    from astropy.table import Table

    from serendip.datasets.sdss_writer import _specobj_records, sdss_file_name

    s = survey.spectra
    loglam = np.log10(s.wavelength.value).astype(np.float32)
    recs = _specobj_records(survey, np.asarray(rows))
    for j, i in enumerate(rows):
        m = s.meta[i]
        prim = fits.PrimaryHDU()
        for key, val in (("PLATEID", int(m["plate"])), ("MJD", int(m["mjd"])), ("FIBERID", int(m["fiberid"])),
                         ("PLUG_RA", float(m["ra"])), ("PLUG_DEC", float(m["dec"])), ("COEFF0", float(loglam[0])),
                         ("COEFF1", 1e-4), ("BUNIT", "1E-17 erg/cm^2/s/Ang"), ("VACUUM", True)):
            prim.header[key] = val
        coadd = Table({"flux": s.flux[i], "loglam": loglam, "ivar": s.ivar[i],
                       "and_mask": s.flags[i].astype(np.int32), "or_mask": survey.or_mask[i],
                       "wdisp": survey.wdisp, "sky": survey.sky, "model": survey.model[i]})
        hdul = fits.HDUList([prim, fits.BinTableHDU(coadd, name="COADD"),
                             fits.BinTableHDU(recs[j:j + 1], name="SPECOBJ")])
        hdul.writeto(folder / sdss_file_name(m["plate"], m["mjd"], m["fiberid"]), overwrite=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--baseline-n", type=int, default=300, help="files written by the slow baseline")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.baseline_n = 500, 100

    from serendip.datasets import make_survey, write_sdss_files

    t0, c0 = time.perf_counter(), time.process_time()
    survey = make_survey(args.n, seed=0, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"make_survey(n={args.n}): {wall:.2f} s wall, {cpu:.2f} s CPU -> {args.n / wall:,.0f} spectra/s")

    tmp = Path(tempfile.mkdtemp(prefix="bench_datasets_"))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        write_sdss_files(survey, tmp / "fast", progress=False)
        fast = time.perf_counter() - t0
        print(f"write_sdss_files: {args.n} files in {fast:.2f} s wall ({time.process_time() - c0:.2f} s CPU) "
              f"-> {args.n / fast:,.0f} files/s")
        rows = list(range(min(args.baseline_n, args.n)))
        (tmp / "slow").mkdir()
        t0 = time.perf_counter()
        astropy_writer(survey, tmp / "slow", rows)
        slow = time.perf_counter() - t0
        print(f"baseline astropy HDUList.writeto: {len(rows)} files in {slow:.2f} s -> {len(rows) / slow:,.0f} files/s")
        print(f"speed-up of write_sdss_files over the baseline: {(args.n / fast) / (len(rows) / slow):.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
