"""Synthetic specimens with known 3D truth: occupancy maps and their potentials."""

from stream3d.specimen.dendrite import Dendrite, DendriteParams
from stream3d.specimen.geometry import (
    column_height, column_thickness, height_to_slice, slab_profile, slice_centres,
)
from stream3d.specimen.shapes import Disc, discs, three_disc_items, three_discs, tilted_slab, two_layers
from stream3d.specimen.texture import amorphous_texture, occupancy_to_potential

__all__ = [
    "amorphous_texture", "occupancy_to_potential", "slice_centres", "height_to_slice",
    "column_height", "column_thickness", "slab_profile", "Disc", "discs", "three_discs",
    "three_disc_items", "tilted_slab", "two_layers", "Dendrite", "DendriteParams",
]
