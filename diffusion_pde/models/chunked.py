r"""Exact full-graph inference in node chunks, with memory bounded by the chunk size.

A trained classifier evaluated on a graph too large to propagate at once: every part of the model
except the propagation acts row by row (the encoder, the decoder and what follows each step:
Linear, LayerNorm, ReLU, dropout, a bias), so it runs on ``chunk_size`` nodes at a time; the
propagation P(Z) = c_a S_attn(Z) V + c_g Â V of a layer is formed in two passes over the chunks:

1. the node sums of the DIFFormer-s attention (K̂ᵀV, Σ_j k̂_j, Σ_j v_j, N and, with
   ``qk_norm="global"``, Σ‖q_j‖², Σ‖k_j‖²), additive over chunks
   (:meth:`~diffusion_pde.diffusivities.difformer_s.DIFFormerSimple.sums`);
2. per chunk of rows: the attention rows from the finished sums
   (:meth:`~diffusion_pde.diffusivities.difformer_s.DIFFormerSimple.apply`), the graph rows
   Â[rows] Z from the rows of the CSR operator (the value projection W is a channel map, so
   Â(ZW) = (ÂZ)W), the source term from the rows of Z⁰, the Euler update and the post modules.

The result is the model's forward pass (same weights, same arithmetic up to round-off: ~1e-7
relative in float32, ~1e-15 in float64). Besides the N-row states (the input features, Z⁰, Z and
the next Z, the logits) and the graph, memory is O(chunk_size · width): no N×N matrix, no
N-row temporaries.

Supported: discrete-depth ``difformer_s`` (with or without the graph term, summed or mixed, value
projection, source term, LayerNorm, either ``qk_norm``, heads, q/k biases), ``gcn``, ``sgc``,
``appnp`` and ``mlp``; continuous depth with a fixed-step method (``euler``, ``midpoint``,
``heun``, ``rk4``, which keeps one N-row state per stage). Not streamable (a ValueError names the
fix, the one-shot forward): ``difformer_a``, ``transformer`` (their attention needs all N×N
scores per row), ``gat`` (its graph attention is not exposed by rows), adaptive solvers, and
attention frozen at Z⁰.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch_geometric.data import Data

import solvers

from ..diffusivities import Diffusivity, LinearGraphDiffusivity, QueryKeyDiffusivity
from ..diffusivities.difformer_s import AttentionSums, DIFFormerSimple, GramSums
from ..field import DiffusionBlock, DiffusionField
from ..graph import csr_rows, row_blocks, spmm
from .depth import ContinuousDiffusion, DiscreteDiffusion
from .propagation import Propagation

__all__ = ["check_chunkable", "predict_chunked"]

# Modules known to act on each row (node) on its own; a model holding anything else around its
# propagation is refused, since running it chunk by chunk could change its result.
ROW_WISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.LayerNorm, nn.Dropout, nn.Identity, nn.ReLU, nn.ELU, nn.GELU, nn.LeakyReLU, nn.PReLU,
    nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
)

_ONE_SHOT = ("predict it in one shot instead: diffusion_pde.training.predict(model, data) without chunk_size "
             "(diffusion-pde predict without --chunk-size), or model(x)")


@dataclass(frozen=True)
class _Propagator:
    """P(Z) = c_a S_attn(Z) V + c_g Â V with V = Z W_v (or Z) of one field, by rows."""

    attention: DIFFormerSimple | None
    c_attn: float
    graph: LinearGraphDiffusivity | None
    c_graph: float
    value: nn.Linear | None


@dataclass(frozen=True)
class _Stage:
    """One block of the stack: ``n_steps`` steps of size ``h`` of an explicit RK method with
    ``field``, then ``post``."""

    field: DiffusionField
    propagator: _Propagator
    tableau: solvers.ButcherTableau
    n_steps: int
    h: float
    post: nn.Module


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model", None) or type(model).__name__


def _check_row_wise(module: nn.Module, where: str, name: str) -> None:
    if isinstance(module, nn.Sequential):
        for child in module:
            _check_row_wise(child, where, name)
        return
    from .classifier import Bias  # classifier imports nothing from here; local import avoids a cycle

    if not isinstance(module, (*ROW_WISE_MODULES, Bias)):
        raise ValueError(
            f"predict_chunked cannot stream model {name!r}: its {where} holds {type(module).__name__}, which is not "
            f"known to act on each node's row on its own; {_ONE_SHOT}"
        )


def _propagator(diffusivity: Diffusivity, name: str) -> _Propagator:
    def refuse(part: Diffusivity, why: str) -> ValueError:
        return ValueError(f"predict_chunked cannot stream model {name!r}: its diffusivity {part.name!r} {why}; {_ONE_SHOT}")

    if isinstance(diffusivity, Propagation):
        attention, graph, value = diffusivity.attention, diffusivity.graph, diffusivity.value
        c_attn, c_graph = diffusivity.coefficients
    elif isinstance(diffusivity, LinearGraphDiffusivity):
        attention, graph, value, c_attn, c_graph = None, diffusivity, None, 0.0, 1.0
    else:
        attention, graph, value, c_attn, c_graph = diffusivity, None, None, 1.0, 0.0
    if attention is not None:
        if isinstance(attention, QueryKeyDiffusivity) and not isinstance(attention, DIFFormerSimple):
            raise refuse(attention, "scores every pair of nodes (only difformer_s attention reduces to node sums "
                                    "that stream over chunks)")
        if not isinstance(attention, DIFFormerSimple):
            raise refuse(attention, "cannot be evaluated by blocks of rows (predict_chunked streams difformer_s "
                                    "attention and fixed sparse graph operators such as gcn)")
        if attention.frozen:
            raise refuse(attention, "is frozen at Z⁰ (its queries and keys are held for all N nodes at once)")
    if graph is not None and not isinstance(graph, LinearGraphDiffusivity):
        raise refuse(graph, "is not a fixed sparse operator whose rows can be read by blocks")
    if value is not None and not isinstance(value, nn.Linear):
        raise ValueError(f"predict_chunked cannot stream model {name!r}: its value projection is "
                         f"{type(value).__name__}, not a Linear channel map; {_ONE_SHOT}")
    return _Propagator(attention, float(c_attn), graph, float(c_graph), value)


def _fixed_steps(block: DiffusionBlock, name: str) -> tuple[solvers.ButcherTableau, int, float]:
    options = block.solver_options
    if block.method not in solvers.fixed_step_methods() or options.get("adjoint"):
        raise ValueError(
            f"predict_chunked cannot stream model {name!r}: it integrates with the adaptive method "
            f"{block.method!r}, whose step sizes depend on the whole state; evaluate it with a fixed-step method "
            f"(inside `with model.diffusion.with_solver('rk4', n_steps=8):`), or {_ONE_SHOT}"
        )
    t0 = float(options.get("t0", 0.0))
    span = block.t1 - t0
    if options.get("n_steps") is not None:
        n_steps = int(options["n_steps"])
    elif options.get("dt") is not None:
        n_steps = max(1, math.ceil(span / float(options["dt"]) - 1e-9))
    else:
        raise ValueError(f"predict_chunked: model {name!r}'s fixed-step method {block.method!r} has neither n_steps nor dt")
    if options.get("t_eval") is not None or options.get("callback") is not None:
        raise ValueError(f"predict_chunked cannot stream model {name!r}: its solver saves states or calls back; {_ONE_SHOT}")
    return solvers.get_tableau(block.method), n_steps, span / n_steps


def _stages(model: nn.Module) -> list[_Stage]:
    """The propagation of ``model`` as streamable stages; ValueError (naming the fix) otherwise."""
    name = _model_name(model)
    for part in ("encoder", "diffusion", "decoder"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise TypeError(f"predict_chunked needs a NodeClassifier (encoder, diffusion, decoder), got {type(model).__name__}")
    _check_row_wise(model.encoder, "encoder", name)
    _check_row_wise(model.decoder, "decoder", name)
    diffusion = model.diffusion
    if isinstance(diffusion, DiscreteDiffusion):
        pairs = list(zip(diffusion.blocks, diffusion.posts))
    elif isinstance(diffusion, ContinuousDiffusion):
        pairs = [(diffusion.block, diffusion.post)]
    else:
        raise ValueError(f"predict_chunked cannot stream model {name!r}: its diffusion is {type(diffusion).__name__}, "
                         f"neither DiscreteDiffusion nor ContinuousDiffusion; {_ONE_SHOT}")
    stages = []
    for block, post in pairs:
        _check_row_wise(post, "post-step module", name)
        tableau, n_steps, h = _fixed_steps(block, name)
        stages.append(_Stage(block.field, _propagator(block.field.diffusivity, name), tableau, n_steps, h, post))
    return stages


def check_chunkable(model: nn.Module) -> None:
    """Nothing if :func:`predict_chunked` can evaluate ``model``; else a ValueError that names the
    part it cannot stream and the fix (the one-shot forward)."""
    _stages(model)


def _attention_sums(prop: _Propagator, z: torch.Tensor, chunk: int) -> AttentionSums | GramSums | None:
    """Pass 1: the attention's node sums of state ``z``, accumulated over chunks."""
    if prop.attention is None:
        return None
    total = None
    for rows in row_blocks(z.shape[0], chunk):
        block = z[rows]
        part = prop.attention.sums(block, block if prop.value is None else prop.value(block))
        total = part if total is None else total + part
    return total


