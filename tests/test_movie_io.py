"""Movie readers: MRC stacks and single frames, multi-page TIFF, a run store's frames."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
from PIL import Image

from stream3d import config as config_mod
from stream3d.errors import UserError
from stream3d.io.movies import open_movie, write_mrc_movie
from stream3d.store import RawFrame, RunStore


def test_mrc_stack_round_trip_keeps_dtype_values_and_pixel_size(tmp_path):
    for dtype in (np.uint16, np.float32):
        frames = (np.arange(3 * 5 * 4).reshape(3, 5, 4) * 7).astype(dtype)
        movie = open_movie(write_mrc_movie(tmp_path / f"m{dtype.__name__}.mrc", frames,
                                           pixel_size=0.75))
        assert len(movie) == 3 and movie.pixel_size == pytest.approx(0.75)
        got = np.stack(list(movie))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, frames)
        movie.close()


def test_a_single_mrc_frame_is_a_one_frame_movie(tmp_path):
    with mrcfile.new(tmp_path / "one.mrc") as mrc:
        mrc.set_data(np.full((6, 7), 3, np.float32))
    movie = open_movie(tmp_path / "one.mrc")
    assert len(movie) == 1 and movie[0].shape == (6, 7) and movie.pixel_size is None
    with pytest.raises(IndexError):
        movie[1]


def test_multipage_tiff(tmp_path):
    pages = [Image.fromarray(np.full((5, 4), 100 * i + 1, np.uint16)) for i in range(3)]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    movie = open_movie(tmp_path / "m.tif")
    assert len(movie) == 3 and movie[2].dtype == np.uint16 and (movie[2] == 201).all()


def test_run_store_frames_replay_as_a_movie(tmp_path):
    cfg = config_mod.load(None, ["sample.slices=2", "sample.pixel_size=0.5"])
    store = RunStore.open(tmp_path / "r.zarr", cfg)
    frames = [RawFrame("s", i, 0.1 * i, np.full((4, 4), i, np.uint16)) for i in range(3)]
    store.append(frames)
    store.close()
    movie = open_movie(tmp_path / "r.zarr")
    assert len(movie) == 3 and movie.pixel_size == 0.5 and (movie[1] == 1).all()


def test_unreadable_movies_are_one_line_errors(tmp_path):
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc file at all")
    (tmp_path / "bad.tif").write_bytes(b"nope")
    for name, message in [("missing.mrc", "does not exist"), ("bad.mrc", "not a readable MRC"),
                          ("bad.tif", "not a readable TIFF")]:
        with pytest.raises(UserError, match=message):
            open_movie(tmp_path / name)
