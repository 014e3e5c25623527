"""The diffusivity plug-in interface and its registry.

A diffusivity is the coupling matrix S(Z, t) ∈ R^{N×N} of the diffusion dZ/dt = (S − I) Z.
Plug-ins never need to materialise S: :meth:`Diffusivity.forward` returns the product S V
(V = Z by default); :meth:`Diffusivity.dense` builds the matrix for small N (tests, checks).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator, TypeVar

import torch
from torch import nn


@dataclass(frozen=True)
class DiffusivityProperties:
    """What a diffusivity guarantees (the theory checks rely on these flags).

    row_stochastic: S ≥ 0 rows sum to 1 (constants are fixed points).
    symmetric: S = Sᵀ.
    nonnegative: S_ij ≥ 0.
    depends_on_state: S changes with Z (attention); False for a fixed graph operator.
    cost: time per application to an N×d value tensor, e.g. ``"O(E d)"``.
    rows_sum_to_one: S 𝟙 = 𝟙 without S ≥ 0 (constants are fixed points; the rows of the generator
        S − I sum to zero); implied by row_stochastic (None: the same as row_stochastic).
    permutation_equivariant: relabelling the nodes relabels S, S_{π}(PZ) = P S(Z) Pᵀ (graph
        operators and attention); False for the position kernels of sequences.
    shift_equivariant: (position kernels) shifting a sequence shifts S Z, for the positions whose
        window stays inside the sequence; not claimed (False) for the others.
    """

    row_stochastic: bool
    symmetric: bool
    nonnegative: bool
    depends_on_state: bool
    cost: str
    rows_sum_to_one: bool | None = None
    permutation_equivariant: bool = True
    shift_equivariant: bool = False

    def __post_init__(self) -> None:
        if self.rows_sum_to_one is None:
            object.__setattr__(self, "rows_sum_to_one", self.row_stochastic)


class Diffusivity(nn.Module):
    """Base class of all diffusivities; subclasses set ``name`` and ``properties``."""

    name: ClassVar[str]
    # A class attribute; an instance refines it where its own S differs (mix from its parts, the
    # graph operators' symmetry from their matrix, gin's sign from ε).
    properties: DiffusivityProperties
    #: Attributes that :meth:`set_initial_state` fills with tensors computed from Z⁰ (a tensor, a
    #: tuple of tensors, or None): the field reads them, so the adjoint must differentiate them.
    cached_inputs: ClassVar[tuple[str, ...]] = ()
    #: True when :meth:`forward` always returns a new tensor that nothing else holds and that no
    #: autograd node saved, so that the caller may update it in place (``DiffusionField`` then
    #: forms F(Z) and the Euler step without another N×d tensor). False is always safe.
    fresh_output: bool = False

    def forward(self, z: torch.Tensor, values: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S(z, t) @ values along the node axis (``values`` defaults to ``z``)."""
        raise NotImplementedError

    def add_to(self, out: torch.Tensor, z: torch.Tensor, values: torch.Tensor | None = None,
               t: torch.Tensor | None = None, *, alpha: float = 1.0) -> torch.Tensor:
        """``out += alpha · S(z, t) @ values`` in place (``out`` a tensor nobody else reads, of the
        shape of the product); returns ``out``. Operators that can add their product without
        forming it first (the fixed graph operators, by row blocks) override this."""
        return out.add_(self(z, values, t), alpha=alpha)

    def set_initial_state(self, z0: torch.Tensor) -> None:
        """Called with Z⁰ before each solve; diffusivities frozen at Z⁰ (GRAND-l style) cache S here."""

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S as a dense matrix ([N, N], or [B, N, N] for batched z); for small N only."""
        raise NotImplementedError

    def node_measure(self) -> torch.Tensor | None:
        """Node weights m > 0 for which S is self-adjoint in ⟨x, y⟩_m = Σ_i m_i x_i y_i.

        Defines the Dirichlet energy E(Z) = Σ_i m_i ⟨z_i, z_i − (S Z)_i⟩ that the heat flow
        dZ/dt = (S − I)Z decreases; ``None`` when S has no such measure (state-dependent S)."""
        return None

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class GraphDiffusivity(Diffusivity):
    """A diffusivity built on an input graph (``gcn``, ``gat``, ...): its graph-derived tensors are
    assembled by :meth:`attach` and can be swapped for another graph's, keeping the parameters.

    Mini-batch training applies the same model to the induced subgraph of each node partition:
    :func:`on_graph` binds every graph diffusivity of a model to that subgraph for one call."""

    num_nodes: int

    def attach(self, graph: object) -> None:
        """Validate ``graph`` (a PyG ``Data`` or anything with ``edge_index``/``num_nodes``/
        ``edge_weight``) and (re)build the tensors this diffusivity derives from it."""
        raise NotImplementedError

    def on_graph(self, graph: object) -> "GraphDiffusivity":
        """A copy that shares this diffusivity's parameters (same objects, so gradients reach them)
        but acts on ``graph``; its operator is on this one's device and in its dtype."""
        bound = copy.copy(self)
        bound._buffers = dict(self._buffers)
        bound.attach(graph)
        return bound


