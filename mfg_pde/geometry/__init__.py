"""Geometry: quadtree adaptive mesh refinement in 2D."""
