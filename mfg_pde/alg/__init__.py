"""Algorithms: numerical MFG solvers live in :mod:`mfg_pde.alg.numerical`, learning
solvers (an actor-critic on torch, refereed by the PDE solvers) in :mod:`mfg_pde.alg.rl`."""
