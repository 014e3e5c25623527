r"""The propagation operator of a DIFFormer layer: attention plus the input graph.

$$ P(Z) = c_a\, S_{attn}(Z)\, V + c_g\, \hat A\, V, \qquad V = Z W_v \ \text{(value projection) or } V = Z $$

with (c_a, c_g) = (1, 1) when the graph term is summed (the authors' released code), (1 − w, w)
when it is mixed with weight w ∈ (0, 1), and (1, 0) / (0, 1) when one of the two parts is absent.
Â is the ``gcn`` operator D̃^{-1/2}(A + I)D̃^{-1/2} of the input graph. P plays the role of
"S Z" in the diffusion field F(Z) = (1 − μ)(P(Z) − Z) + μ(Z⁰ − Z); the explicit Euler step of
size τ is the DIFFormer layer Z ← (1 − τ) Z + τ P(Z) (for μ = 0).

P is row-stochastic only when the terms are mixed (or one is absent) and there is no value
projection; summed, its rows add up to about 2. The heads of the attention share the value
projection: S_attn is the mean of the per-head matrices (see ``difformer_s``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..diffusivities import Diffusivity, DiffusivityProperties


class Propagation(Diffusivity):
    """``P(Z) = c_a S_attn(Z) V + c_g Â V`` as a :class:`Diffusivity` (it never builds S densely)."""

    name = "propagation"

    def __init__(self, attention: Diffusivity | None = None, graph: Diffusivity | None = None, *,
                 graph_weight: float | None = None, value: nn.Linear | None = None) -> None:
        super().__init__()
        if attention is None and graph is None:
            raise ValueError("Propagation needs an attention diffusivity, a graph diffusivity or both")
        if graph_weight is not None and not 0.0 < float(graph_weight) < 1.0:
            raise ValueError(f"graph_weight must lie in (0, 1) (None sums the two terms), got {graph_weight!r}")
        self.attention, self.graph, self.value = attention, graph, value
        if attention is None:
            self.coefficients = (0.0, 1.0)
        elif graph is None:
            self.coefficients = (1.0, 0.0)
        elif graph_weight is None:
            self.coefficients = (1.0, 1.0)
        else:
            self.coefficients = (1.0 - float(graph_weight), float(graph_weight))
        # The sum is formed in place in the attention's output (or is the graph term itself), a new
        # tensor whenever the graph term is there; attention alone passes its output through.
        self.fresh_output = graph is not None or bool(getattr(attention, "fresh_output", False))
        parts = [p.properties for p in (attention, graph) if p is not None]
        self.properties = DiffusivityProperties(
            row_stochastic=value is None and sum(self.coefficients) == 1.0 and all(p.row_stochastic for p in parts),
            symmetric=value is None and len(parts) == 1 and parts[0].symmetric,
            nonnegative=value is None and all(p.nonnegative for p in parts),
            depends_on_state=any(p.depends_on_state for p in parts),
            cost=" + ".join(p.cost for p in parts),
        )

    def set_initial_state(self, z0: torch.Tensor) -> None:
        for part in (self.attention, self.graph):
            if part is not None:
                part.set_initial_state(z0)

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        values = z if values is None else values
        if self.value is not None:
            values = self.value(values)
        c_attn, c_graph = self.coefficients
        out = None
        if self.attention is not None:
            out = self.attention(z, values, t)
            if c_attn != 1.0:
                out = out * c_attn
        if self.graph is not None:
            if out is not None:
                return self.graph.add_to(out, z, values, t, alpha=c_graph)
            graph_term = self.graph(z, values, t)
            if c_graph != 1.0 or not getattr(self.graph, "fresh_output", False):
                out = graph_term * c_graph
            else:
                out = graph_term
        return out

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """The N×N matrix acting on V (the value projection is a channel map, not part of it)."""
        c_attn, c_graph = self.coefficients
        parts = [c * p.dense(z, t) for c, p in ((c_attn, self.attention), (c_graph, self.graph)) if p is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def extra_repr(self) -> str:
        return f"coefficients={self.coefficients}"
