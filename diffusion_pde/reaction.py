r"""Reaction–diffusion fields: the diffusion plus a local nonlinear update.

    dZ/dt = (1 − μ) (S(Z, t) Z − Z) + μ (Z⁰ − Z) + R(Z)

R is a *reaction* term that acts on each token (or node) and its immediate neighbourhood only:
a per-token MLP or a small depthwise convolution along the sequence. With S = I + K +
(S_attn − I) (:class:`diffusion_pde.diffusivities.Superposition` of a position kernel and
DIFFormer-s attention) and μ = 0 this is the Linear Diffusion Network of Fein-Ashley (2025),

    dH/dt = K H + (S_attn(H) − I) H + F(H),

integrated by the same :func:`solvers.solve` as every other field (one explicit Euler step of a
learned size per layer, :class:`diffusion_pde.stable_step.StableEulerLayer`, or continuous depth
with :class:`diffusion_pde.DiffusionBlock`).

:class:`ReactionDiffusionField` is a :class:`diffusion_pde.DiffusionField`, so blocks, the
adjoint and the checks accept it unchanged; the reaction's parameters are parameters of the
field, and it reads no tensor besides its state, so the adjoint contract (DESIGN §7) is the
diffusion field's: Z⁰ and the frozen attention are exposed by ``adjoint_inputs``.
"""

from __future__ import annotations

import torch
from torch import nn

from .diffusivities import Diffusivity
from .diffusivities._base import positive_int
from .field import DiffusionField

ACTIVATIONS = {"gelu": nn.GELU, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}


def _activation(name: object) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class TokenMLP(nn.Module):
    """R(Z)_t = W₂ σ(W₁ z_t + b₁) + b₂ for every token t (no mixing along positions).

    Args:
        channels: d, the width of the state (input and output).
        hidden: width of the hidden layer (default 2d).
        activation: σ, one of ``gelu`` (default), ``tanh``, ``relu``, ``silu``.
        dtype: of the weights.

    Shapes: [..., L, d] → [..., L, d]. Weights: ``nn.Linear``'s default initialisation.
    """

    def __init__(self, channels: int, hidden: int | None = None, activation: str = "gelu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        channels = positive_int("channels", channels)
        hidden = positive_int("hidden", 2 * channels if hidden is None else hidden)
        self.net = nn.Sequential(nn.Linear(channels, hidden, dtype=dtype), _activation(activation),
                                 nn.Linear(hidden, channels, dtype=dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DepthwiseConv(nn.Module):
    """R(Z) = σ(C ⋆ Z) W + b: a depthwise convolution along the positions (each channel its own
    ``kernel_size`` taps, zero padding; ``causal`` pads on the left only, so a token sees its
    past), an activation, then a per-token linear map. Shapes [..., L, d] → [..., L, d]."""

    def __init__(self, channels: int, kernel_size: int = 3, causal: bool = False, activation: str = "gelu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        channels = positive_int("channels", channels)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.causal = bool(causal)
        self.conv = nn.Conv1d(channels, channels, self.kernel_size, groups=channels, dtype=dtype)
        self.activation = _activation(activation)
        self.out = nn.Linear(channels, channels, dtype=dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        left = k - 1 if self.causal else (k - 1) // 2
        x = z.reshape(-1, *z.shape[-2:]).transpose(-1, -2)                   # [B, d, L]
        x = nn.functional.pad(x, (left, k - 1 - left))
        y = self.conv(x).transpose(-1, -2).reshape(z.shape)
        return self.out(self.activation(y))


REACTIONS = {"mlp": TokenMLP, "conv": DepthwiseConv}


def reaction(name: str, channels: int, **params: object) -> nn.Module:
    """The reaction term ``name`` (``mlp``: :class:`TokenMLP`, ``conv``: :class:`DepthwiseConv`)
    for states of width ``channels``."""
    if name not in REACTIONS:
        raise ValueError(f"unknown reaction {name!r}; valid names: {', '.join(REACTIONS)}")
    return REACTIONS[name](channels, **params)


class ReactionDiffusionField(DiffusionField):
    """F(t, Z) = (1 − μ)(S(Z, t) Z − Z) + μ(Z⁰ − Z) + R(Z), a callable ``field(t, z)`` for
    :func:`solvers.solve` (and a :class:`DiffusionField` for :class:`DiffusionBlock`).

    Args:
        diffusivity: S (e.g. ``Superposition([kernel, attention])``).
        reaction: R, an ``nn.Module`` mapping [..., N, d] to [..., N, d] (:func:`reaction`), or
            None for pure diffusion.
        source_weight: μ ∈ [0, 1].

    Raises:
        TypeError: ``reaction`` is not an ``nn.Module`` (its parameters must belong to the field).
    """

    def __init__(self, diffusivity: Diffusivity, reaction: nn.Module | None = None, source_weight: float = 0.0) -> None:
        super().__init__(diffusivity, source_weight)
        if reaction is not None and not isinstance(reaction, nn.Module):
            raise TypeError("reaction must be an nn.Module (e.g. diffusion_pde.reaction.reaction('mlp', d)) so that its "
                            f"parameters are the field's, got {type(reaction).__name__}")
        self.reaction = reaction

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        diffusion = super().forward(t, z)
        return diffusion if self.reaction is None else diffusion + self.reaction(z)

    def euler_step(self, t: torch.Tensor, z: torch.Tensor, h: float) -> torch.Tensor:
        """z + h F(t, z) (the diffusion field's fused step when there is no reaction)."""
        if self.reaction is None:
            return super().euler_step(t, z, h)
        return torch.add(z, self(t, z), alpha=h)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reaction={type(self.reaction).__name__ if self.reaction is not None else None}"
