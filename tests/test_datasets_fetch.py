"""fetch_sdss against a local HTTP server that serves the real files in the archive's layout."""
from __future__ import annotations

import csv
import io
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from serendip.cli import main as cli_main
from serendip.datasets.fetch import (DEFAULT_BASE_URL, default_run2d, fetch_sdss, spectrum_url,
                                     verify_spec_file)

FAST = dict(retries=2, backoff=0.01, timeout=5.0, progress=False)


class _Archive:
    """What the server serves: url path -> (mode, payload). Counts requests per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        self.ranges: list[str] = []
        self.lock = threading.Lock()


def _handler(archive: _Archive):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            path = self.path.split("?")[0]
            with archive.lock:
                archive.hits[path] = archive.hits.get(path, 0) + 1
                hit = archive.hits[path]
            mode = archive.modes.get(path, "ok")
            body = archive.files.get(path)
            if body is None or mode == "404":
                self.send_error(404, "Not Found")
                return
            if mode == "slow":
                time.sleep(1.0)  # longer than the client's timeout
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass
                return
            if mode == "drop" or (mode == "flaky" and hit <= 2):
                self.close_connection = True
                return  # no status line at all: the client sees the connection drop
            if mode == "truncate":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            if mode == "hducut":  # the file up to the end of COADD, no Content-Length, then the line drops
                from astropy.io import fits

                with fits.open(io.BytesIO(body)) as hdul:
                    info = hdul[2].fileinfo()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body[:info["hdrLoc"]])
                self.close_connection = True
                return
            if mode == "notfits":
                body = b"<html><body>Service temporarily unavailable</body></html>" * 60
            rng = self.headers.get("Range")
            if rng and mode in ("ok", "wrongstart"):
                archive.ranges.append(rng)
                # "wrongstart": a 206 from byte 0, not where the client asked
                start = 0 if mode == "wrongstart" else int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_error(416, "Requested Range Not Satisfiable")
                    return
                part = body[start:]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _rel(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


@pytest.fixture(scope="module")
def server(sdss_fits_dir):
    """A threaded server on 127.0.0.1 (free port) with the 32 real spectra in the SAS layout."""
    meta_csv = sdss_fits_dir.parent / "sdss_spec_sample_meta.csv"
    with open(meta_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    archive = _Archive()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(archive))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    table = Table(names=("PLATE", "MJD", "FIBERID", "RUN2D"), dtype=(int, int, int, "U8"))
    for r in rows:
        plate, mjd, fiber = int(r["plate"]), int(r["mjd"]), int(r["fiberid"])
        url = spectrum_url(plate, mjd, fiber, r["run2d"], base)
        archive.files[_rel(url)] = (sdss_fits_dir / r["file"]).read_bytes()
        table.add_row((plate, mjd, fiber, r["run2d"]))
    # failure modes live at plates that do not exist in the real sample; the payload is a real file
    real = (sdss_fits_dir / rows[0]["file"]).read_bytes()
    bad = {}
    for k, mode in enumerate(("404", "truncate", "drop", "notfits", "flaky", "resume", "slow", "hducut",
                              "done", "other", "wrongstart")):
        plate, mjd, fiber = 9001 + k, 57000, 1
        path = _rel(spectrum_url(plate, mjd, fiber, "v5_13_2", base))
        archive.files[path] = real
        archive.modes[path] = "ok" if mode in ("resume", "done", "other") else mode
        bad[mode] = (plate, mjd, fiber, path)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"base": base, "archive": archive, "table": table, "bad": bad, "real": real,
               "fits_dir": sdss_fits_dir, "rows": rows}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_url_layout():
    assert spectrum_url(266, 51602, 13) == (
        "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/lite/0266/spec-0266-51602-0013.fits")
    assert spectrum_url(10000, 57346, 2) == (
        f"{DEFAULT_BASE_URL}/sas/dr17/eboss/spectro/redux/v5_13_2/spectra/lite/10000/spec-10000-57346-0002.fits")
    assert default_run2d(2974) == "26" and default_run2d(3510) == "v5_13_2"
    assert spectrum_url(266, 51602, 13, "103", "http://m/") .startswith("http://m/sas/dr17/sdss/spectro/redux/103/")
    assert spectrum_url(1, 2, 3, template="{base}/x/{plate}-{mjd}-{fiberid}-{run2d}", base_url="b") == "b/x/1-2-3-26"


def test_downloads_every_real_file_then_uses_the_cache(server, tmp_path):
    table = server["table"]
    out = fetch_sdss(table, tmp_path, base_url=server["base"], **FAST)
    assert len(out) == 32 and list(out["status"]) == ["ok"] * 32, list(out["reason"])
    for row, r in zip(out, server["rows"]):
        assert _sha(row["path"]) == _sha(server["fits_dir"] / r["file"])
    assert not list(tmp_path.glob("*.partial"))
    hits_before = sum(server["archive"].hits.values())
    again = fetch_sdss(table, tmp_path, base_url=server["base"], **FAST)
    assert list(again["status"]) == ["cached"] * 32
    assert np.all(again["attempts"] == 0)
    assert sum(server["archive"].hits.values()) == hits_before  # nothing requested


def test_lowercase_columns_csv_path_and_missing_columns(server, tmp_path):
    r = server["rows"][0]
    path = tmp_path / "want.csv"
    path.write_text(f"plate,mjd,fiber\n{r['plate']},{r['mjd']},{r['fiberid']}\n")
    out = fetch_sdss(path, tmp_path / "dl", base_url=server["base"], run2d=r["run2d"], **FAST)
    assert out["status"][0] == "ok"
    with pytest.raises(ValueError, match="fiberid"):
        fetch_sdss(Table({"PLATE": [1], "MJD": [2]}), tmp_path, **FAST)


def test_failure_modes_are_recorded_not_raised(server, tmp_path):
    bad = server["bad"]
    modes = ["404", "truncate", "drop", "notfits", "flaky"]
    table = Table(rows=[bad[m][:3] for m in modes], names=("plate", "mjd", "fiberid"))
    out = fetch_sdss(table, tmp_path, base_url=server["base"], run2d="v5_13_2", **FAST)
    res = {m: row for m, row in zip(modes, out)}
    assert res["404"]["status"] == "failed" and "404" in res["404"]["reason"]
    assert res["404"]["attempts"] == 1  # permanent: no retry
    assert res["truncate"]["status"] == "failed" and "truncated" in res["truncate"]["reason"]
    assert res["truncate"]["attempts"] == 3
    assert res["drop"]["status"] == "failed" and res["drop"]["attempts"] == 3
    assert "Disconnected" in res["drop"]["reason"] or "Connection" in res["drop"]["reason"]
    assert res["notfits"]["status"] == "failed" and "FITS" in res["notfits"]["reason"]
    # flaky: fails twice, third attempt succeeds
    assert res["flaky"]["status"] == "ok" and res["flaky"]["attempts"] == 3
    assert _sha(res["flaky"]["path"]) == hashlib.sha256(server["real"]).hexdigest()
    for m in ("404", "truncate", "drop", "notfits"):
        assert not Path(res[m]["path"]).exists()  # a failed file is never left looking done


def test_resume_an_interrupted_download(server, tmp_path):
    plate, mjd, fiber, path = server["bad"]["resume"]
    real = server["real"]
    dest = tmp_path / f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    # an interrupted run left half the bytes in the .partial file, and noted where they came from
    dest.with_name(dest.name + ".partial").write_bytes(real[:100_000])
    url = spectrum_url(plate, mjd, fiber, "v5_13_2", server["base"])
    dest.with_name(dest.name + ".partial.url").write_text(url + "\n")
    server["archive"].ranges.clear()
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", **FAST)
    assert out["status"][0] == "ok" and out["attempts"][0] == 1
    assert server["archive"].ranges == ["bytes=100000-"]
    assert dest.read_bytes() == real
    assert not dest.with_name(dest.name + ".partial").exists()


def test_a_damaged_cached_file_is_fetched_again(server, tmp_path):
    r = server["rows"][3]
    dest = tmp_path / r["file"]
    dest.write_bytes(b"SIMPLE  =" + b" " * 100)  # looks like FITS, is not a complete file
    assert verify_spec_file(dest) is not None
    out = fetch_sdss(Table({"PLATE": [int(r["plate"])], "MJD": [int(r["mjd"])], "FIBERID": [int(r["fiberid"])],
                            "RUN2D": [r["run2d"]]}), tmp_path, base_url=server["base"], **FAST)
    assert out["status"][0] == "ok"
    assert verify_spec_file(dest) is None


def test_cli_fetch_summary_and_exit_code(server, tmp_path, capsys):
    r = server["rows"][1]
    good = tmp_path / "good.csv"
    good.write_text(f"PLATE,MJD,FIBERID,RUN2D\n{r['plate']},{r['mjd']},{r['fiberid']},{r['run2d']}\n"
                    f"{server['bad']['404'][0]},57000,1,v5_13_2\n")
    argv = ["-q", "fetch-sdss", str(good), "-o", str(tmp_path / "dl"), "--base-url", server["base"],
            "--retries", "1", "--backoff", "0.01", "--timeout", "5"]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert "1 downloaded" in text and "1 failed" in text and "404" in text
    assert (tmp_path / "dl" / "fetch_sdss_log.ecsv").exists()
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text(f"plate,mjd,fiberid\n{server['bad']['404'][0]},57000,1\n")
    argv[2] = str(only_bad)
    assert cli_main(argv) == 1


def test_parallel_downloads_match_serial(server, tmp_path):
    out = fetch_sdss(server["table"][:8], tmp_path, base_url=server["base"], n_jobs=4, **FAST)
    assert list(out["status"]) == ["ok"] * 8
    assert list(out["fiberid"]) == list(server["table"]["FIBERID"][:8])  # input order kept


def test_a_server_slower_than_the_timeout_fails_cleanly(server, tmp_path):
    plate, mjd, fiber, _ = server["bad"]["slow"]
    t0 = time.perf_counter()
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", retries=1, backoff=0.01, timeout=0.2,
                     progress=False)
    assert out["status"][0] == "failed" and out["attempts"][0] == 2
    assert "timed out" in out["reason"][0].lower() or "timeout" in out["reason"][0].lower()
    assert time.perf_counter() - t0 < 5


def test_each_unusable_row_keeps_its_own_reason(tmp_path):
    """Two unusable rows that map to the same placeholder name are not merged: each names its own problem."""
    table = Table({"plate": np.ma.array([0, -1, 7], mask=[True, False, False]), "mjd": [51602, 51602, 51602],
                   "fiberid": [5, 5, 5]})
    out = fetch_sdss(table, tmp_path, base_url="http://127.0.0.1:9", template="{base}/{plate}/{mjd}/{fiberid}",
                     retries=0, timeout=0.5, progress=False)
    assert list(out["status"][:2]) == ["failed", "failed"]
    assert out["reason"][0].startswith("row 0: plate is missing")
    assert out["reason"][1].startswith("row 1: plate is not a positive whole number")


def test_partial_bytes_of_another_url_are_not_joined(server, tmp_path):
    """A partial from another run2d/base was resumed with Range and passed as a valid chimera."""
    plate, mjd, fiber, path = server["bad"]["other"]
    real = server["real"]
    dest = tmp_path / f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    other = (sorted(server["fits_dir"].glob("spec-*.fits"))[-1]).read_bytes()
    assert other[:100_000] != real[:100_000]
    dest.with_name(dest.name + ".partial").write_bytes(other[:100_000])
    dest.with_name(dest.name + ".partial.url").write_text("http://elsewhere/sas/26/x.fits\n")
    server["archive"].ranges.clear()
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", **FAST)
    assert out["status"][0] == "ok" and server["archive"].ranges == []  # fetched whole
    assert dest.read_bytes() == real
    assert not dest.with_name(dest.name + ".partial.url").exists()


def test_download_cut_at_an_hdu_boundary_is_refused(server, tmp_path):
    plate, mjd, fiber, _ = server["bad"]["hducut"]
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", **{**FAST, "retries": 0})
    assert out["status"][0] == "failed" and "SPECOBJ/SPALL" in out["reason"][0]
    assert not Path(out["path"][0]).exists()


def test_a_complete_partial_answered_416_is_kept(server, tmp_path):
    """A run stopped between the last byte and the rename: the 416 threw the whole file away."""
    plate, mjd, fiber, _ = server["bad"]["done"]
    dest = tmp_path / f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    dest.with_name(dest.name + ".partial").write_bytes(server["real"])
    dest.with_name(dest.name + ".partial.url").write_text(
        spectrum_url(plate, mjd, fiber, "v5_13_2", server["base"]) + "\n")
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", **{**FAST, "retries": 0})
    assert out["status"][0] == "ok" and dest.read_bytes() == server["real"]


def test_url_problems_fail_one_row_at_once(server, tmp_path):
    assert spectrum_url(266, 51602, 13, 26.0, "http://m") == spectrum_url(266, 51602, 13, "26", "http://m")
    waits = []

    def template(**f):
        if f["fiberid"] == 2:
            raise KeyError("no such layout")
        return "{base}/x/{plate}-{fiberid}.fits".format(**f)

    out = fetch_sdss(Table({"plate": [1, 1, 10**19], "mjd": [2, 2, 2], "fiberid": [1, 2, 3]}), tmp_path,
                     base_url="nosuchscheme://host", template=template, sleep=waits.append,
                     **{**FAST, "retries": 3})
    assert list(out["status"]) == ["failed"] * 3
    assert "bad URL" in out["reason"][0] and out["attempts"][0] == 1  # not retried
    assert "cannot build its URL" in out["reason"][1] and "no such layout" in out["reason"][1]
    assert "too large" in out["reason"][2]
    assert waits == []


def test_a_range_reply_from_the_wrong_byte_starts_the_download_over(server, tmp_path):
    plate, mjd, fiber, _ = server["bad"]["wrongstart"]
    dest = tmp_path / f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    dest.with_name(dest.name + ".partial").write_bytes(server["real"][:1000])
    dest.with_name(dest.name + ".partial.url").write_text(
        spectrum_url(plate, mjd, fiber, "v5_13_2", server["base"]) + "\n")
    out = fetch_sdss(Table({"plate": [plate], "mjd": [mjd], "fiberid": [fiber]}), tmp_path,
                     base_url=server["base"], run2d="v5_13_2", **FAST)
    assert out["status"][0] == "ok" and out["attempts"][0] == 2 and dest.read_bytes() == server["real"]


def test_a_numeric_run2d_column_gives_the_sdss_url(tmp_path):
    out = fetch_sdss(Table({"plate": [266], "mjd": [51602], "fiberid": [13], "run2d": [26.0]}), tmp_path,
                     base_url="nosuchscheme://host", **{**FAST, "retries": 0})
    assert "/sdss/spectro/redux/26/" in out["url"][0]
    assert not list(tmp_path.glob("*.partial.url"))  # no note left by a failure
