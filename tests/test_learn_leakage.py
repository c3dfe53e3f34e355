"""serendip.learn: default features leave out the target in another form (target leakage) and sky positions.

A column that holds the target in another form (``LCtype`` beside ``LCtype_name``, a copy of the
redshift, a code of the classes) gives a perfect score that means nothing. Default feature selection
leaves such columns out with a logged warning; features named by the user are kept, with a warning.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from serendip.learn.tables import ID_LIKE, read_any_table, select_features, train_table

CLASSES = np.array(["RRab", "RRc", "EB"])


def _classes(n=60, seed=0):
    """Class labels (each class well represented) and a random generator."""
    rng = np.random.default_rng(seed)
    return CLASSES[rng.integers(0, CLASSES.size, n)], rng


def _leak_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "in another form" in r.getMessage()]


# --- (a) columns named as the target in another form ---------------------------------------------
@pytest.mark.parametrize("target, column", [
    ("LCtype_name", "LCtype"),        # the column's name is the first word of the target's
    ("class_name", "class"),
    ("spec_class_code", "spec_class"),
    ("class_name", "class_code"),     # same stem: class_name and class_code both name "class"
    ("LCtypeName", "LCtype"),         # words also break where the case changes
    ("r_mag", "r"),                   # the same magnitude under two names
])
def test_a_column_named_as_the_target_is_left_out_with_a_warning(caplog, target, column):
    labels, rng = _classes()
    n = labels.size
    # random values: neither equal to the target nor a recoding of it, so only the name gives it away
    tab = Table({"u": rng.normal(size=n), column: rng.normal(size=n), "redshift": rng.uniform(0, 1, n),
                 "zmag": rng.normal(size=n),
                 target: rng.uniform(15, 20, n) if target == "r_mag" else labels})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, recipe = select_features(tab, target)
    assert X.colnames == ["u", "redshift", "zmag"]
    assert recipe["features"] == ["u", "redshift", "zmag"]
    (msg,) = _leak_warnings(caplog)
    assert repr(column) in msg and repr(target) in msg and "named like the target" in msg
    assert "features=[...]" in msg  # says how to use it anyway


def test_names_match_whole_words_only_so_z_keeps_zmag_but_not_a_copy_of_z(caplog):
    """For a redshift ``z``: ``zmag``, ``z_mag``, ``zoom``, ``r`` are other quantities; ``z_err`` is left
    out as derived from the target (not as the target itself); a column equal to ``z`` is a copy."""
    rng = np.random.default_rng(1)
    n = 50
    z = rng.uniform(0, 2, n)
    tab = Table({"zmag": rng.normal(size=n), "z_mag": rng.normal(size=n), "zoom": rng.normal(size=n),
                 "r": rng.normal(size=n), "z_err": rng.uniform(0, 0.1, n), "zsp": z, "z": z})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "z")
    assert X.colnames == ["zmag", "z_mag", "zoom", "r"]
    (msg,) = _leak_warnings(caplog)
    assert "'zsp'" in msg and "equal to the target" in msg
    assert "z_err" not in msg and "derived from the target 'z'" in caplog.text
    # and the other way round: the target "redshift" does not take "r" (a magnitude) for itself
    tab2 = Table({"r": rng.normal(size=n), "redshift": z, "vel": z.astype(np.float32)})  # a float32 copy
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="serendip"):
        X2, _, _ = select_features(tab2, "redshift")
    assert X2.colnames == ["r"]
    assert "'vel'" in _leak_warnings(caplog)[0]


# --- (b) one-to-one recodings of a classification target -------------------------------------------
def test_a_one_to_one_recoding_of_the_classes_is_left_out_but_coarser_or_finer_codes_are_kept(caplog):
    labels, rng = _classes(90, seed=2)
    n = labels.size
    code = np.select([labels == "RRab", labels == "RRc"], [1.0, 2.0], 5.0)
    code[::7] = np.nan  # missing codes do not hide the recoding: checked where both have a value
    merged = np.where(labels == "EB", 2, 1)  # RRab and RRc share a value: not one-to-one
    sub = np.where(labels == "RRab", rng.integers(0, 2, n), np.where(labels == "RRc", 2, 3))  # RRab split in two
    target = MaskedColumn(labels, mask=np.arange(n) % 11 == 0)  # rows without a class are ignored too
    tab = Table({"kind": code, "merged": merged, "sub": sub, "logP": rng.normal(size=n), "type": target})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "type")
    assert X.colnames == ["merged", "sub", "logP"]
    (msg,) = _leak_warnings(caplog)
    assert "'kind'" in msg and "one-to-one recoding of its 3 classes" in msg
    assert "'merged'" not in msg and "'sub'" not in msg


def test_a_boolean_column_equal_to_a_two_class_target_is_left_out(caplog):
    rng = np.random.default_rng(3)
    n = 40
    cls = np.array(["GALAXY", "QSO"])[rng.integers(0, 2, n)]
    tab = Table({"u_g": rng.normal(size=n), "is_qso": cls == "QSO", "class": cls})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "class")
    assert X.colnames == ["u_g"]
    assert "'is_qso'" in _leak_warnings(caplog)[0]


def test_the_task_decides_whether_recodings_are_checked():
    """30 integer classes look like a regression target; task='classification' says they are classes."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(30), 4)
    code = 100 + 3 * rng.permutation(30)[y]  # one code per class, in no order
    tab = Table({"a": rng.normal(size=y.size), "code": code, "y": y})
    assert select_features(tab, "y")[0].colnames == ["a", "code"]  # a regression target: not a copy
    assert select_features(tab, "y", task="classification")[0].colnames == ["a"]


