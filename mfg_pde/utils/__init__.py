"""Utilities shared by the solvers."""
