"""The store's status codes and the run's counters are defined once, in stream3d/store.py:
analysis, ingest and compute take them from there (a second literal copy could drift)."""

from __future__ import annotations

import re
from pathlib import Path

from stream3d.analysis import run as analysis_run
from stream3d.store import COMPUTE_COUNTERS, COUNTERS, INGEST_COUNTERS, Status
from stream3d.stream import tracker

PACKAGE = Path(__file__).resolve().parents[1] / "stream3d"
CODE_TO_NAME = re.compile(r"\b[0-3]\s*:\s*[\"'](pending|refined|skipped|failed)[\"']")
COUNTER_TUPLE = re.compile(r"\(\s*[\"']received[\"']\s*,\s*[\"']malformed[\"']")


def test_status_codes_and_counters_are_defined_only_in_the_store():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "store.py" and path.parent == PACKAGE:
            continue
        text = path.read_text(encoding="utf-8")
        assert not CODE_TO_NAME.search(text), f"{path}: status codes defined again"
        assert not COUNTER_TUPLE.search(text), f"{path}: counter names defined again"


def test_analysis_and_ingest_use_the_stores_definitions():
    assert analysis_run.STATUS_NAMES == {0: "pending", 1: "refined", 2: "skipped", 3: "failed"}
    assert analysis_run.STATUS_NAMES == {int(s): s.name.lower() for s in Status}
    assert analysis_run.REFINED == Status.REFINED
    assert tracker.INGEST_COUNTERS is INGEST_COUNTERS
    assert COUNTERS == INGEST_COUNTERS + COMPUTE_COUNTERS == (
        "received", "malformed", "gaps", "duplicates", "skipped", "failed")