# --- named features are kept, with a warning ----------------------------------------------------
def test_named_features_are_kept_but_a_recoding_or_copy_among_them_is_warned_about(caplog):
    labels, rng = _classes(60, seed=5)
    n = labels.size
    tab = Table({"a": rng.normal(size=n), "LCtype": np.unique(labels, return_inverse=True)[1].ravel(),
                 "LC": rng.normal(size=n), "LCtype_name": labels})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, recipe = select_features(tab, "LCtype_name", features=["a", "LCtype", "LC"])
    assert X.colnames == ["a", "LCtype", "LC"] == recipe["features"]
    (msg,) = _leak_warnings(caplog)
    assert "'LCtype'" in msg and "one-to-one recoding" in msg and "named" in msg
    assert "'LC'" not in msg  # a name alone is no reason to warn about a feature the user chose

    rng = np.random.default_rng(6)
    z = rng.uniform(0, 1, 30)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(Table({"a": rng.normal(size=30), "zz": z, "z": z}), "z", features=["a", "zz"])
    assert X.colnames == ["a", "zz"]
    assert "'zz'" in _leak_warnings(caplog)[0] and "equal to the target" in _leak_warnings(caplog)[0]


def test_train_table_leaves_the_recoding_out_and_passes_its_task(tmp_path, caplog):
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(25), 12)  # 25 integer classes: inferred as regression, so the task is passed
    path = tmp_path / "t.csv"
    Table({"a": y + rng.normal(scale=0.5, size=y.size), "b": rng.normal(size=y.size), "code": 7 * y + 1,
           "label": y}).write(path, format="ascii.csv")
    with caplog.at_level(logging.INFO, logger="serendip"):
        res, _ = train_table(path, "label", task="classification", algorithm="rf", cv=2, n_iter=1,
                             progress=False, learning_curve=False, importances=False, test_size=0.25,
                             model_params={"n_estimators": 10})
    assert res.feature_recipe["features"] == ["a", "b"]
    assert "'code'" in _leak_warnings(caplog)[0]


# --- Bug 2: sky positions in their usual spellings are identifiers ---------------------------------
def test_sky_position_spellings_are_not_default_features(caplog):
    rng = np.random.default_rng(8)
    n = 30
    positions = ["RA", "DECL", "RAJ2000", "DEJ2000", "ra_j2000", "dec_j2000", "RA_ICRS", "DE_ICRS",
                 "GLON", "GLAT"]
    tab = Table({**{c: rng.uniform(0, 90, n) for c in positions}, "B": rng.normal(size=n),
                 "l": rng.normal(size=n), "V": rng.normal(size=n), "Type": _classes(n)[0]})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "Type")
    assert X.colnames == ["B", "l", "V"]  # a B magnitude and an l are measurements, not positions
    assert {c.lower() for c in positions} <= ID_LIKE
    assert "identifiers" in caplog.text and "'DECL'" in caplog.text


# --- the real LINEAR table ---------------------------------------------------------------------------
@pytest.mark.shared_data
def test_linear_lctype_is_not_a_default_feature_for_lctype_name(shared_data, caplog):
    tab = read_any_table(shared_data / "linear_periodic_variables" / "linear_attributes.csv")
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, y, _ = select_features(tab, "LCtype_name")
    assert "LCtype" not in X.colnames
    assert X.colnames == ["ug", "gi", "iK", "JK", "logP", "Ampl", "skew", "kurt", "magMed", "nObs"]
    (msg,) = _leak_warnings(caplog)
    assert "'LCtype'" in msg and "named like the target" in msg and "one-to-one recoding of its 5 classes" in msg


