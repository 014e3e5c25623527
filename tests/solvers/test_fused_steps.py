"""The fixed-step path's allocation savings change no result: stage sums accumulated in place are
bit for bit the chain of ``torch.add`` they replace, and a field's own ``euler_step`` is what
explicit Euler calls (once per step, counted as one evaluation)."""

from __future__ import annotations

import pytest
import torch

import solvers
from solvers._adaptive import CountedField
from solvers._fixed import rk_step
from solvers._solution import SolverStats


def chained_rk_step(field, t, z, h, tableau):
    """The reference: every term of every stage sum is a new ``torch.add``/``torch.addcmul``."""
    traced = isinstance(h, torch.Tensor)
    a, b, c = tableau.coefficients
    stages = []
    for c_i, row in zip(c, a):
        z_i = z
        for a_ij, k_j in zip(row, stages):
            if a_ij:
                alpha = h * a_ij
                z_i = torch.addcmul(z_i, alpha.to(z.dtype), k_j) if traced else torch.add(z_i, k_j, alpha=alpha)
        t_i = t + h * c_i
        stages.append(field(t_i.to(z.dtype) if traced else torch.tensor(t_i, dtype=z.dtype), z_i))
    out = z
    for b_i, k_i in zip(b, stages):
        if b_i:
            alpha = h * b_i
            out = torch.addcmul(out, alpha.to(z.dtype), k_i) if traced else torch.add(out, k_i, alpha=alpha)
    return out


def nonlinear(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.sin(z) * (1.0 + t) - 0.3 * z.roll(1, dims=-1)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_stage_sums_are_bitwise_the_chained_sums(method: str, dtype: torch.dtype) -> None:
    tableau = solvers.get_tableau(method)
    z = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.equal(rk_step(nonlinear, 0.25, z, 0.1, tableau), chained_rk_step(nonlinear, 0.25, z, 0.1, tableau))
    # traced times (t1 requires grad): addcmul in place, also bit for bit, and the same gradient
    h = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    zz = z.clone().requires_grad_()
    got = rk_step(nonlinear, torch.tensor(0.25, dtype=torch.float64), zz, h, tableau)
    ref = chained_rk_step(nonlinear, torch.tensor(0.25, dtype=torch.float64), zz, h, tableau)
    assert torch.equal(got, ref)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(got.sum(), [zz, h]),
                                                  torch.autograd.grad(ref.sum(), [zz, h])))


class OwnEuler(torch.nn.Module):
    """f(t, z) = −z with its own Euler step, which records its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[float] = []

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -z

    def euler_step(self, t: torch.Tensor, z: torch.Tensor, h: float) -> torch.Tensor:
        self.calls.append(h)
        return z * (1.0 - h)


def test_explicit_euler_calls_the_fields_own_step_once_per_step() -> None:
    field = OwnEuler()
    z0 = torch.ones(3, dtype=torch.float64)
    sol = solvers.solve(field, z0, 1.0, method="euler", n_steps=4)
    assert field.calls == [0.25] * 4 and sol.stats.nfe == 4 and sol.stats.steps == 4
    assert torch.allclose(sol.final, z0 * 0.75**4, rtol=0, atol=1e-15)
    # other methods evaluate the field itself
    field.calls.clear()
    solvers.solve(field, z0, 1.0, method="rk4", n_steps=2)
    assert field.calls == []


def test_counted_field_forms_the_plain_step_for_a_field_without_one() -> None:
    stats = SolverStats()
    counted = CountedField(nonlinear, stats)
    z = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor(0.5, dtype=torch.float64)
    assert torch.equal(counted.euler_step(t, z, 0.2), torch.add(z, nonlinear(t, z), alpha=0.2))
    assert stats.nfe == 1


def test_a_wrong_shaped_euler_step_is_refused() -> None:
    class Bad(OwnEuler):
        def euler_step(self, t, z, h):
            return z[:1]

    with pytest.raises(ValueError, match="euler_step"):
        solvers.solve(Bad(), torch.ones(3), 1.0, method="euler", n_steps=1)