def _field_rows(field: DiffusionField, prop: _Propagator, sums: AttentionSums | GramSums | None, z: torch.Tensor,
                z0: torch.Tensor | None, rows: slice) -> torch.Tensor:
    """Pass 2: F(Z) = (1 − μ)(P(Z) − Z) + μ(Z⁰ − Z) on ``rows``, in the order of
    :meth:`DiffusionField.forward` and :meth:`Propagation.forward`."""
    block = z[rows]
    out = None
    if prop.attention is not None:
        out = prop.attention.apply(block, sums)
        if prop.c_attn != 1.0:
            out = out * prop.c_attn
    if prop.graph is not None:
        graph_term = spmm(csr_rows(prop.graph.matrix, rows), z)
        if prop.value is not None:
            graph_term = prop.value(graph_term)
        out = graph_term * prop.c_graph if out is None else out.add_(graph_term, alpha=prop.c_graph)
    mu = field.source_weight
    if mu == 0.0:
        return out - block
    return (out * (1.0 - mu)).add_(z0[rows], alpha=mu).sub_(block)


def _write(out: torch.Tensor | None, rows: slice, value: torch.Tensor, n: int) -> torch.Tensor:
    if out is None:
        out = value.new_empty((n, *value.shape[1:]))
    out[rows] = value
    return out


