"""Algorithms: numerical MFG solvers live in :mod:`mfg_pde.alg.numerical`."""
