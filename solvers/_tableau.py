"""Explicit Runge–Kutta methods as frozen Butcher tableaux, and the registry that holds them.

An explicit s-stage Runge–Kutta step of size h for dz/dt = f(t, z) is

    k_i     = f(t + c_i h,  z + h Σ_{j<i} a_ij k_j),      i = 1..s
    z_{n+1} = z_n + h Σ_i b_i k_i

and is fully described by its tableau (A strictly lower triangular, b, c). A method is added to
the registry with the :func:`register_tableau` decorator on a function that returns its tableau.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from typing import Callable

Number = Fraction | float | int


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta scheme: ``a`` (strictly lower-triangular rows), ``b``, ``c``.

    Coefficients are kept exact (``Fraction``) where possible so that order conditions can be
    checked symbolically; ``order`` is the claimed classical order of accuracy.
    """

    name: str
    order: int
    a: tuple[tuple[Number, ...], ...]
    b: tuple[Number, ...]
    c: tuple[Number, ...]
    description: str = ""

    def __post_init__(self) -> None:
        s = len(self.b)
        if s == 0:
            raise ValueError(f"tableau {self.name!r}: b must have at least one weight")
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(
                f"tableau {self.name!r}: a, b and c must all have {s} stages "
                f"(got len(a)={len(self.a)}, len(b)={s}, len(c)={len(self.c)})"
            )
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(
                    f"tableau {self.name!r}: row {i} of a must hold {i} coefficients "
                    f"(explicit methods only), got {len(row)}"
                )
            if abs(float(sum(row, Fraction(0))) - float(self.c[i])) > 1e-14:
                raise ValueError(
                    f"tableau {self.name!r}: c[{i}] must equal the sum of row {i} of a"
                )
        if abs(float(sum(self.b, Fraction(0))) - 1.0) > 1e-14:
            raise ValueError(f"tableau {self.name!r}: the weights b must sum to 1")
        if self.order < 1:
            raise ValueError(f"tableau {self.name!r}: order must be >= 1")

    @property
    def stages(self) -> int:
        """Number of stages s, i.e. function evaluations per step."""
        return len(self.b)

    @cached_property
    def coefficients(self) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]:
        """``(a, b, c)`` as floats, converted once (a Fraction's float() costs as much as a small
        tensor operation, and a step needs one per coefficient)."""
        return (tuple(tuple(float(x) for x in row) for row in self.a), tuple(float(x) for x in self.b),
                tuple(float(x) for x in self.c))


_TABLEAUX: dict[str, ButcherTableau] = {}


def register_tableau(make: Callable[[], ButcherTableau]) -> Callable[[], ButcherTableau]:
    """Decorator: call ``make()`` once and register the tableau it returns under its name.

    The name must be new; the fixed-step solver then accepts it as ``method=name``.
    """
    tableau = make()
    if not isinstance(tableau, ButcherTableau):
        raise TypeError(f"{make.__name__} must return a ButcherTableau, got {type(tableau).__name__}")
    if tableau.name in _TABLEAUX:
        raise ValueError(f"a fixed-step method named {tableau.name!r} is already registered")
    _TABLEAUX[tableau.name] = tableau
    return make


def get_tableau(name: str) -> ButcherTableau:
    """The registered tableau called ``name`` (KeyError if absent)."""
    return _TABLEAUX[name]


def fixed_step_methods() -> tuple[str, ...]:
    """Names of the registered fixed-step (Runge–Kutta tableau) methods."""
    return tuple(_TABLEAUX)


F = Fraction


@register_tableau
def euler() -> ButcherTableau:
    return ButcherTableau(
        name="euler", order=1, a=((),), b=(F(1),), c=(F(0),),
        description="explicit (forward) Euler: z + h f(t, z)",
    )


@register_tableau
def midpoint() -> ButcherTableau:
    return ButcherTableau(
        name="midpoint", order=2, a=((), (F(1, 2),)), b=(F(0), F(1)), c=(F(0), F(1, 2)),
        description="explicit midpoint rule",
    )


@register_tableau
def heun() -> ButcherTableau:
    return ButcherTableau(
        name="heun", order=2, a=((), (F(1),)), b=(F(1, 2), F(1, 2)), c=(F(0), F(1)),
        description="Heun's method (explicit trapezoidal rule)",
    )


@register_tableau
def rk4() -> ButcherTableau:
    return ButcherTableau(
        name="rk4",
        order=4,
        a=((), (F(1, 2),), (F(0), F(1, 2)), (F(0), F(0), F(1))),
        b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
        c=(F(0), F(1, 2), F(1, 2), F(1)),
        description="classical Runge–Kutta, weights 1/6, 1/3, 1/3, 1/6 (not the 3/8 rule)",
    )
