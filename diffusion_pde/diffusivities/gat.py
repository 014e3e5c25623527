r"""``gat``: graph attention over each node's in-neighbourhood and itself (Veličković et al.).

For head h with the state's channel block z^h (d / H channels) and attention vectors
a_src^h, a_dst^h:

$$ e^h_{ij} = \mathrm{LeakyReLU}_{0.2}\big(a_{dst}^{h\top} z^h_i + a_{src}^{h\top} z^h_j\big), \qquad
   S^h_{ij} = \frac{\exp e^h_{ij}}{\sum_{l \in N(i) \cup \{i\}} \exp e^h_{il}} $$

Self-loops follow PyG's ``GATConv`` (``add_self_loops=True``): existing self-loops are removed
and exactly one is added per node; duplicate edges stay separate entries (each gets its own
softmax term and message). The edges are prepared and sorted by target once, at construction;
an evaluation is a handful of gathers and scatters over the E + N edges, O(E d), never N × N
(only :meth:`dense` builds matrices).

The diffusivity acts on the state directly: GATConv's linear map W lives outside (Z⁰ = X Wᵀ),
and it commutes with S. ``concat=True``: head h propagates channel block h of the values with
S^h (block-diagonal over heads; one Euler step with τ = 1 is ``GATConv(concat=True)``).
``concat=False``: S = (1/H) Σ_h S^h propagates all channels; note that ``GATConv(concat=False)``
is instead the concat step followed by the head mean (a channel map after the step).

``frozen=True``: the attention coefficients are computed once from Z⁰ in
:meth:`set_initial_state` and held fixed along the solve (GRAND-l style).

Properties: row-stochastic (per head and for the head mean), non-negative, not symmetric,
state-dependent. Cost O(E d).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from ..graph import Graph, as_graph
from ._base import DiffusivityProperties, GraphDiffusivity, PerHeadDense, positive_int, register_diffusivity


@register_diffusivity
class GAT(PerHeadDense, GraphDiffusivity):
    name = "gat"
    cached_inputs = ("_frozen_alpha",)
    properties = DiffusivityProperties(
        row_stochastic=True, symmetric=False, nonnegative=True, depends_on_state=True, cost="O(E d)"
    )

    def __init__(
        self,
        edge_index: torch.Tensor | None = None,
        *,
        num_nodes: int | None = None,
        graph: object | None = None,
        in_channels: int | None = None,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        frozen: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if in_channels is None:
            raise ValueError("gat needs in_channels=<d, the width of the state Z>: its heads split Z's channels")
        in_channels = positive_int("in_channels", in_channels)
        heads = positive_int("heads", heads)
        if in_channels % heads:
            raise ValueError(
                f"heads={heads} must divide in_channels={in_channels}: head h reads channel block h "
                f"(in_channels / heads channels) of the state"
            )
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"negative_slope must be a real number, got {negative_slope!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.in_channels, self.heads, self.head_channels = in_channels, heads, in_channels // heads
        self.concat, self.negative_slope, self.frozen = bool(concat), float(negative_slope), bool(frozen)
        self.register_buffer("src", torch.zeros(0, dtype=torch.long), persistent=False)
        self.attach(as_graph(edge_index, num_nodes=num_nodes, graph=graph, owner=f"diffusivity {self.name!r}"))

        self.att_src = nn.Parameter(torch.empty(heads, self.head_channels, dtype=dtype))
        self.att_dst = nn.Parameter(torch.empty(heads, self.head_channels, dtype=dtype))
        self._frozen_alpha: torch.Tensor | None = None
        self.reset_parameters()

    def attach(self, graph: object) -> None:
        """GATConv's self-loop policy: drop the existing ones, add one per node; then sort by target."""
        g = graph if isinstance(graph, Graph) else as_graph(graph=graph, owner=f"diffusivity {self.name!r}")
        device = self.src.device
        self.num_nodes = g.num_nodes
        src, dst = g.edge_index
        keep = src != dst
        nodes = torch.arange(g.num_nodes)
        src, dst = torch.cat([src[keep], nodes]), torch.cat([dst[keep], nodes])
        order = torch.argsort(dst, stable=True)
        self.register_buffer("src", src[order].to(device), persistent=False)
        self.register_buffer("dst", dst[order].to(device), persistent=False)

    @property
    def num_edges(self) -> int:
        """Edges of S, self-loops included (E − existing self-loops + N)."""
        return int(self.src.numel())

    def reset_parameters(self) -> None:
        """Glorot-uniform attention vectors (bound √(6 / (H + d/H)), as PyG's ``glorot``)."""
        bound = math.sqrt(6.0 / (self.heads + self.head_channels))
        for att in (self.att_src, self.att_dst):
            nn.init.uniform_(att, -bound, bound)
        self._frozen_alpha = None

    def _check(self, z: torch.Tensor, what: str = "z") -> None:
        if z.dim() not in (2, 3) or z.shape[-2] != self.num_nodes:
            raise ValueError(
                f"{what} must have shape [N, d] or [B, N, d] with N = num_nodes = {self.num_nodes}, got {tuple(z.shape)}"
            )
        if z.dtype != self.att_src.dtype or z.device != self.att_src.device:
            raise TypeError(
                f"{what} is {z.dtype} on {z.device} but diffusivity {self.name!r} holds {self.att_src.dtype} on "
                f"{self.att_src.device}; move it with diffusivity.to(z) (or build it with dtype=z.dtype)"
            )

    def attention(self, z: torch.Tensor) -> torch.Tensor:
        """The softmax coefficients S^h_e per edge e = (src[e] → dst[e]): shape [..., E, H]."""
        self._check(z)
        if z.shape[-1] != self.in_channels:
            raise ValueError(
                f"z must have in_channels = {self.in_channels} channels (heads={self.heads} blocks of "
                f"{self.head_channels}), got shape {tuple(z.shape)}"
            )
        node_dim = z.dim() - 2
        blocks = z.unflatten(-1, (self.heads, self.head_channels))  # [..., N, H, C]
        score_src = (blocks * self.att_src).sum(-1)  # [..., N, H]
        score_dst = (blocks * self.att_dst).sum(-1)
        logits = score_src.index_select(node_dim, self.src) + score_dst.index_select(node_dim, self.dst)
        logits = torch.nn.functional.leaky_relu(logits, self.negative_slope)  # [..., E, H]
        # Edge softmax grouped by target; every node has its self-loop, so no group is empty.
        shape = (*z.shape[:-2], self.num_nodes, self.heads)
        target = self.dst.view(-1, 1).expand_as(logits)  # [..., E, H] (broadcast over the batch)
        peak = logits.new_empty(shape).scatter_reduce_(node_dim, target, logits.detach(), "amax", include_self=False)
        weights = (logits - peak.index_select(node_dim, self.dst)).exp()
        total = logits.new_zeros(shape).index_add_(node_dim, self.dst, weights)
        return weights / total.index_select(node_dim, self.dst)

    def set_initial_state(self, z0: torch.Tensor) -> None:
        """Frozen mode: compute S from Z⁰ once and keep it (kept in the autograd graph of Z⁰)."""
        self._frozen_alpha = self.attention(z0) if self.frozen else None

    def _alpha(self, z: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return self.attention(z)
        if self._frozen_alpha is None:
            raise RuntimeError(f"{self.name!r} is frozen at Z⁰: call set_initial_state(z0) (DiffusionField does) first")
        return self._frozen_alpha

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        alpha = self._alpha(z)  # [..., E, H]
        values = z if values is None else values
        self._check(values, "values")
        gathered = values.index_select(values.dim() - 2, self.src)  # [..., E, d_v]
        if self.concat:
            self.check_head_blocks(values)
            messages = (gathered.unflatten(-1, (self.heads, -1)) * alpha.unsqueeze(-1)).flatten(-2)
        else:
            messages = gathered * alpha.mean(-1, keepdim=True)
        out = messages.new_zeros(*messages.shape[:-2], self.num_nodes, messages.shape[-1])
        return out.index_add_(messages.dim() - 2, self.dst, messages)

    def dense_heads(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """The per-head matrices S^h as a dense [..., H, N, N] tensor; for small N only."""
        if z is None and not (self.frozen and self._frozen_alpha is not None):
            raise ValueError("gat.dense(z) needs the state z")
        alpha = self._alpha(z)
        alpha = alpha.movedim(-1, -2)  # [..., H, E]
        matrices = alpha.new_zeros(*alpha.shape[:-1], self.num_nodes * self.num_nodes)
        return matrices.index_add_(-1, self.dst * self.num_nodes + self.src, alpha).unflatten(-1, (self.num_nodes,) * 2)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"in_channels={self.in_channels}, heads={self.heads}, concat={self.concat}, "
                f"negative_slope={self.negative_slope}, frozen={self.frozen}")
