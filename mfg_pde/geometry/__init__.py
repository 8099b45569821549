"""Geometry: quadtree adaptive mesh refinement (AMR) in 2D.

``AdaptiveMesh`` adapts a quadtree over a rectangle to fields given on its leaves;
``QuadTree`` is the flat-array tree underneath, ``QuadTreeNode`` a read-only view of one
of its nodes, ``LeafSet`` the leaves of one mesh, ``AMRRefinementCriteria`` the rules.
See ``docs/amr.md``. Importing this package imports neither numba, jax nor torch.
"""

from mfg_pde.geometry._mesh import AdaptiveMesh, AdaptStats, AMRRefinementCriteria
from mfg_pde.geometry._quadtree import LeafSet, QuadTree, QuadTreeNode

__all__ = [
    "AMRRefinementCriteria",
    "AdaptStats",
    "AdaptiveMesh",
    "LeafSet",
    "QuadTree",
    "QuadTreeNode",
]
