import numpy as np
import pytest
from astropy.table import Table

from serendip._io import atomic_path, read_table, write_table


@pytest.mark.parametrize("ext", [".fits", ".csv", ".ecsv", ".parquet"])
def test_table_roundtrip_keeps_meta(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    t = Table({"id": ["a", "b"], "weirdness": [0.1, 0.9]})
    t.meta["params"] = {"n_trees": 500, "seeds": [1, 2]}
    path = write_table(t, tmp_path / f"out{ext}")
    back = read_table(path)
    assert list(back["id"]) == ["a", "b"]
    np.testing.assert_allclose(back["weirdness"], [0.1, 0.9])
    assert back.meta["params"] == {"n_trees": 500, "seeds": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == [f"out{ext}"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "result.fits"
    target.write_text("old complete version")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old complete version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.fits"]