def test_a_row_filter_on_a_keyword_column_says_to_quote_it():
    """The DR14 table's class column is literally `class`: pandas refused "class == 'GALAXY'" with a
    numexpr message that did not say how to write it."""
    import pytest
    from astropy.table import Table

    from serendip.learn.tables import row_filter

    tab = Table({"class": ["GALAXY", "STAR", "QSO"], "r": [17.0, 18.0, 19.0]})
    with pytest.raises(ValueError, match=r"quoted in backticks, e.g. `class` == 'GALAXY'"):
        row_filter(tab, "class == 'GALAXY'")
    assert list(row_filter(tab, "`class` == 'GALAXY'")) == [True, False, False]


def test_a_transformed_copy_of_a_regression_target_is_left_out(caplog):
    """A velocity c*z or log z beside the target z gave the answer away (rule (c) only caught equality)."""
    import logging

    import numpy as np
    from astropy.table import Table

    from serendip.learn.tables import select_features

    rng = np.random.default_rng(0)
    z = rng.uniform(0.01, 0.5, 300)
    tab = Table({"u_g": rng.normal(size=300) + z, "velocity": 299792.458 * z, "neg_log_z": -np.log10(z),
                 "near_z": z + rng.normal(0, 1e-3, 300), "z": z})
    with caplog.at_level(logging.WARNING, logger="serendip"):
        X, _, _ = select_features(tab, "z")
    assert X.colnames == ["u_g", "near_z"]  # a noisy measurement that tracks z is still a feature
    assert "velocity" in caplog.text and "monotone" in caplog.text


def test_a_band_is_not_the_colour_it_starts():
    """The leading-words rule took g for the target g_r (a colour) and dropped one band of two."""
    import numpy as np
    from astropy.table import Table

    from serendip.learn.tables import select_features

    rng = np.random.default_rng(1)
    g, r = rng.normal(18, 1, 100), rng.normal(17.5, 1, 100)
    tab = Table({"g": g, "r": r, "age": rng.uniform(1, 10, 100), "g_r": g - r + rng.normal(0, 0.05, 100)})
    assert select_features(tab, "g_r")[0].colnames == ["g", "r", "age"]


# --- a spectroscopic redshift beside a spectroscopic class -----------------------------------------
def _redshift_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "spectroscopic redshift" in r.getMessage()]


def test_a_spectroscopic_redshift_among_default_features_of_a_class_is_kept_with_a_warning(caplog, shared_data):
    """On the DR14 star/galaxy/QSO table the default features include the spectroscopic redshift, which
    a photometric classifier cannot have; it is kept (a spectroscopic classifier may use it) with a
    warning that names it and says how to leave it out. The bare ``z`` is the z-band magnitude here."""
    tab = read_any_table(shared_data / "sdss_dr14_star_galaxy_qso_10k" / "sdss_dr14_10k.csv")
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "class")
    assert "redshift" in X.colnames and "z" in X.colnames
    (msg,) = _redshift_warnings(caplog)
    assert "['redshift']" in msg and "'class'" in msg and "--colors ugriz" in msg and "--features" in msg


@pytest.mark.parametrize("kwargs", [dict(target="redshift"),                      # regression: it is the target
                                    dict(target="class", colors="ugriz"),         # colours only
                                    dict(target="class", features=["u", "g"])])   # named features
def test_no_redshift_warning_for_a_regression_colours_or_named_features(caplog, kwargs):
    rng = np.random.default_rng(3)
    n = 60
    labels, _ = _classes(n)
    tab = Table({b: rng.normal(18, 1, n) for b in "ugriz"})
    tab["redshift"] = rng.uniform(0, 1, n)
    tab["class"] = labels
    with caplog.at_level(logging.INFO, logger="serendip"):
        select_features(tab, **kwargs)
    assert _redshift_warnings(caplog) == []


def test_a_bare_z_column_is_not_taken_for_a_redshift(caplog):
    rng = np.random.default_rng(4)
    labels, _ = _classes(60)
    tab = Table({"g": rng.normal(size=60), "z": rng.uniform(0, 1, 60), "class": labels})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, _ = select_features(tab, "class")
    assert "z" in X.colnames and _redshift_warnings(caplog) == []