def _emit(stage: _Stage, last: bool, sink: Callable[[slice, torch.Tensor], None] | None, new: torch.Tensor | None,
          rows: slice, y: torch.Tensor, n: int) -> torch.Tensor | None:
    """The rows ``y`` of the step's result: after the last step through the post modules and, with
    a ``sink``, handed on instead of kept; else written into the next N-row state ``new``."""
    if last:
        y = stage.post(y)
        if sink is not None:
            sink(rows, y)
            return new
    return _write(new, rows, y, n)


def _run_stage(stage: _Stage, state: list[torch.Tensor], z0: torch.Tensor | None, chunk: int,
                sink: Callable[[slice, torch.Tensor], None] | None) -> torch.Tensor | None:
    """The state ``state.pop()`` after the stage's steps and its post module; with ``sink`` the
    post's rows go there instead of into a returned state (the last stage, decoded at once)."""
    z = state.pop()
    n = z.shape[0]
    a, b, _ = stage.tableau.coefficients
    h, prop, field = stage.h, stage.propagator, stage.field
    for step in range(stage.n_steps):
        last = step == stage.n_steps - 1
        new = None
        if len(b) == 1:  # Euler: z + h F(z), row block by row block, no stage kept
            sums = _attention_sums(prop, z, chunk)
            for rows in row_blocks(n, chunk):
                y = torch.add(z[rows], _field_rows(field, prop, sums, z, z0, rows), alpha=h * b[0])
                new = _emit(stage, last, sink, new, rows, y, n)
        else:  # k_i = F(z + h Σ_j a_ij k_j) as N-row states, then z + h Σ_i b_i k_i
            ks: list[torch.Tensor] = []
            for row in a:
                y = z
                if any(row):
                    y = torch.empty_like(z)
                    for rows in row_blocks(n, chunk):
                        y_rows = z[rows]
                        for a_ij, k_j in zip(row, ks):
                            if a_ij:
                                y_rows = torch.add(y_rows, k_j[rows], alpha=h * a_ij)
                        y[rows] = y_rows
                sums = _attention_sums(prop, y, chunk)
                k = torch.empty_like(z)
                for rows in row_blocks(n, chunk):
                    k[rows] = _field_rows(field, prop, sums, y, z0, rows)
                del y
                ks.append(k)
            for rows in row_blocks(n, chunk):
                y = z[rows]
                for b_i, k_i in zip(b, ks):
                    if b_i:
                        y = torch.add(y, k_i[rows], alpha=h * b_i)
                new = _emit(stage, last, sink, new, rows, y, n)
            del ks
        z = new
    return z