@contextmanager
def on_graph(model: nn.Module, graph: object | None) -> Iterator[nn.Module]:
    """Within the ``with`` block every :class:`GraphDiffusivity` inside ``model`` acts on ``graph``
    (e.g. a mini-batch's induced subgraph, ``num_nodes`` = the batch's nodes); ``None`` changes
    nothing. Each distinct diffusivity is rebuilt once (one shared by several layers stays shared);
    the originals are restored on exit, also after an error."""
    if graph is None:
        yield model
        return
    bound: dict[int, nn.Module] = {}
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GraphDiffusivity):
                if id(child) not in bound:
                    bound[id(child)] = child.on_graph(graph)
                swaps.append((parent, name, child))
    try:
        for parent, name, child in swaps:
            parent._modules[name] = bound[id(child)]
        yield model
    finally:
        for parent, name, child in swaps:
            parent._modules[name] = child


class PerHeadDense:
    """Mixin for diffusivities with one matrix S^h per head (``heads``, ``concat``, ``dense_heads``).

    With ``concat`` head h propagates channel block h, so for several heads there is no single
    N×N matrix; otherwise S = (1/H) Σ_h S^h."""

    heads: int
    concat: bool
    name: str

    def dense_heads(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def dense(self, z: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """S as [N, N] (or [B, N, N]): the head mean for concat=False, S¹ for one head."""
        if self.concat and self.heads > 1:
            raise ValueError(
                f"{self.name} with concat=True and heads={self.heads} applies a different S^h to each channel "
                "block, so there is no single N×N matrix; use dense_heads(z) for the [..., H, N, N] stack"
            )
        return self.dense_heads(z, t).mean(dim=-3)

    def check_head_blocks(self, values: torch.Tensor) -> None:
        """With concat the values' channels must split into ``heads`` equal blocks."""
        if self.concat and values.shape[-1] % self.heads:
            raise ValueError(
                f"with concat=True the values' channels must split into heads={self.heads} blocks, "
                f"got shape {tuple(values.shape)}"
            )


def positive_int(arg: str, value: object) -> int:
    """``value`` if it is an int ≥ 1, else a ValueError naming ``arg``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return value


def widen(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is a 16-bit float (float16, bfloat16), else ``x`` itself.

    Sums over N nodes and attention logits overflow float16 (beyond 65504) where the diffusivity's
    result does not, and some CPU kernels (``cdist``) have no 16-bit version: such steps work in
    float32 and round their result back to the state's dtype."""
    return x.float() if x.dtype.itemsize < 4 else x


D = TypeVar("D", bound=type[Diffusivity])
_REGISTRY: dict[str, type[Diffusivity]] = {}


def register_diffusivity(cls: D) -> D:
    """Class decorator: make ``cls`` available as ``diffusivity(cls.name, ...)``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a diffusivity named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_diffusivities() -> tuple[str, ...]:
    """Names accepted by :func:`diffusivity`."""
    return tuple(sorted(_REGISTRY))


def diffusivity_class(name: str) -> type[Diffusivity]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown diffusivity {name!r}; valid names: {', '.join(available_diffusivities())}")
    return _REGISTRY[name]


def diffusivity(name: str, **params: object) -> Diffusivity:
    """Build the diffusivity registered as ``name`` with its parameters, e.g.
    ``diffusivity("gcn", edge_index=ei, num_nodes=n)``."""
    return diffusivity_class(name)(**params)

