"""The body of the ``ldn`` sequence classifier: Linear Diffusion Network layers
(:mod:`diffusion_pde.ldn`) over the positions of each sequence.

Discrete depth: ``num_layers`` layers, each one learned, stable Euler step δt of its own
reaction–diffusion field dH/dt = K H + (S_attn(H) − I) H + F(H) (:func:`~diffusion_pde.ldn.ldn_field`,
:func:`~diffusion_pde.ldn.ldn_layer`), followed by LayerNorm and dropout. Continuous depth: one
field integrated over [0, ``t1``] by ``method`` (:class:`~diffusion_pde.field.DiffusionBlock`),
then LayerNorm and dropout. ``heads`` splits the channels into groups that diffuse at their own
rates (the multi-scale kernel); the attention is DIFFormer-s with one head.

The position kernels treat the ends of a sequence as its boundaries, so a batch must hold
sequences of one length (the sequence trainer's batches do,
:func:`~diffusion_pde.training.sequences.length_batches`); padded batches are refused.
"""

from __future__ import annotations

from torch import nn

import solvers

from ..field import DiffusionBlock
from ..ldn import ldn_field, ldn_layer

LDN_KERNELS = ("sequence_laplacian", "sequence_window", "sequence_global")
LDN_REACTIONS = ("mlp", "conv", "none")


def check_ldn_settings(config) -> None:
    """ValueError naming the setting when an LDN configuration cannot be built."""
    if config.kernel not in LDN_KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(LDN_KERNELS)}, got {config.kernel!r}")
    if config.reaction not in LDN_REACTIONS:
        raise ValueError(f"reaction must be one of {', '.join(LDN_REACTIONS)}, got {config.reaction!r}")
    if config.causal and config.attention:
        raise ValueError("causal=True with attention: DIFFormer-s attends to every token, later ones included; "
                         "turn the attention off (--no-attention) for a causal LDN")
    if config.hidden % config.heads:
        raise ValueError(f"hidden ({config.hidden}) must be divisible by heads ({config.heads}): the kernel's heads "
                         "are groups of channels diffusing at their own rates")


def _field(config):
    kernel_params = {"heads": config.heads, "causal": config.causal}
    if config.kernel == "sequence_window":
        kernel_params["window"] = config.window
    reaction = None if config.reaction == "none" else config.reaction
    reaction_params = {"causal": True} if config.causal and reaction == "conv" else None
    return ldn_field(config.hidden, kernel=config.kernel, kernel_params=kernel_params, attention=config.attention,
                     reaction=reaction, reaction_params=reaction_params)


class LDNBody(nn.Module):
    """[B, L, d] → [B, L, d] (``forward(h, mask)``; mask [B, L] must be all valid)."""

    def __init__(self, config) -> None:
        super().__init__()
        check_ldn_settings(config)
        self.continuous = config.depth == "continuous"
        count = 1 if self.continuous else config.num_layers
        if self.continuous:
            self.layers = nn.ModuleList([DiffusionBlock(_field(config), config.method, t1=config.t1,
                                                        **({"n_steps": config.n_steps} if config.method in
                                                           solvers.fixed_step_methods() else {}))])
        else:
            self.layers = nn.ModuleList(ldn_layer(_field(config)) for _ in range(count))
        self.norms = nn.ModuleList(nn.LayerNorm(config.hidden) for _ in range(count))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h, mask):
        if not bool(mask.all()):
            raise ValueError("ldn needs batches of equal-length sequences (its kernels treat the sequence ends as "
                             "boundaries); group the batches by length (diffusion_pde.training.sequences.length_batches)")
        for layer, norm in zip(self.layers, self.norms):
            h = self.dropout(norm(layer(h)))
        return h
