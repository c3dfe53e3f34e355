"""The scripts in examples/ run and find what they claim to find."""
import runpy

import numpy as np
from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def run_example(name, argv):
    module = runpy.run_path(str(EXAMPLES / name), run_name="example")
    return module["main"](argv)


def test_weirdest_galaxies_finds_planted_anomalies(tmp_path):
    found = run_example("weirdest_galaxies.py", ["--n", "400", "--trees", "60", "--out", str(tmp_path / "w.png")])
    assert found >= 3
    assert (tmp_path / "w.png").stat().st_size > 10_000


def test_moving_line_sequence_is_recovered(tmp_path):
    rho = run_example("sequence_of_a_moving_line.py", ["--n", "150", "--pixels", "200",
                                                       "--out", str(tmp_path / "s.png")])
    assert rho >= 0.99
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_photometric_redshifts_from_synthetic_colours(tmp_path):
    nmad = run_example("photometric_redshifts.py", ["--n", "400", "--out", str(tmp_path / "z.png")])
    assert 0 < nmad < 0.03  # five broad bands of noiseless-ish synthetic photometry: about 0.012
    assert (tmp_path / "z.png").stat().st_size > 10_000


def test_photometric_redshifts_on_a_real_catalogue(tmp_path, shared_data):
    from astropy.table import Table

    src = shared_data / "sdss_galaxy_qso_colors_specz" / "sdss_galaxy_colors.csv.gz"
    tab = Table.read(src, format="ascii.csv")
    small = tab[np.random.default_rng(0).choice(len(tab), 900, replace=False)]
    small.write(tmp_path / "few.csv", format="ascii.csv")
    nmad = run_example("photometric_redshifts.py", ["--table", str(tmp_path / "few.csv"), "--algorithm", "rf",
                                                    "--out", str(tmp_path / "real.png")])
    assert 0.01 < nmad < 0.04  # real ugriz of ~750 SDSS galaxies (the QSOs are left out)


def test_every_example_is_tested():
    tested = {"weirdest_galaxies.py", "sequence_of_a_moving_line.py", "photometric_redshifts.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested
