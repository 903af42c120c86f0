"""The store's status codes and the run's counters are defined once, in stream3d/store/schema.py:
analysis, ingest and compute take them from there (a second literal copy could drift)."""

from __future__ import annotations

import re
from pathlib import Path

from stream3d.analysis import run as analysis_run
from stream3d.store import COMPUTE_COUNTERS, COUNTERS, INGEST_COUNTERS, Status
from stream3d.stream import tracker
from stream3d.viewer import table

PACKAGE = Path(__file__).resolve().parents[1] / "stream3d"
CODE_TO_NAME = re.compile(r"\b[0-3]\s*:\s*[\"'](pending|refined|skipped|failed)[\"']")
COUNTER_TUPLE = re.compile(r"\(\s*[\"']received[\"']\s*,\s*[\"']malformed[\"']")


def test_status_codes_and_counters_are_defined_only_in_the_store():
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "store" / "schema.py":  # the one definition
            continue
        text = path.read_text(encoding="utf-8")
        assert not CODE_TO_NAME.search(text), f"{path}: status codes defined again"
        assert not COUNTER_TUPLE.search(text), f"{path}: counter names defined again"


def test_analysis_and_ingest_use_the_stores_definitions():
    assert analysis_run.STATUS_NAMES == {0: "pending", 1: "refined", 2: "skipped", 3: "failed"}
    assert analysis_run.STATUS_NAMES == {int(s): s.name.lower() for s in Status}
    assert analysis_run.REFINED == Status.REFINED
    assert tracker.INGEST_COUNTERS is INGEST_COUNTERS
    # The viewer keeps light copies of three codes (it reads chunk files without zarr).
    assert (table.REFINED, table.SKIPPED, table.FAILED) == (Status.REFINED, Status.SKIPPED,
                                                            Status.FAILED)
    assert COUNTERS == INGEST_COUNTERS + COMPUTE_COUNTERS == (
        "received", "malformed", "gaps", "duplicates", "skipped", "failed")


DOSE_AUTO_LITERAL = re.compile(r"dose\s*[!=]=\s*[\"']auto[\"']")


def test_dose_auto_is_decided_in_one_place():
    # config.AUTO_DOSE names the value; stream3d.io.dose says what it means (is_auto,
    # checked_dose, FirstFrameDose); nothing else compares a dose with the literal.
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not DOSE_AUTO_LITERAL.search(text), f"{path}: dose compared with \"auto\" again"


def test_the_lens_envelope_has_one_formula_that_popout_squares():
    # stream3d.optics.temporal_envelope is the formula; the forward model applies it to the
    # wave (physics.lens), and pop-out's Thon-ring model (popout.ctf_model.lens_envelope, its
    # own copy of the formula for now) must carry exactly its square inside the band.
    import numpy as np
    import torch

    from stream3d import optics
    from stream3d.physics.lens import temporal_envelope
    from stream3d.popout.ctf_model import Optics, lens_envelope

    for energy, spread in ((300e3, 30.0), (200e3, 80.0), (80e3, 0.0)):
        lens = Optics(energy=energy, cs=1.2e7, aperture=0.0, focal_spread=spread,
                      absorption=0.1, pixel_size=1.0)
        k = np.linspace(0.0, lens.k_max(), 200)
        wave = optics.temporal_envelope(k**2, energy=energy, focal_spread=spread)
        np.testing.assert_allclose(lens_envelope(k, lens), wave**2, rtol=1e-12, atol=0)
        torch_wave = temporal_envelope(torch.as_tensor(k**2), energy=energy, focal_spread=spread)
        np.testing.assert_allclose(torch_wave.numpy(), wave, rtol=1e-15, atol=0)
