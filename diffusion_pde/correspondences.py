r"""Which message-passing and attention layers are Euler steps of the diffusion, as data.

An explicit Euler step with τ = 1 of dZ/dt = (1 − μ)(S Z − Z) + μ(Z⁰ − Z) is

    Z^{k+1} = (1 − μ) S Z^k + μ Z⁰        (Z^{k+1} = S Z^k for μ = 0),

one propagation layer. A layer's channel map W commutes with S (S mixes rows, W columns:
S(ZW) = (SZ)W), so it can be applied to the state before the step (Z⁰ = X Wᵀ) or after it.

:data:`correspondences` is the table of these equalities: which diffusivity, with which
parameters, how many Euler steps of which size and source weight reproduce which PyG layer (the
oracle), under which settings. The tests in ``tests/diffusion_pde/test_correspondences.py``
check every row against its oracle in float64 (max |diff| ≤ 1e-10); ``docs/correspondences.md``
is :func:`render_document` (regenerate with ``python -m diffusion_pde.correspondences``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "Correspondence",
    "LayerArg",
    "Resolved",
    "correspondence",
    "correspondences",
    "render_document",
    "render_markdown",
]


@dataclass(frozen=True)
class LayerArg:
    """A value taken from the oracle layer's argument ``name`` (e.g. SGConv's ``K``)."""

    name: str

    def __str__(self) -> str:
        return self.name


class Resolved(NamedTuple):
    """A row bound to concrete oracle arguments: everything needed to run both sides."""

    layer_args: Mapping[str, object]
    diffusivity_params: dict[str, object]
    steps: int
    tau: float
    source_weight: float

    @property
    def t1(self) -> float:
        """Integration end time τ·K of the K Euler steps."""
        return self.tau * self.steps


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Correspondence:
    """One row: ``steps`` Euler steps of size ``tau`` with source weight ``source_weight`` of the
    field built on ``diffusivity(name, **params)`` equal the oracle ``layer`` under ``settings``.

    ``params`` are the diffusivity's parameters besides the graph, the state width and dtype;
    a :class:`LayerArg` value (also allowed for ``steps`` and ``source_weight``) is read from
    the oracle's arguments, whose tested defaults are ``layer_args``. ``readout`` is the channel
    map applied after the steps on the diffusion side (bias, head mean, ...); ``test`` names the
    test function in ``tests/diffusion_pde/test_correspondences.py`` that checks the row.
    """

    name: str
    diffusivity: str
    params: Mapping[str, object] = field(hash=False)
    layer: str
    layer_args: Mapping[str, object] = field(hash=False)
    settings: str
    steps: int | LayerArg
    tau: float
    source_weight: float | LayerArg
    readout: str
    notes: str
    test: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))
        object.__setattr__(self, "layer_args", _frozen(self.layer_args))

    def resolve(self, **layer_args: object) -> Resolved:
        """Bind the row to the oracle arguments (``layer_args`` override the row's defaults)."""
        unknown = set(layer_args) - set(self.layer_args)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown oracle argument(s) {sorted(unknown)}; this row's are {sorted(self.layer_args)}"
            )
        args = {**self.layer_args, **layer_args}

        def value(v: object) -> object:
            return args[v.name] if isinstance(v, LayerArg) else v

        return Resolved(
            layer_args=_frozen(args),
            diffusivity_params={k: value(v) for k, v in self.params.items()},
            steps=int(value(self.steps)),  # type: ignore[call-overload]
            tau=float(self.tau),
            source_weight=float(value(self.source_weight)),  # type: ignore[arg-type]
        )


_PYG = "torch_geometric.nn."

