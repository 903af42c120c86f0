"""Objects linked across frames into tracks, with births, merges, splits and losses.

Linking is laptrack's LAP tracker (Fukai & Kawaguchi, Bioinformatics 39, btac799 (2023)) on
label overlaps: an object continues the object of the previous analysed frame that it
overlaps most, and merges (two objects -> one) and splits (one -> two) are solved in the same
assignment. Growth makes overlap the right measure: a growing object covers its earlier self.
Reconstructed heights can jump between frames while lateral positions, imaged directly, do
not; so objects that overlap only in projection may still link, at a penalty that lets any 3D
overlap win.
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

# Link cost = 1 - mean of the two covered fractions (see _link_cost); a cutoff of 0.8 still
# links an object that grew 3x in a frame (1 - (1 + 1/3) / 2 = 0.33).
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


FOOTPRINT_PENALTY = 0.3  # extra link cost when objects overlap only in projection


@dataclass(frozen=True)
class _Overlaps:
    """Overlaps between the objects of two consecutive analysed frames (voxel / pixel counts)."""

    both: dict[tuple[int, int], int]  # (label a, label b) -> shared voxels
    size_a: np.ndarray  # voxels of each label of the earlier frame (index = label)
    size_b: np.ndarray
    foot: np.ndarray  # (n_a + 1, n_b + 1) shared footprint pixels (projection along the beam)
    foot_a: np.ndarray  # footprint pixels of each label
    foot_b: np.ndarray


def _footprints(labels: np.ndarray) -> np.ndarray:
    """(n + 1, y * x) bool: the columns each object occupies (row 0 unused)."""
    n = int(labels.max())
    out = np.zeros((n + 1, labels.shape[1] * labels.shape[2]), dtype=bool)
    k, j, i = np.nonzero(labels)
    out[labels[k, j, i], j * labels.shape[2] + i] = True
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> _Overlaps:
    na, nb = int(a.max()), int(b.max())
    both = (a > 0) & (b > 0)
    pairs = a[both].astype(np.int64) * (nb + 1) + b[both]
    counts = np.bincount(pairs, minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1)
    fa, fb = _footprints(a), _footprints(b)
    foot = fa.astype(np.float32) @ fb.T.astype(np.float32)
    return _Overlaps(
        both={(int(i), int(j)): int(counts[i, j]) for i, j in zip(*np.nonzero(counts))},
        size_a=np.bincount(a.ravel(), minlength=na + 1), size_b=np.bincount(b.ravel(), minlength=nb + 1),
        foot=foot, foot_a=fa.sum(axis=1), foot_b=fb.sum(axis=1))


def _link_cost(o: _Overlaps, la: int, lb: int) -> float:
    """1 - mean of the covered fractions of both objects in 3D; objects that meet only in
    projection (the reconstruction put one of them at another height) link at a penalty."""
    shared = o.both.get((la, lb), 0)
    cost = 1.0 - 0.5 * (shared / o.size_a[la] + shared / o.size_b[lb]) if shared else math.inf
    f = float(o.foot[la, lb])
    if f > 0:
        cost = min(cost, FOOTPRINT_PENALTY + 1.0 - 0.5 * (f / o.foot_a[la] + f / o.foot_b[lb]))
    return cost


def _family_cost(o: _Overlaps, la: int, lb: int, covered: str) -> float:
    """Split (``covered`` = "b": the later object lies inside the earlier one) or merge ("a")."""
    shared = o.both.get((la, lb), 0)
    if not shared:
        return math.inf
    return 1.0 - shared / (o.size_b[lb] if covered == "b" else o.size_a[la])


def link(frames: Sequence[int], labels: Sequence[np.ndarray]) -> list[Track]:
    """Tracks over label images ``labels[i]`` (objects 1..n, 0 none) of store frames
    ``frames[i]`` (increasing; frames not analysed are simply absent). Tracks are numbered
    from 1 in order of their first frame, then of their first object.

    Linking is laptrack's LAP on label overlaps: cost 1 - the mean fraction of each object
    the other covers (3D); a split child must lie inside its parent and a merge parent inside
    its child; links cost at most LINK_CUTOFF.
    """
    if len(frames) != len(labels):
        raise ValueError("one label image per frame")
    if not any(int(lab.max()) > 0 for lab in labels):
        return []
    import warnings

    import pandas as pd
    from laptrack import LapTrack

    pairs = [_overlaps(labels[i], labels[i + 1]) for i in range(len(labels) - 1)]

    def ordered(c1, c2):
        (f1, l1), (f2, l2) = (int(c1[0]), int(c1[1])), (int(c2[0]), int(c2[1]))
        if f1 > f2:
            (f1, l1), (f2, l2) = (f2, l2), (f1, l1)
        return pairs[f1], l1, l2

    def metric(c1, c2):
        o, la, lb = ordered(c1, c2)
        return _link_cost(o, la, lb)

    def splitting(c1, c2):
        o, la, lb = ordered(c1, c2)
        return _family_cost(o, la, lb, "b")

    def merging(c1, c2):
        o, la, lb = ordered(c1, c2)
        return _family_cost(o, la, lb, "a")

    df = pd.DataFrame([(i, k) for i, lab in enumerate(labels) for k in range(1, int(lab.max()) + 1)],
                      columns=["frame", "label"])
    tracker = LapTrack(metric=metric, cutoff=LINK_CUTOFF, splitting_metric=splitting,
                       splitting_cutoff=LINK_CUTOFF, merging_metric=merging,
                       merging_cutoff=LINK_CUTOFF, gap_closing_max_frame_count=0,
                       # Fixed costs of ending / starting a track or not splitting / merging,
                       # instead of laptrack's percentile of this run's link costs, which
                       # would refuse a fair but not best link in a run of near-perfect ones.
                       track_start_cost=LINK_CUTOFF, track_end_cost=LINK_CUTOFF,
                       segment_start_cost=LINK_CUTOFF, segment_end_cost=LINK_CUTOFF,
                       no_splitting_cost=LINK_CUTOFF, no_merging_cost=LINK_CUTOFF)
    with warnings.catch_warnings():  # pandas / laptrack chatter on tiny problems
        warnings.simplefilter("ignore")
        track_df, split_df, merge_df = tracker.predict_dataframe(
            df, ["frame", "label"], only_coordinate_cols=False)
    members: dict[int, list[tuple[int, int]]] = {}
    for step, label, tid in zip(track_df["frame"], track_df["label"], track_df["track_id"]):
        members.setdefault(int(tid), []).append((int(frames[int(step)]), int(label)))
    order = sorted(members, key=lambda tid: min(members[tid]))
    renumber = {old: k + 1 for k, old in enumerate(order)}
    tracks = {}
    for old in order:
        held = sorted(members[old])
        tracks[renumber[old]] = Track(renumber[old], [f for f, _ in held], [o for _, o in held])
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
    """d volume / d t (per s) along one track: metrics.local_slope over the track's frames."""
    from stream3d.analysis.metrics import local_slope

    return local_slope(t, volume)


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
