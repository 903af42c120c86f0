"""Regions of material whose depth is searched as a whole, and the windows that judge them.

A region is a set of columns holding material at about one depth: a connected part of the
support, cut where the height map jumps (two layers side by side) and, optionally, tiled into
blocks so that a large structure can be corrected piece by piece. A region's window is the
region dilated by a few pixels: the Fresnel fringes and the lens's delocalisation put a
region's signal slightly outside it, and the depth information of homogeneous material sits
mostly in those edge fringes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph


@dataclass(frozen=True)
class Regions:
    """Region labels (ny, nx) int32: 0 = no material, 1..count = regions."""

    labels: np.ndarray

    @property
    def count(self) -> int:
        return int(self.labels.max(initial=0))

    def mask(self, region: int) -> np.ndarray:
        """Columns of ``region`` (1-based)."""
        return self.labels == region

    def centres(self, height: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Weighted mean height (Å) of each region, region 1 first."""
        index = np.arange(1, self.count + 1)
        mass = ndimage.sum_labels(weight, self.labels, index)
        moment = ndimage.sum_labels(np.nan_to_num(height) * weight, self.labels, index)
        return np.where(mass > 0, moment / np.where(mass > 0, mass, 1.0), np.nan)


def height_components(support: np.ndarray, height: np.ndarray, *, jump: float) -> np.ndarray:
    """Connected components of ``support`` in which 4-neighbours differ by < ``jump`` Å in height.

    Returns labels (ny, nx) int32, 0 outside the support.
    """
    support = np.asarray(support, dtype=bool)
    ny, nx = support.shape
    index = np.arange(ny * nx).reshape(ny, nx)
    rows, cols = [], []
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        linked = support[a] & support[b] & (np.abs(height[a] - height[b]) < jump)
        rows.append(index[a][linked])
        cols.append(index[b][linked])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(ny * nx, ny * nx))
    _, component = csgraph.connected_components(graph, directed=False)
    labels = np.zeros((ny, nx), dtype=np.int32)
    _, dense = np.unique(component[support.ravel()], return_inverse=True)
    labels[support] = dense + 1
    return labels


def tile(labels: np.ndarray, size: int) -> np.ndarray:
    """Split every region into blocks of ``size`` x ``size`` pixels (0 = no tiling)."""
    if size <= 0:
        return labels
    ny, nx = labels.shape
    columns = (nx + size - 1) // size
    block = (np.arange(ny)[:, None] // size) * columns + np.arange(nx)[None] // size
    combined = np.where(labels > 0, labels.astype(np.int64) * (block.max() + 1) + block, 0)
    _, dense = np.unique(combined, return_inverse=True)
    dense = dense.reshape(labels.shape).astype(np.int32)
    # np.unique puts the 0 background first when present.
    return dense if (labels == 0).any() else dense + 1


def merge_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Regions smaller than ``min_area`` pixels join the neighbour they share most border with;
    isolated small regions stay (their depth is searched with the little signal they have)."""
    labels = labels.copy()
    for _ in range(4):
        areas = np.bincount(labels.ravel())
        small = [r for r in range(1, areas.size) if 0 < areas[r] < min_area]
        if not small:
            break
        changed = False
        for r in small:
            ring = ndimage.binary_dilation(labels == r) & (labels != r) & (labels > 0)
            if ring.any():
                labels[labels == r] = np.bincount(labels[ring]).argmax()
                changed = True
        if not changed:
            break
    _, dense = np.unique(labels, return_inverse=True)
    dense = dense.reshape(labels.shape).astype(np.int32)
    return dense if (labels == 0).any() else dense + 1


def find_regions(support: np.ndarray, height: np.ndarray, *, jump: float, size: int = 0,
                 min_area: int = 1) -> Regions:
    """Regions of a support: components without height jumps >= ``jump`` Å, tiled into
    ``size``-pixel blocks (0 = whole components), small pieces merged into neighbours."""
    labels = height_components(support, np.nan_to_num(height), jump=jump)
    labels = merge_small(tile(labels, size), min_area)
    return Regions(labels)


def inherit(regions: Regions, support: np.ndarray) -> Regions:
    """Labels for a new support: every column takes the label of the nearest labelled column,
    so refined edges and new growth belong to the region they grew from."""
    support = np.asarray(support, dtype=bool)
    if regions.count == 0:
        return Regions(ndimage.label(support)[0].astype(np.int32))
    _, (iy, ix) = ndimage.distance_transform_edt(regions.labels == 0, return_indices=True)
    return Regions(np.where(support, regions.labels[iy, ix], 0).astype(np.int32))


def windows(regions: Regions, pad: int) -> list[np.ndarray]:
    """Each region's window: its columns dilated by ``pad`` pixels."""
    structure = ndimage.generate_binary_structure(2, 1)
    return [ndimage.binary_dilation(regions.mask(r), structure, iterations=max(pad, 0))
            if pad > 0 else regions.mask(r) for r in range(1, regions.count + 1)]


def colour_groups(masks: list[np.ndarray], pad: int) -> list[list[int]]:
    """Groups of region indices (0-based) whose windows, grown by another ``pad``, do not touch:
    regions of one group can be moved together and each still judged by its own window."""
    grown = [ndimage.binary_dilation(m, iterations=pad) if pad > 0 else m for m in masks]
    groups: list[list[int]] = []
    occupied: list[np.ndarray] = []
    for i, m in enumerate(grown):
        for group, taken in zip(groups, occupied):
            if not (taken & m).any():
                group.append(i)
                taken |= m
                break
        else:
            groups.append([i])
            occupied.append(m.copy())
    return groups
