"""Generic ODE integration for torch tensors: dz/dt = f(t, z) on [t0, t1].

Fixed-step explicit Runge–Kutta methods are native (frozen Butcher tableaux in a registry);
adaptive methods and the adjoint delegate to torchdiffeq. This package knows nothing of graphs.
"""

from ._adaptive import ADAPTIVE_METHODS
from ._solution import IntegrationError, Solution, SolverStats
from ._solve import available_methods, check_options, solve
from ._tableau import ButcherTableau, fixed_step_methods, get_tableau, register_tableau
from ._validate import count_nonfinite

__all__ = [
    "ADAPTIVE_METHODS",
    "ButcherTableau",
    "IntegrationError",
    "Solution",
    "SolverStats",
    "available_methods",
    "check_options",
    "count_nonfinite",
    "fixed_step_methods",
    "get_tableau",
    "register_tableau",
    "solve",
]
