"""The scripts in examples/ run and find what they claim to find."""
import runpy
import sys

import pytest
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


def test_every_example_is_tested():
    tested = {"weirdest_galaxies.py", "sequence_of_a_moving_line.py", "photometric_redshifts.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested
