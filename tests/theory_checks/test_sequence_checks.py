"""The sequence checks pass in the fast profile, and each can fail: fed a kernel whose rows do not
sum to zero, a kernel that is not symmetric, or a step beyond the bound, the same per-example
functions and the same hypothesis search report a violation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from diffusion_pde.diffusivities.sequence_window import SequenceWindow
from theory_checks import Profile, for_all, load_checks, run_check
from theory_checks import sequence_diffusion as seq
from theory_checks.sequence_diffusion import KernelExample, kernel_examples

F64 = torch.float64
FAST = Profile.fast()
NAMES = {"sequence.constants_fixed_points", "sequence.symmetric_conserves_sum", "sequence.euler_stability_bound",
         "sequence.dirichlet_nonincreasing", "sequence.stable_step_convex"}


def outcome(name: str):
    (item,) = [c for c in load_checks() if c.name == name]
    return run_check(item, FAST)


class Leaky(SequenceWindow):
    """A window kernel whose diagonal is 10% too large: rows sum to −0.1 r_t, not to zero."""

    name = "leaky_window"  # never registered

    def kernel(self, values):
        rows = self.row_sums(values.shape[-2]).t()[:, :, None].to(values.dtype)   # [L, H, 1]
        return super().kernel(values) - 0.1 * (rows * self._heads_view(values)).flatten(-2)

    def kernel_matrices(self, length):
        k = super().kernel_matrices(length)
        return k + 0.1 * torch.diag_embed(k.diagonal(dim1=-2, dim2=-1))


def test_registered_in_the_sequence_section() -> None:
    assert {c.name for c in load_checks() if c.section == "sequence"} == NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_check_passes(name: str) -> None:
    result = outcome(name)
    assert result.passed, result.details
    if name == "sequence.euler_stability_bound":
        assert 1.03 <= result.value <= 1.041                  # measured growth per step beyond 2/ρ: 1.04
        assert result.details["largest inside ratio"] <= 1 + 1e-12
        assert result.details["largest rho / rho_hat"] <= 1
    else:
        assert result.value <= 1e-12


# --------------------------------------------------------------------------- ... and each can fail


def test_constants_are_not_fixed_points_of_a_kernel_whose_rows_do_not_sum_to_zero() -> None:
    def prop(example: KernelExample) -> None:
        leaky = Leaky(window=3, heads=1, dtype=F64)
        leaky.load_state_dict(example.build().state_dict())
        value = seq.constants_residual(leaky, torch.tensor([1.5, -2.0], dtype=F64), example.length)
        assert value <= seq.RELATIVE_TOL, value

    examples = st.builds(KernelExample, st.just("sequence_window"), st.just((("window", 3),)), st.integers(2, 12),
                         st.floats(-1.0, 1.0), st.integers(0, 1000))
    failure = for_all(examples, prop, FAST)
    assert failure is not None and float(failure["error"].split()[0]) > 1e-3


def test_the_sum_drifts_under_a_kernel_that_is_not_symmetric() -> None:
    cases = st.fixed_dictionaries({"kernel": kernel_examples(min_length=3).filter(lambda e: not dict(e.params)
                                                                                .get("symmetric", False)),
                                   "method": st.just("rk4"), "t1": st.just(1.0), "n_steps": st.just(4)})

    def prop(case):
        assert seq.sum_example(case) <= seq.RELATIVE_TOL

    assert for_all(cases, prop, FAST) is not None


@pytest.mark.parametrize("inside, outside", [(1.05, 1.02), (0.98, 0.95)])
def test_stability_fails_for_a_wrong_bound(inside: float, outside: float) -> None:
    """Claiming stability at 1.05·2/ρ (it grows), or growth at 0.95·2/ρ (it does not)."""
    example = KernelExample("sequence_laplacian", (), 10, 0.0, seed=1)
    m = seq.stability_example({"kernel": example}, inside=inside, outside=outside)
    if inside > 1:
        assert m["inside max ratio"] > 10                       # 1.1 per step over 120 steps
    else:
        assert m["outside growth"] < 1                          # the check wants growth beyond the bound


def test_dirichlet_energy_increases_beyond_the_bound() -> None:
    cases = st.fixed_dictionaries({"kernel": kernel_examples(symmetric=True, heads=(1,), min_length=2),
                                   "fraction": st.just(1.0), "steps": st.integers(2, 4)})

    def prop(case):
        assert seq.dirichlet_example(case, factor=1.1)["increase"] <= seq.RELATIVE_TOL

    assert for_all(cases, prop, FAST) is not None


def test_a_step_beyond_the_learned_bound_leaves_the_convex_hull() -> None:
    """Three times δt (θ saturated): the Euler matrix gets negative diagonal entries and channels overshoot."""
    example = KernelExample("sequence_laplacian", (("causal", True),), 8, 0.0, seed=2)
    case = {"kernel": example, "attention": False, "source_weight": 0.0, "theta": 40.0, "steps": 3}
    assert seq.convex_example(case) <= 1e-12
    assert seq.convex_example(case, factor=3.0) > 1e-2
