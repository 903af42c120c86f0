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