correspondences: tuple[Correspondence, ...] = (
    Correspondence(
        name="MLP",
        diffusivity="identity",
        params={},
        layer="torch.nn.Linear",
        layer_args={},
        settings="state Z⁰ = X Wᵀ (the layer's weight); S = I leaves it unchanged",
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="+ bias",
        notes="No propagation: the layer is all channel map.",
        test="test_identity_is_mlp",
    ),
    Correspondence(
        name="GCN",
        diffusivity="gcn",
        params={},
        layer=_PYG + "GCNConv",
        layer_args={"improved": False, "add_self_loops": True, "normalize": True, "cached": False},
        settings="state Z⁰ = conv.lin(X) = X Wᵀ; edge weights passed to both sides",
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="+ bias",
        notes=(
            "Â = D̃^{-1/2}(A + I)D̃^{-1/2} with in-degrees; self-loops added only where missing "
            "(add_remaining_self_loops). A node with several self-loops: PyG keeps one of their "
            "weights, the library sums them."
        ),
        test="test_gcn_is_gcnconv",
    ),
    Correspondence(
        name="SGC",
        diffusivity="gcn",
        params={},
        layer=_PYG + "SGConv",
        layer_args={"K": 2, "add_self_loops": True, "cached": False},
        settings="state Z⁰ = X; no channel map between the K steps",
        steps=LayerArg("K"),
        tau=1.0,
        source_weight=0.0,
        readout="SGConv.lin (X Wᵀ + b)",
        notes="Â^K X Wᵀ: W commutes with Â^K, so it may equally be applied first.",
        test="test_sgc_is_sgconv",
    ),
    Correspondence(
        name="GIN",
        diffusivity="gin",
        params={"eps": LayerArg("eps"), "train_eps": LayerArg("train_eps")},
        layer=_PYG + "GINConv",
        layer_args={"eps": 0.0, "train_eps": False},
        settings="GINConv(nn=torch.nn.Identity()); state Z⁰ = X",
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="the GIN MLP (node-wise)",
        notes=(
            "S = A + (1 + ε)I, unnormalised sum aggregation (duplicate edges and existing self-loops "
            "count as edges); with train_eps the gradient reaches ε."
        ),
        test="test_gin_is_ginconv",
    ),
    Correspondence(
        name="APPNP",
        diffusivity="gcn",
        params={},
        layer=_PYG + "APPNP",
        layer_args={"K": 10, "alpha": 0.1},
        settings="state Z⁰ = X (the predictions H); field source weight μ = α",
        steps=LayerArg("K"),
        tau=1.0,
        source_weight=LayerArg("alpha"),
        readout="—",
        notes="Z^{k+1} = (1 − α)ÂZ^k + αZ⁰ is the Euler step with τ = 1 and μ = α.",
        test="test_appnp_is_appnp",
    ),
    Correspondence(
        name="GAT",
        diffusivity="gat",
        params={"heads": LayerArg("heads"), "concat": True, "negative_slope": LayerArg("negative_slope")},
        layer=_PYG + "GATConv",
        layer_args={"heads": 1, "concat": True, "negative_slope": 0.2, "add_self_loops": True, "dropout": 0.0},
        settings=(
            "state Z⁰ = conv.lin(X) ([N, H·C]); att_src, att_dst copied from the conv ([1, H, C] → [H, C]); "
            "existing self-loops removed, one per node added"
        ),
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="+ bias",
        notes="Head h propagates channel block h with its own S^h; checked with 1 and 4 heads.",
        test="test_gat_is_gatconv",
    ),
    Correspondence(
        name="GAT (head mean)",
        diffusivity="gat",
        params={"heads": LayerArg("heads"), "concat": True, "negative_slope": LayerArg("negative_slope")},
        layer=_PYG + "GATConv",
        layer_args={"heads": 4, "concat": False, "negative_slope": 0.2, "add_self_loops": True, "dropout": 0.0},
        settings="as GAT, with concat=False on the conv only",
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="mean over heads + bias",
        notes=(
            "GATConv(concat=False) averages the heads' outputs: a channel map after the concat step. "
            "(gat(concat=False) is another operator: S = mean_h S^h on all channels.)"
        ),
        test="test_gat_is_gatconv",
    ),
    Correspondence(
        name="Transformer",
        diffusivity="transformer",
        params={"heads": LayerArg("heads"), "concat": True},
        layer="torch.nn.functional.scaled_dot_product_attention",
        layer_args={"heads": 4},
        settings=(
            "q = Z W_qᵀ, k = Z W_kᵀ with the diffusivity's weights, split into `heads` heads; "
            "v = Z split into channel blocks; default scale 1/√d_k, no mask, no dropout"
        ),
        steps=1,
        tau=1.0,
        source_weight=0.0,
        readout="—",
        notes="Checked with 1 and 4 heads; τ < 1 gives (1 − τ)Z + τ·Attn(Z), attention with a residual.",
        test="test_transformer_is_sdpa",
    ),
)


