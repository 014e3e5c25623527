r"""Linear Diffusion Networks (Fein-Ashley 2025) assembled from the toolkit's parts.

One LDN layer is an explicit Euler step of learned size δt of the reaction–diffusion field

    dH/dt = K H + (S_attn(H) − I) H + F(H)

on token states H ∈ R^{B×L×d}: K a position kernel (``sequence_laplacian``, ``sequence_window``
or ``sequence_global``; several heads diffuse at different rates), S_attn DIFFormer-s attention
over the tokens of each sequence (O(L); the sequences of a batch do not mix), F a local reaction
(a per-token MLP or a depthwise convolution). All tokens are updated in parallel.

    field = ldn_field(64, kernel="sequence_window", kernel_params={"window": 4, "heads": 8})
    layer = ldn_layer(field)                                  # H ↦ H + δt F(H), δt learned and stable
    block = DiffusionBlock(field, "dopri5", t1=1.0)           # or continuous depth, same field

A causal model takes a causal kernel (``kernel_params={"causal": True}``), a causal reaction
(``reaction="mlp"``, or ``"conv"`` with ``reaction_params={"causal": True}``) and no attention
(DIFFormer-s attends to every token).
"""

from __future__ import annotations

import torch

from .diffusivities import PositionDiffusivity, Superposition, diffusivity, diffusivity_class
from .field import DiffusionField
from .reaction import ReactionDiffusionField, reaction as make_reaction
from .stable_step import StableEulerLayer, StableStep


def ldn_field(channels: int, *, kernel: str = "sequence_window", kernel_params: dict | None = None,
              attention: bool = True, attention_params: dict | None = None, reaction: str | None = "mlp",
              reaction_params: dict | None = None, source_weight: float = 0.0,
              dtype: torch.dtype = torch.float32) -> ReactionDiffusionField:
    """The LDN field for states of width ``channels``: S = I + K (+ S_attn − I), reaction F.

    Args:
        kernel: a registered position kernel name; ``kernel_params`` go to it (window, heads,
            causal, symmetric, init_rate, scales, ...).
        attention: add DIFFormer-s attention (``attention_params``: heads, key_channels, qk_norm,
            frozen, bias).
        reaction: ``"mlp"``, ``"conv"`` or None; ``reaction_params`` go to it.
        source_weight: μ of the source term μ(H⁰ − H).

    Raises:
        ValueError: ``kernel`` is not a position kernel (or any argument its part refuses).
    """
    if not issubclass(diffusivity_class(kernel), PositionDiffusivity):
        raise ValueError(f"kernel must name a position kernel (sequence_laplacian, sequence_window, sequence_global), "
                         f"got {kernel!r}")
    parts = [diffusivity(kernel, dtype=dtype, **(kernel_params or {}))]
    if attention:
        parts.append(diffusivity("difformer_s", in_channels=channels, dtype=dtype, **(attention_params or {})))
    local = None if reaction is None else make_reaction(reaction, channels, dtype=dtype, **(reaction_params or {}))
    return ReactionDiffusionField(Superposition(parts), local, source_weight=source_weight)


def ldn_layer(field: DiffusionField, *, init_step: float = 0.5, margin: float = 0.05, max_step: float = 1.0,
              n_steps: int = 1) -> StableEulerLayer:
    """A discrete LDN layer: ``n_steps`` Euler steps of the learned stable δt (:class:`StableStep`)."""
    param = next(field.parameters(), None)
    dtype = torch.float32 if param is None else param.dtype
    return StableEulerLayer(field, StableStep(init_step, margin, max_step, dtype=dtype), n_steps=n_steps)
