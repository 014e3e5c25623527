"""Node classifiers as encoder → diffusion → decoder, built from a :class:`ModelConfig`.

Every model routes its propagation through the same :class:`~diffusion_pde.DiffusionBlock`
(one Euler step per discrete layer, or one ODE solve); what differs is the diffusivity and what
sits around the steps. With Â = D̃^{-1/2}(A + I)D̃^{-1/2}:

| model | encoder | diffusion (per layer: step, then post) | decoder |
|---|---|---|---|
| difformer_s/a, transformer | [input dropout], Linear, LayerNorm, dropout, ReLU | Z ← (1 − τ)Z + τ P(Z); LayerNorm, dropout | Linear |
| gcn | dropout, W₀ | τ = 1 step of Â; bias, ReLU, dropout, W_k (last: bias) | — |
| gat | dropout, W₀ | τ = 1 step of GAT attention; bias, ELU, dropout, W_k (last: bias) | — |
| sgc | W (no bias) | K steps of Â, nothing between | bias |
| appnp | dropout, Linear, ReLU, dropout, Linear | K steps of Â with source weight α | — |
| mlp | [input dropout], Linear, LayerNorm, dropout, ReLU | none | Linear |

Because S acts on rows and a channel map W on columns, Â(ZW) + b is exactly PyG's ``GCNConv``
(and the GAT stack is ``GATConv`` without attention dropout), so these stacks are the familiar
layers (see ``docs/correspondences.md``), not approximations of them.

Dropout then ReLU is ReLU then dropout (the kept entries are scaled by 1/(1 − p) > 0, which
commutes with ReLU), in this order so that both act in place on the LayerNorm's output: the
encoder and every layer then keep one N×d tensor (the state) and a boolean mask for the backward
pass (:class:`MaskedDropout`), not three (activation, float mask, state).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data

from ..diffusivities import Diffusivity, diffusivity_for, on_graph
from ..field import DiffusionField
from ..graph import row_blocks
from .config import ATTENTION_MODELS, ModelConfig
from .depth import ContinuousDiffusion, DiscreteDiffusion
from .dropout import MaskedDropout
from .features import FeatureLinear
from .propagation import Propagation


class OwnedLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that, when no gradient is recorded (evaluation under ``torch.no_grad`` or
    ``inference_mode``), normalises its input in place, in blocks of rows: an N×d state then costs
    no new N×d tensor (above 131,072 nodes at d = 64 each new one is a fresh, page-faulting
    mapping). With autograd it is ``nn.LayerNorm`` (its backward pass needs the input). Only for
    an input no one else reads: the output of a Linear or of a diffusion step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not x.is_contiguous() or x.dim() == 0 or x.numel() == 0:
            return super().forward(x)
        rows = x.view(-1, x.shape[-1])
        for block_rows in row_blocks(rows.shape[0]):
            block = rows[block_rows]
            block.copy_(nn.functional.layer_norm(block, self.normalized_shape, self.weight, self.bias, self.eps))
        return x


class Bias(nn.Module):
    """Adds a learnable bias (zeros at start): the bias of a layer placed after its step."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.bias


