"""Objects linked across frames into tracks, with births, merges, splits and losses.

Linking is laptrack's LAP tracker on label overlaps (Fukai & Kawaguchi, Bioinformatics 39,
btac799 (2023)): an object at frame k continues the object at frame j whose voxels it covers
most, and merges (two objects -> one) and splits (one -> two) are solved in the same
assignment. Growth makes overlap the right measure: a growing object covers its earlier self.
A track is one unbroken segment; a merge or split ends its parents and starts new tracks
whose ``parents`` name them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream3d.analysis.objects import ObjectRow

# Link cost = 1 - (fraction of the earlier object covered) ... see _tracker. A cutoff of 0.8
# links when at least ~20 % of the objects overlap; growth by 3x per frame still links.
LINK_CUTOFF = 0.8

TRACK_COLUMNS = ("track", "frame", "t", "object", "volume_nm3", "centroid_z_nm",
                 "centroid_y_nm", "centroid_x_nm", "growth_rate_nm3_s", "event", "parents")


@dataclass
class Track:
    """One segment: the (frame, object) pairs it holds in time order, and its family."""

    id: int
    frames: list[int] = field(default_factory=list)
    objects: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # tracks it came from (merge / split)
    children: list[int] = field(default_factory=list)  # tracks it went into

    @property
    def start(self) -> str:
        """How it began: birth (nothing before it), split (of one parent), merge (of several)."""
        if not self.parents:
            return "birth"
        return "merge" if len(self.parents) > 1 else "split"

    def end(self, last_frame: int) -> str:
        """How it ended: present (still there at ``last_frame``), loss, merge or split."""
        if self.frames[-1] == last_frame:
            return "present"
        if not self.children:
            return "loss"
        return "split" if len(self.children) > 1 else "merge"


def _tracker():
    from laptrack import OverLapTrack

    # Metric coefficients (offset, overlap, iou, ratio_1, ratio_2); ratio_1 = overlap / size of
    # the earlier object, ratio_2 = overlap / size of the later one. Links weigh both halves
    # so that among two candidates the one that resembles the object wins; a split child is
    # covered by its parent (ratio_2 = 1), a merge parent by its child (ratio_1 = 1).
    return OverLapTrack(
        cutoff=LINK_CUTOFF, metric_coefs=(1.0, 0.0, 0.0, -0.5, -0.5),
        splitting_cutoff=LINK_CUTOFF, splitting_metric_coefs=(1.0, 0.0, 0.0, 0.0, -1.0),
        merging_cutoff=LINK_CUTOFF, merging_metric_coefs=(1.0, 0.0, 0.0, -1.0, 0.0),
        gap_closing_max_frame_count=0,
    )


def link(frames: Sequence[int], labels: Sequence[np.ndarray]) -> list[Track]:
    """Tracks over label images ``labels[i]`` (objects 1..n, 0 none) of store frames
    ``frames[i]`` (increasing; frames not analysed are simply absent). Tracks are numbered
    from 1 in order of their first frame, then of their first object."""
    if len(frames) != len(labels):
        raise ValueError("one label image per frame")
    if not any(int(lab.max()) > 0 for lab in labels):
        return []
    import warnings

    with warnings.catch_warnings():  # pandas / laptrack chatter on tiny problems
        warnings.simplefilter("ignore")
        track_df, split_df, merge_df = _tracker().predict_overlap_dataframe(
            np.stack([np.asarray(lab, dtype=np.int32) for lab in labels]))
    rows = track_df.reset_index()
    members: dict[int, list[tuple[int, int]]] = {}
    for step, label, tid in zip(rows["frame"], rows["label"], rows["track_id"]):
        members.setdefault(int(tid), []).append((int(frames[int(step)]), int(label)))
    order = sorted(members, key=lambda tid: min(members[tid]))
    renumber = {old: k + 1 for k, old in enumerate(order)}
    tracks = {}
    for old in order:
        pairs = sorted(members[old])
        tracks[renumber[old]] = Track(renumber[old], [f for f, _ in pairs], [o for _, o in pairs])
    for df in (split_df, merge_df):
        if len(df):
            for parent, child in zip(df["parent_track_id"], df["child_track_id"]):
                p, c = renumber[int(parent)], renumber[int(child)]
                tracks[c].parents.append(p)
                tracks[p].children.append(c)
    for tr in tracks.values():
        tr.parents.sort()
        tr.children.sort()
    return [tracks[k] for k in sorted(tracks)]


def growth_rates(t: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """d volume / d t (per s) along one track: central differences inside, one-sided at the
    ends (numpy.gradient on the track's own times); NaN for a one-frame track."""
    t, volume = np.asarray(t, float), np.asarray(volume, float)
    if t.size < 2:
        return np.full(t.size, np.nan)
    rate = np.gradient(volume, t)
    # Equal volumes differ by rounding only: call that 0, not 1e-12.
    tiny = 1e-9 * np.nanmax(np.abs(volume)) / max(float(np.min(np.diff(t))), 1e-300)
    return np.where(np.abs(rate) < tiny, 0.0, rate)


@dataclass(frozen=True)
class TrackRow:
    """One object of one track at one frame (a row of tracks.csv)."""

    track: int
    frame: int
    t: float
    object: int
    volume_nm3: float
    centroid_z_nm: float
    centroid_y_nm: float
    centroid_x_nm: float
    growth_rate_nm3_s: float
    event: str  # birth | split | merge (how the track began), loss (it vanished); ';' joins
    parents: str  # on the first row: tracks it came from, space-separated


def track_rows(tracks: Sequence[Track], objects: dict[tuple[int, int], ObjectRow],
               last_frame: int) -> list[TrackRow]:
    """tracks.csv rows: every (track, frame), growth rates along the track, events."""
    out = []
    for tr in tracks:
        objs = [objects[(f, o)] for f, o in zip(tr.frames, tr.objects)]
        times = np.array([ob.t for ob in objs])
        if np.any(np.diff(times) <= 0):  # times that do not advance: rates per frame index
            times = np.array(tr.frames, dtype=float)
        rates = growth_rates(times, np.array([ob.volume_nm3 for ob in objs]))
        for i, (ob, rate) in enumerate(zip(objs, rates)):
            events = []
            if i == 0:
                events.append(tr.start)
            if i == len(objs) - 1 and tr.end(last_frame) == "loss":
                events.append("loss")
            out.append(TrackRow(
                track=tr.id, frame=ob.frame, t=ob.t, object=ob.object, volume_nm3=ob.volume_nm3,
                centroid_z_nm=ob.centroid_z_nm, centroid_y_nm=ob.centroid_y_nm,
                centroid_x_nm=ob.centroid_x_nm, growth_rate_nm3_s=float(rate),
                event=";".join(events),
                parents=" ".join(str(p) for p in tr.parents) if i == 0 else ""))
    return out


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures; empty for NaN (never a made-up zero)."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}g}"


def write_tracks_csv(rows: Sequence[TrackRow], path: str | Path, digits: int = 4) -> Path:
    """tracks.csv: header TRACK_COLUMNS, one row per tracked object per frame."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TRACK_COLUMNS)
        for r in rows:
            w.writerow([r.track, r.frame, sig(r.t, 6), r.object, sig(r.volume_nm3, digits),
                        sig(r.centroid_z_nm, digits), sig(r.centroid_y_nm, digits),
                        sig(r.centroid_x_nm, digits), sig(r.growth_rate_nm3_s, digits),
                        r.event, r.parents])
    return path


def write_objects_csv(rows: Sequence[ObjectRow], path: str | Path, digits: int = 4) -> Path:
    """objects.csv: one row per object per analysed frame (ObjectRow's fields)."""
    from stream3d.analysis.objects import OBJECT_COLUMNS

    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(OBJECT_COLUMNS)
        for r in rows:
            w.writerow([r.frame, sig(r.t, 6), r.object,
                        *(sig(getattr(r, c), digits) for c in OBJECT_COLUMNS[3:])])
    return path


def summary_rows(tracks: Sequence[Track], objects: dict[tuple[int, int], ObjectRow],
                 last_frame: int) -> list[list[str]]:
    """Per track: id, first and last frame, start, parents, end, children, last volume (nm³)."""
    out = []
    for tr in tracks:
        last = objects[(tr.frames[-1], tr.objects[-1])]
        out.append([str(tr.id), str(tr.frames[0]), str(tr.frames[-1]), tr.start,
                    " ".join(map(str, tr.parents)), tr.end(last_frame),
                    " ".join(map(str, tr.children)), sig(last.volume_nm3)])
    return out


SUMMARY_COLUMNS = ("track", "first frame", "last frame", "began", "from", "ended", "into",
                   "last volume (nm³)")