def _forward(model: nn.Module, x: torch.Tensor, chunk_size: int, keep_hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    stages = _stages(model)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int (nodes per chunk), got {chunk_size!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"the features must be a [num_nodes, num_features] tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    n = x.shape[0]
    for stage in stages:
        graph = stage.propagator.graph
        if graph is not None and graph.num_nodes != n:
            raise ValueError(f"data has {n} nodes but the model's graph operator was built for {graph.num_nodes}: "
                             "give the graph the model was built on (load_model(run, data) builds it from data)")
    if n == 0:
        hidden = model.states(x)[-1]
        return model.decoder(hidden), hidden if keep_hidden else None
    logits: torch.Tensor | None = None

    def decode(rows: slice, hidden_rows: torch.Tensor) -> None:
        nonlocal logits
        logits = _write(logits, rows, model.decoder(hidden_rows), n)

    hidden = None
    for rows in row_blocks(n, chunk_size):  # CSR features (sparse_features) by rows of the CSR matrix
        hidden = _write(hidden, rows, model.encoder(csr_rows(x, rows) if x.layout == torch.sparse_csr else x[rows]), n)
    # Z⁰ (the source term's target) is the stack's input for a discrete stack and the block's own
    # input in a continuous one: the encoder's output either way, kept only while a field reads it.
    z0 = hidden if any(stage.field.source_weight > 0 for stage in stages) else None
    for i, stage in enumerate(stages):
        sink = decode if i == len(stages) - 1 and not keep_hidden else None
        state = [hidden]
        del hidden  # the stage holds the only reference: it drops its input once it has the next state
        hidden = _run_stage(stage, state, z0, chunk_size, sink)
    if hidden is not None:
        for rows in row_blocks(n, chunk_size):
            decode(rows, hidden[rows])
    return logits, hidden if keep_hidden else None


def predict_chunked(model: nn.Module, data: Data | torch.Tensor, chunk_size: int, *,
                    return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The logits [N, C] of ``model`` (a :class:`~diffusion_pde.models.NodeClassifier`) on all
    nodes of ``data`` (a PyG ``Data`` with ``x``, or the features ``x`` [N, F]), computed
    ``chunk_size`` nodes at a time: the same values as ``model(x)`` in eval mode, with memory
    beyond the N-row states bounded by the chunk size. The graph is the one the model's operators
    were built on (:func:`~diffusion_pde.models.build_model` / ``load_model`` with ``data``).

    With ``return_hidden=True`` returns ``(logits, hidden)``, hidden [N, d] being the last state
    before the decoder (as ``model.states(x)[-1]``). Runs without gradients, in eval mode (the
    model's mode is restored afterwards).

    Raises:
        ValueError: ``chunk_size`` is not a positive int; the model cannot be streamed (its name,
            the reason and the fix, the one-shot forward, are in the message: ``difformer_a``,
            ``transformer``, ``gat``, adaptive solvers, frozen attention).
    """
    x = data.x if isinstance(data, Data) else data
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, hidden = _forward(model, x, chunk_size, keep_hidden=return_hidden)
    finally:
        model.train(training)
    return (logits, hidden) if return_hidden else logits
