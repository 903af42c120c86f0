"""The report renders: index.html links only files that exist, every picture a valid PNG."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from PIL import Image
from typer.testing import CliRunner

from analysis_stores import write_run
from stream3d.cli import app
from stream3d.store import Status

R, S, F, P = Status.REFINED, Status.SKIPPED, Status.FAILED, Status.PENDING


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])
        for key in ("src", "href"):
            if "://" in (a.get(key) or ""):
                self.external.append(a[key])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    write_run(root / "run.zarr", [R, R, S, R, F, R, R, P])
    result = CliRunner().invoke(app, ["analyze", str(root / "run.zarr"), "--out",
                                      str(root / "out"), "--line", "3,0,3,10"])
    assert result.exit_code == 0, result.output
    assert "analysed 5 of 8 frames" in result.output
    return root / "out"


def test_index_links_existing_png_pictures(report):
    parser = _Links()
    parser.feed((report / "index.html").read_text(encoding="utf-8"))
    assert set(parser.images) >= {"metrics.png", "track_volumes.png", "tracks3d.png",
                                  "height_maps.png", "slices.png", "render3d.png",
                                  "kymograph.png"} and not parser.external
    for src in parser.images:
        path = report / src
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG" and min(img.size) > 300, (src, img.size)
    for href in parser.links:
        assert (report / href).is_file(), href


def test_index_shows_config_counters_and_every_frame(report):
    text = (report / "index.html").read_text(encoding="utf-8")
    for needle in ("[sample]", "slice_thickness", "Counters", "received", "skipped", "failed",
                   "metrics.csv", "5 refined, 1 skipped, 1 failed, 1 pending",
                   "y0, x0, y1, x1 = 3.00, 0.00, 3.00, 10.00 nm"):
        assert needle in text, needle
    assert text.count('<tr class="missing">') == 3


def test_counters_per_kind_and_three_significant_figures(tmp_path):
    import csv

    import zarr

    write_run(tmp_path / "run.zarr", [R, R])
    group = zarr.open_group(tmp_path / "run.zarr", mode="r+")
    meta = dict(group.attrs["stream3d"])
    meta["counters"] = {**meta["counters"], "malformed": {"not_json": 2, "byte_count": 1}}
    group.attrs["stream3d"] = meta
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "run.zarr"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<td>3 (byte_count: 1, not_json: 2)</td>" in page
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    volume = float(rows[1]["volume_nm3"])
    assert rows[1]["volume_nm3"] == f"{volume:.4g}"  # 4 significant figures in the CSV
    assert f"<td>{volume:.3g}</td>" in page and f"<td>{volume:.4g}</td>" not in page
    assert '<div class="scroll"><table>' in page  # wide tables scroll inside the page