class NodeClassifier(nn.Module):
    """logits = decoder(diffusion(encoder(X))); ``config`` records how it was built."""

    def __init__(self, config: ModelConfig, encoder: nn.Module, diffusion: DiscreteDiffusion | ContinuousDiffusion,
                 decoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.diffusion, self.decoder = encoder, diffusion, decoder

    def forward(self, x: torch.Tensor, graph: Data | None = None) -> torch.Tensor:
        """Logits [N, C] for node features ``x`` [N, F] on the graph the model was built for, or on
        ``graph`` (``edge_index`` over the same N nodes, optional ``edge_weight``; e.g. a
        mini-batch's induced subgraph), whose operators are then normalised for this call.

        Raises:
            ValueError: ``graph`` with gradients for a model integrated with the adjoint, whose
                backward pass re-evaluates the field after this call has unbound ``graph``: bind
                it around forward and backward with ``with on_graph(model, graph):`` instead.
        """
        if graph is not None and torch.is_grad_enabled() and self.config.adjoint:
            raise ValueError("model(x, graph) with the adjoint (adjoint=True): the backward pass re-evaluates the "
                             "field after this call has unbound graph; bind it around forward and backward instead: "
                             "with diffusion_pde.diffusivities.on_graph(model, graph): loss(model(x)).backward()")
        with on_graph(self, graph):
            return self.decoder(self.diffusion(self.encoder(x)))

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The hidden states [Z⁰ (encoder output), …, final] before the decoder."""
        return self.diffusion.states(self.encoder(x))

    def attention_matrices(self, x: torch.Tensor, nodes: torch.Tensor) -> list[torch.Tensor]:
        """For attention models: each layer's learned S_attn(Z^k) restricted to ``nodes`` (rows and
        columns), as [len(nodes), len(nodes)] tensors (built densely: small graphs only)."""
        if self.config.model not in ATTENTION_MODELS:
            raise ValueError(f"model {self.config.model!r} has no learned attention diffusivity")
        states = self.states(x)
        out = []
        for z, prop in zip(states, self.diffusion.diffusivities()):
            dense = prop.attention.dense(z)
            out.append(dense[nodes][:, nodes])
        return out


def _encoder_linear(fan_in: int, fan_out: int, bias_init: str, dtype: torch.dtype) -> FeatureLinear:
    """``nn.Linear`` with torch's default weights and its bias started at 0 (``bias_init="zero"``)
    or left at torch's U(±1/√fan_in) (``"uniform"``, the authors' code). Row-normalised
    bag-of-words rows have entries of about 1/(words per node), so x W is ~10x smaller than the
    uniform bias: every node's encoding then starts out nearly the same vector (2% node-specific
    energy on Cora, against 84% with a zero bias)."""
    lin = FeatureLinear(fan_in, fan_out, dtype=dtype)
    if bias_init == "zero":
        nn.init.zeros_(lin.bias)
    return lin


def _feature_encoder(config: ModelConfig, in_channels: int, norm: nn.Module, dtype: torch.dtype) -> nn.Sequential:
    """Z⁰ = ReLU(dropout(norm(drop_in(X) W + b))) = dropout(ReLU(...)); ``drop_in`` (``input_dropout``)
    is left out at 0. The dropout and the ReLU work in place on the new tensor ``norm`` returns
    (``drop_in`` never: it reads the input features)."""
    layers = [MaskedDropout(config.input_dropout)] if config.input_dropout > 0 else []
    layers += [_encoder_linear(in_channels, config.hidden, config.encoder_bias, dtype), norm,
               MaskedDropout(config.dropout, inplace=True), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _graph_operator(data: Data, dtype: torch.dtype) -> Diffusivity:
    return diffusivity_for("gcn", graph=data, dtype=dtype)


def _attention_model(config: ModelConfig, data: Data, in_channels: int, num_classes: int, dtype: torch.dtype):
    hidden = config.hidden
    norm = (lambda: OwnedLayerNorm(hidden, dtype=dtype)) if config.layer_norm else nn.Identity
    encoder = _feature_encoder(config, in_channels, norm(), dtype)
    graph = _graph_operator(data, dtype) if config.use_graph else None
    attention_params = {"heads": config.heads}
    if config.model != "transformer":
        attention_params.update(qk_norm=config.qk_norm, bias=config.qk_bias)

    def field() -> DiffusionField:
        prop = Propagation(
            diffusivity_for(config.model, in_channels=hidden, dtype=dtype, **attention_params),
            graph, graph_weight=config.graph_weight,
            value=nn.Linear(hidden, hidden, bias=False, dtype=dtype) if config.value_proj else None,
        )
        return DiffusionField(prop, source_weight=config.source_weight)

    def post() -> nn.Module:
        # In place on the LayerNorm's output; without one, the dropout reads the solver's result
        # (with the adjoint a view of the solution torchdiffeq keeps for its backward pass).
        return nn.Sequential(norm(), MaskedDropout(config.dropout, inplace=config.layer_norm))

    if config.depth == "continuous":
        diffusion = ContinuousDiffusion(field(), post(), method=config.method, t1=config.t1, **config.solver_options())
    else:
        diffusion = DiscreteDiffusion([field() for _ in range(config.num_layers)], config.tau,
                                      [post() for _ in range(config.num_layers)])
    return encoder, diffusion, nn.Linear(hidden, num_classes, dtype=dtype)


def _mpnn(config: ModelConfig, data: Data, in_channels: int, num_classes: int, dtype: torch.dtype):
    """GCN / GAT: layer k is ``GCNConv``/``GATConv`` = channel map W_k, one τ = 1 step, bias.

    W_k sits before its step (the encoder holds W_0, the previous layer's post holds W_k), so the
    step diffuses ``hidden`` channels, not the input features; S commutes with W_k, so this is the
    same map as PyG's propagate-after-transform. GAT attends over the mapped state with ``heads``
    concatenated heads, and one head in the last layer (which works on the class scores)."""
    widths = [config.hidden] * (config.num_layers - 1) + [num_classes]
    is_gat = config.model == "gat"
    if is_gat and config.num_layers > 1 and config.hidden % config.heads:
        raise ValueError(f"gat: hidden={config.hidden} must be a multiple of heads={config.heads} (heads are concatenated)")
    graph = None if is_gat else _graph_operator(data, dtype)
    fields, posts = [], []
    for k, width in enumerate(widths):
        last = k == len(widths) - 1
        if is_gat:
            diffusivity = diffusivity_for("gat", graph=data, in_channels=width, heads=1 if last else config.heads, dtype=dtype)
        else:
            diffusivity = graph
        fields.append(DiffusionField(diffusivity, config.source_weight))
        bias = Bias(width).to(dtype)
        if last:
            posts.append(bias)
        else:
            activation = nn.ELU() if is_gat else nn.ReLU()
            posts.append(nn.Sequential(bias, activation, nn.Dropout(config.dropout), _glorot_map(width, widths[k + 1], dtype)))
    encoder = nn.Sequential(MaskedDropout(config.dropout), _glorot_map(in_channels, widths[0], dtype))
    return encoder, DiscreteDiffusion(fields, config.tau, posts), nn.Identity()


def _glorot_map(fan_in: int, fan_out: int, dtype: torch.dtype) -> FeatureLinear:
    """A bias-free channel map with Glorot-uniform weights (the init of GCNConv/GATConv)."""
    lin = FeatureLinear(fan_in, fan_out, bias=False, dtype=dtype)
    nn.init.xavier_uniform_(lin.weight)
    return lin


def _linear_diffusion(config: ModelConfig, graph: Diffusivity) -> DiscreteDiffusion | ContinuousDiffusion:
    """K steps (or a solve over [0, T]) of the fixed Â with source weight μ, nothing in between."""
    field = DiffusionField(graph, config.source_weight)
    if config.depth == "continuous":
        return ContinuousDiffusion(field, nn.Identity(), method=config.method, t1=config.t1, **config.solver_options())
    return DiscreteDiffusion([field] * config.num_layers, config.tau, [nn.Identity()] * config.num_layers)


def _sgc(config: ModelConfig, data: Data, in_channels: int, num_classes: int, dtype: torch.dtype):
    """SGC, logits = Â^K X W + b, computed as Â^K (X W) + b.

    Â acts on rows and W on columns, so mapping first is the same function, but the K steps then
    diffuse ``num_classes`` channels instead of the raw features (7 instead of 1,433 on Cora): no
    propagated copy of X is built or kept for backward. The bias follows the steps, because Â is
    not row-stochastic (Â^K 1 ≠ 1)."""
    diffusion = _linear_diffusion(config, _graph_operator(data, dtype))
    encoder = FeatureLinear(in_channels, num_classes, bias=False, dtype=dtype)
    return encoder, diffusion, Bias(num_classes).to(dtype)


def _appnp(config: ModelConfig, data: Data, in_channels: int, num_classes: int, dtype: torch.dtype):
    encoder = nn.Sequential(
        MaskedDropout(config.dropout), FeatureLinear(in_channels, config.hidden, dtype=dtype), nn.ReLU(),
        nn.Dropout(config.dropout), nn.Linear(config.hidden, num_classes, dtype=dtype),
    )
    return encoder, _linear_diffusion(config, _graph_operator(data, dtype)), nn.Identity()


def _mlp(config: ModelConfig, data: Data, in_channels: int, num_classes: int, dtype: torch.dtype):
    norm = OwnedLayerNorm(config.hidden, dtype=dtype) if config.layer_norm else nn.Identity()
    decoder = nn.Linear(config.hidden, num_classes, dtype=dtype)
    return _feature_encoder(config, in_channels, norm, dtype), DiscreteDiffusion([], config.tau, []), decoder


_BUILDERS = {"gcn": _mpnn, "gat": _mpnn, "sgc": _sgc, "appnp": _appnp, "mlp": _mlp,
             **{name: _attention_model for name in ATTENTION_MODELS}}


def build_model(config: ModelConfig, data: Data, *, num_classes: int | None = None,
                dtype: torch.dtype = torch.float32) -> NodeClassifier:
    """The classifier ``config`` describes for graph ``data`` (``x`` [N, F], ``edge_index``).

    ``num_classes`` defaults to max(``data.y``) + 1; pass it for a graph without labels (e.g. one
    to predict on). The graph operators are normalised once here and cached on the model;
    parameters are drawn from torch's global generator (seed it for reproducible initialisation).

    Raises:
        TypeError / ValueError: a config that is not a ModelConfig, ``data`` without a [N, F]
            ``x``, or neither labels nor ``num_classes``.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if getattr(data, "x", None) is None or data.x.dim() != 2:
        raise ValueError("data.x must be a [num_nodes, num_features] feature matrix")
    if num_classes is None:
        if getattr(data, "y", None) is None or data.y.numel() == 0:
            raise ValueError("data has no labels y to count the classes from: pass num_classes=C")
        num_classes = int(data.y.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    parts = _BUILDERS[config.model](config, data, int(data.x.shape[1]), num_classes, dtype)
    return NodeClassifier(config, *parts)
