"""The weirdest galaxies of a synthetic survey, and why they are weird.

Simulates SDSS-like galaxy spectra with planted anomalies, cleans them onto one
rest-frame grid, scores weirdness with the unsupervised random forest of
Baron & Poznanski (2017) (higher = weirder), and draws the weirdest objects
against the median of their most similar normal galaxies.

    python examples/weirdest_galaxies.py --n 1000 --out weirdest.png
"""
import argparse

import numpy as np

from serendip.datasets import make_survey
from serendip.outliers import UnsupervisedRandomForest, explain_weirdness
from serendip.plotting import plot_spectrum_gallery, save_png
from serendip.spectra import fill_masked, make_grid, mask_pixels, normalize, resample


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of simulated galaxies")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--top", type=int, default=6, help="how many of the weirdest to draw")
    ap.add_argument("--out", default="weirdest.png")
    args = ap.parse_args(argv)

    survey = make_survey(n=args.n, seed=1, progress=False)
    grid = make_grid("log", 3800, 7000, 60)          # coarse pixels: the forest sees shapes, not noise
    spectra = fill_masked(normalize(resample(mask_pixels(survey.spectra), grid, z="z"), "median"))

    urf = UnsupervisedRandomForest(n_estimators=args.trees, random_state=0, n_jobs=-1, progress=False)
    urf.fit(spectra.flux)
    top = np.argsort(urf.weirdness_)[::-1][:args.top]
    planted = survey.truth["anomaly_kind"]
    whys = []
    for rank, i in enumerate(top, start=1):
        why = explain_weirdness(urf, spectra.flux, int(i), wavelength=grid.value)
        whys.append(why)
        print(f"#{rank} {spectra.ids[i]}  weirdness {urf.weirdness_[i]:.3f}  planted: {planted[i]:13s} "
              f"most different near {why.peak_wavelength:.0f} Å")

    # draw the weirdest at full resolution, in the rest frame, against the median of their most
    # similar normal galaxies (the explanation's reference objects) and the residual from it
    fine = make_grid("log", 3800, 7000, 1500)

    def rest(rows):
        return normalize(resample(mask_pixels(survey.spectra[rows]), fine, z="z"))

    full = rest(top)
    reference = np.array([np.nanmedian(rest(w.neighbours).masked_flux(np.nan), axis=0) for w in whys])
    fig, _ = plot_spectrum_gallery(full.wavelength, full.flux, full.mask, ids=full.ids,
                                   z=np.asarray(survey.truth["z"])[top], scores=urf.weirdness_[top],
                                   overlays={"median of the most similar normal galaxies": reference},
                                   residuals=full.masked_flux(np.nan) - reference, input_frame="rest")
    print("figure:", save_png(fig, args.out))
    found = int(np.sum(planted[top] != "normal"))
    print(f"{found} of the {len(top)} weirdest were planted anomalies "
          f"({np.mean(planted != 'normal'):.1%} of the survey is planted)")
    return found


if __name__ == "__main__":
    main()