def correspondence(name: str) -> Correspondence:
    """The row called ``name`` (e.g. ``"APPNP"``)."""
    for row in correspondences:
        if row.name == name:
            return row
    raise ValueError(f"no correspondence named {name!r}; rows: {', '.join(r.name for r in correspondences)}")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _call(name: str, params: Mapping[str, object]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"`{name}`" + (f" ({args})" if args else "")


def render_markdown(table: tuple[Correspondence, ...] = correspondences) -> str:
    """The table as GitHub markdown, one row per correspondence."""
    header = ("model", "diffusivity", "oracle", "settings", "steps K", "τ", "μ", "after the steps", "notes")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        oracle = f"`{row.layer}`" + (
            " (" + ", ".join(f"{k}={v}" for k, v in row.layer_args.items()) + ")" if row.layer_args else ""
        )
        cells = (
            row.name, _call(row.diffusivity, row.params), oracle, row.settings, row.steps, f"{row.tau:g}",
            row.source_weight if isinstance(row.source_weight, LayerArg) else f"{row.source_weight:g}",
            row.readout, row.notes,
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


_INTRO = """\
# Message-passing layers as Euler steps

An explicit Euler step of size τ of the diffusion dZ/dt = (1 − μ)(S Z − Z) + μ(Z⁰ − Z) is

    Z^{k+1} = Z^k + τ [(1 − μ)(S Z^k − Z^k) + μ(Z⁰ − Z^k)]

and with τ = 1 it is Z^{k+1} = (1 − μ) S Z^k + μ Z⁰, which for μ = 0 is Z^{k+1} = S Z^k:
one propagation layer. A layer's channel map W commutes with S, because S mixes rows (nodes)
and W columns (channels): S(Z Wᵀ) = (S Z)Wᵀ. So the map can be applied to the state before the
step (Z⁰ = X Wᵀ) or after it, and what remains of a layer is its propagation matrix S.
K steps with no map in between are S^K (SGC); a source weight μ = α keeps a fraction of Z⁰ in
every step (APPNP). With τ < 1 a step is the residual form (1 − τ)Z + τ S Z.

The table below is `diffusion_pde.correspondences.correspondences` (data that the tests and
the theory checks iterate over). A value written as a name (`K`, `alpha`, `eps`, `heads`, ...)
is the oracle's argument of that name; the oracle's arguments in parentheses are the defaults
the tests start from. This page is generated by
`python -m diffusion_pde.correspondences > docs/correspondences.md`.

"""

_TESTING = """
## How each row is tested

`tests/diffusion_pde/test_correspondences.py` runs both sides in float64 on random directed
graphs (hypothesis, derandomised in CI) that contain isolated nodes, duplicate edges and
self-loops, and requires max |diff| ≤ 1e-10. The diffusion side is always
`solvers.solve(DiffusionField(S, source_weight=μ), Z⁰, t1=τK, method="euler", n_steps=K)`.

- **MLP** (`test_identity_is_mlp`): the step returns Z⁰ = X Wᵀ; plus the bias it is `nn.Linear(X)`.
- **GCN** (`test_gcn_is_gcnconv`): Z⁰ = `conv.lin(X)`, one step plus `conv.bias` against
  `GCNConv(X)`, with and without edge weights. At most one self-loop per node is generated:
  with several, PyG's `add_remaining_self_loops` keeps one of their weights while the library
  sums them (duplicate edges add up everywhere else, in both).
- **SGC** (`test_sgc_is_sgconv`): Z⁰ = X, K ∈ {1, 2, 3} steps, then `SGConv.lin`.
- **GIN** (`test_gin_is_ginconv`): `GINConv(nn=Identity(), eps, train_eps)` for several ε; with
  `train_eps=True` the gradient of a random linear functional with respect to ε also matches PyG's.
- **APPNP** (`test_appnp_is_appnp`): Z⁰ = X, K steps with μ = α, for several (K, α).
- **GAT** (`test_gat_is_gatconv`): Z⁰ = `conv.lin(X)`, attention vectors copied, heads 1 and 4,
  concat True and False (for False the head mean of the concat step, a channel map after it);
  also the gradients with respect to `att_src`/`att_dst` against PyG's, and a batched [B, N, d] state.
- **Transformer** (`test_transformer_is_sdpa`): against
  `torch.nn.functional.scaled_dot_product_attention` fed with the diffusivity's own q, k and
  v = Z split into heads, heads 1 and 4, d_k = d/H and d_k ≠ d/H, [N, d] and [B, N, d];
  `concat=False` against the head mean of SDPA with the full Z as value of every head.

The same file checks that gradients reach `att_src`, `att_dst`, ε and W_q (finite, non-zero),
that `frozen=True` (S fixed at Z⁰) agrees with the state-dependent S for one step and differs
afterwards, and that bad input (heads not dividing d, missing `in_channels`, a wrong state
width, a frozen S without Z⁰) fails with a clear error.
"""


def render_document(table: tuple[Correspondence, ...] = correspondences) -> str:
    """The page ``docs/correspondences.md``: why a step is a layer, the table, how it is tested."""
    return _INTRO + "## The table\n\n" + render_markdown(table) + _TESTING


if __name__ == "__main__":  # pragma: no cover
    print(render_document(), end="")
