"""Synthetic specimens with known 3D truth: occupancy maps and their potentials."""

from stream3d.specimen.texture import amorphous_texture, occupancy_to_potential

__all__ = ["amorphous_texture", "occupancy_to_potential"]
