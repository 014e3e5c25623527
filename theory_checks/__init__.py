"""Executable checks of the theory (energy descent, MPNN correspondences, solver order).

Skeleton: the checks arrive with the theory-checks issue. Imports flow one way:
``solvers`` ← ``diffusion_pde`` ← ``theory_checks``.
"""
