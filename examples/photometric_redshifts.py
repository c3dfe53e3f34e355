"""Photometric redshifts: predict z from broad-band colours, validated honestly.

By default it makes its own data. It simulates SDSS-like galaxy spectra and measures
"synthetic photometry": the mean flux in five broad bands spread over the spectrograph's
3,800-9,200 Å range. Colours of neighbouring bands, plus the reddest magnitude, are the
features. With ``--table`` it uses a real catalogue with u, g, r, i, z magnitudes and a
``redshift`` column instead, such as ``sdss_galaxy_colors.csv.gz`` from the shared data.

It prints which algorithm :func:`serendip.learn.recommend` suggests for the data, trains
``--algorithm`` (default ``gbt``, the best on the SDSS colours; ``recommended`` trains the
suggestion) with :func:`serendip.learn.train` (cross-validated search, one look at a held-out
test split), and prints σ_NMAD and the catastrophic fraction. It also saves the
z_pred-against-z_true figure.

    python examples/photometric_redshifts.py --n 3000 --out photoz.png
    python examples/photometric_redshifts.py --table ../shared/data/sdss_galaxy_qso_colors_specz/sdss_galaxy_colors.csv.gz
"""
import argparse

import numpy as np

from serendip.datasets import make_survey
from serendip.learn import recommend, train
from serendip.plotting import save_png

#: Five bands of equal width in log wavelength across the synthetic spectra (Å).
BAND_EDGES = np.geomspace(3800.0, 9200.0, 6)


def synthetic_photometry(spectra):
    """Magnitudes (-2.5 log10 of the mean good-pixel flux) in the five ``BAND_EDGES`` bands."""
    wave = np.asarray(spectra.wavelength.value if hasattr(spectra.wavelength, "value") else spectra.wavelength)
    flux = np.where(spectra.mask, np.nan, spectra.flux)
    mags = []
    for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:]):
        inside = (wave >= lo) & (wave < hi)
        mean = np.nanmean(flux[:, inside], axis=1)
        mags.append(-2.5 * np.log10(np.clip(mean, 1e-6, None)))
    return np.column_stack(mags)


def colours_and_redshifts(args):
    """(features, feature names, redshifts) from the built-in simulation or from ``args.table``."""
    if args.table:
        from serendip.learn.tables import read_any_table, select_features

        tab = read_any_table(args.table)
        if "spec_class" in tab.colnames:
            tab = tab[tab["spec_class"] == "GALAXY"]
        X, y, _ = select_features(tab, "redshift", colors="ugriz")
        return X, list(X.colnames), np.asarray(y, float)
    from serendip.spectra import mask_pixels

    survey = make_survey(n=args.n, seed=args.seed, anomaly_fraction=0.0, progress=False)
    mags = synthetic_photometry(mask_pixels(survey.spectra))
    names = [f"b{i}-b{i + 1}" for i in range(4)] + ["b4"]
    X = np.column_stack([mags[:, :-1] - mags[:, 1:], mags[:, -1]])
    return X, names, np.asarray(survey.truth["z"], float)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="simulated galaxies (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", help="a real catalogue with u g r i z and redshift columns instead")
    ap.add_argument("--algorithm", default="gbt",
                    help="gbt (default), rf, svm, ann, auto (slower) or recommended (recommend's first choice)")
    ap.add_argument("--out", default="photoz.png", help="the z_pred against z_true figure")
    args = ap.parse_args(argv)

    X, names, z = colours_and_redshifts(args)
    best = recommend(X, z, task="regression")[0]
    print(f"{len(z)} galaxies, {len(names)} features; recommended: {best.algorithm} ({best.reasons[0]})")
    algorithm = best.algorithm if args.algorithm == "recommended" else args.algorithm
    res = train(X, z, algorithm=algorithm, target_name="redshift", feature_names=names, cv=3, n_iter=3,
                random_state=args.seed, progress=False, learning_curve=False, importances=False)
    s = res.test_scores
    print(f"{res.algorithm}: σ_NMAD {s['sigma_nmad']:.4f} [95% {s['sigma_nmad_ci95_low']:.4f}-"
          f"{s['sigma_nmad_ci95_high']:.4f}], catastrophic (|Δz| > 0.15) {100 * s['catastrophic_fraction']:.2f} %, "
          f"bias {s['bias']:+.4f} on {s['n']} held-out galaxies")
    print("figure:", save_png(res.figures()["redshift"], args.out))
    return s["sigma_nmad"]


if __name__ == "__main__":
    main()
