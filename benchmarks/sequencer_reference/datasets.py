"""Synthetic parity sets for the Sequencer, generated identically in any numpy >= 1.17.

Imported both by serendip's benchmarks (numpy 2) and by the reference runner in
its own virtual environment (numpy 1.23), so it uses only ``numpy.random.default_rng``
and plain array operations.

* ``moving_line(n, m, seed)``: an emission line whose centre moves linearly with a
  hidden index, on a sloped continuum, with 5 % Gaussian noise. Rows are shuffled;
  the hidden index of each row is returned.
* ``pulses(n=200, m=400, seed)``: our reading of the Sequencer notebooks' recipe:
  Gaussian-process continuum (squared-exponential kernel, length scale ~ U(1, 100) px,
  min-max scaled to [0, amp], amp=1 by default), plus 4 narrow Gaussian pulses (sigma 2 px, amplitude 5)
  whose centres move linearly with the hidden index, 10 % multiplicative Gaussian
  noise, then +1 offset (so every value is positive).
* ``pulses_notebook(seed=1)``: the recipe of the Sequencer repository's notebook
  ``examples/comparison_with_tsne_and_umap.ipynb`` step by step, with its legacy
  ``numpy.random.seed(1)`` stream: 200 objects on ``x = linspace(0, 400, 400)``; a GP
  continuum (squared-exponential, h ~ U(1, 100)) shifted to minimum 0 (not rescaled);
  iid noise of 0.1 x the std of that continuum; four pulses (amplitude 5, sigma 2) whose
  centres move linearly from 25 to 75, 190 to 90, 200 to 300 and 400 to 300 with the
  hidden index; +1 offset; rows shuffled with the same stream. Its covariance draws use an
  SVD, whose singular vectors' signs are left to the linear-algebra library: on another
  machine or numpy build the same seed can give other continua (not only other last bits).
  The parity benchmark generates it once and hands the same file to both sides.
  ``continuum="cholesky"`` draws the same Gaussian process through the (unique) Cholesky
  factor of the covariance plus 1e-6 on its diagonal, from the same number of normal
  deviates, so the rest of the stream is unchanged and the data are the same on every
  machine to rounding; the tests use it.
"""
import numpy as np


def moving_line(n=800, m=500, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    t = rng.permutation(n).astype(float) / max(n - 1, 1)  # hidden index in [0, 1]
    grid = np.linspace(4000.0, 6000.0, m)
    pix = np.arange(m, dtype=float)
    centre = 0.1 * m + 0.8 * m * t
    cont = 1.0 + 0.3 * (pix[None, :] / m) * (0.5 + t[:, None])
    line = 3.0 * np.exp(-0.5 * ((pix[None, :] - centre[:, None]) / 6.0) ** 2)
    flux = cont + line
    flux = flux + noise * rng.standard_normal(flux.shape)
    flux = np.clip(flux, 1e-3, None)
    return grid, flux, t


def pulses(n=200, m=400, seed=0, amp=1.0):
    rng = np.random.default_rng(seed)
    t = rng.permutation(n).astype(float) / max(n - 1, 1)
    pix = np.arange(m, dtype=float)
    flux = np.empty((n, m))
    d2 = (pix[:, None] - pix[None, :]) ** 2
    start = rng.uniform(0.05 * m, 0.45 * m, size=4)
    speed = rng.uniform(0.3 * m, 0.5 * m, size=4) * rng.choice([-1.0, 1.0], size=4)
    start = np.where(speed < 0, start + 0.5 * m, start)
    for i in range(n):
        ell = rng.uniform(1.0, 100.0)
        cov = np.exp(-0.5 * d2 / ell ** 2) + 1e-6 * np.eye(m)
        chol = np.linalg.cholesky(cov)
        cont = chol @ rng.standard_normal(m)
        cont = amp * (cont - cont.min()) / (cont.max() - cont.min())
        centres = start + speed * t[i]
        bumps = 5.0 * np.exp(-0.5 * ((pix[None, :] - centres[:, None]) / 2.0) ** 2).sum(axis=0)
        flux[i] = cont + bumps
    flux = flux * (1.0 + 0.1 * rng.standard_normal(flux.shape))
    flux = flux + 1.0
    return pix.copy(), flux, t


def pulses_notebook(seed=1, continuum="svd"):
    rs = np.random.RandomState(seed)
    n, m = 200, 400
    x = np.linspace(0, 400, m)
    cov_h = rs.uniform(1, 100, n)
    d2 = (x - x[:, None]) ** 2
    if continuum == "svd":  # the notebook's own draws
        continua = np.array([rs.multivariate_normal(np.zeros(m), np.exp(-0.5 * d2 / h ** 2), 1)[0] for h in cov_h])
    elif continuum == "cholesky":  # the same process, the same machine-independent draws everywhere
        continua = np.array([np.linalg.cholesky(np.exp(-0.5 * d2 / h ** 2) + 1e-6 * np.eye(m)) @ rs.standard_normal(m)
                             for h in cov_h])
    else:
        raise ValueError(f"continuum must be 'svd' or 'cholesky', got {continuum!r}")
    centres = np.column_stack([np.linspace(50, 100, n) - 25, np.linspace(190, 90, n),
                               np.linspace(200, 300, n), np.linspace(400, 300, n)])
    flux = np.empty((n, m))
    for i in range(n):
        cont = continua[i] - continua[i].min()
        noise = rs.normal(loc=0, scale=0.1 * np.std(cont), size=m)
        bumps = sum(5 * np.exp(-(c - x) ** 2 / (2 * 2.0 ** 2)) for c in centres[i])
        flux[i] = 1.0 + cont + noise + bumps
    idx = np.arange(n)
    rs.shuffle(idx)
    t = idx.astype(float) / (n - 1)  # hidden index of each shuffled row
    return x, flux[idx], t


def make(name, n, m, seed=0):
    if name == "pulses_nb":
        return pulses_notebook()
    if name == "line":
        return moving_line(n, m, seed)
    if name == "pulses":
        return pulses(n, m, seed)
    if name == "pulses_hard":
        return pulses(n, m, seed, amp=4.0)
    raise ValueError(name)
