"""Sequence classifiers: embedding (+ learned positions) → body → masked mean pooling → linear head.

Inputs are [B, L] token ids (0 = padding) or [B, L, C] values, with ``lengths`` [B] (the valid
prefix of each row). Every body keeps padded positions out of what the valid ones see:

* ``ldn``: Linear Diffusion Network layers (:mod:`diffusion_pde.models.ldn`), reaction–diffusion
  steps over the positions of each sequence;
* ``transformer``: ``torch.nn.TransformerEncoder`` (pre-norm, GELU, feed-forward 2d) with the
  padding mask;
* ``lstm``: a bidirectional ``torch.nn.LSTM`` of d/2 units per direction over the packed valid
  prefix;
* ``cnn``: residual blocks of a depthwise-separable 1-D convolution (kernel 5) with padded
  positions zeroed before every convolution.

:class:`SequenceModelConfig` holds the settings; :func:`build_sequence_model` builds a model for a
:class:`~diffusion_pde.data.sequences.SequenceData`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

SEQUENCE_MODELS = ("ldn", "transformer", "lstm", "cnn")


@dataclass(frozen=True)
class SequenceModelConfig:
    """What :func:`build_sequence_model` builds.

    ``hidden`` d, ``num_layers``, ``dropout`` (after the embedding and inside each layer),
    ``heads`` (the Transformer's attention heads; LDN's attention heads), ``attention_dropout``
    (the Transformer's dropout on its attention weights; None: ``dropout``, as
    ``nn.TransformerEncoderLayer``; 0 lets PyTorch's fused attention kernel train, on CPU about 5×
    faster at L = 750, where dropout on the weights forms every [L, L] matrix). ``positions``: learned
    position embeddings added to the input embedding. LDN settings (:mod:`.ldn`): ``kernel`` (the
    position diffusivity), ``window`` (its offsets for ``kernel="window"``), ``causal``,
    ``reaction`` (the local nonlinear update F: ``mlp``, ``conv`` or ``none``), ``attention``
    (add DIFFormer-s attention over the tokens), ``depth`` (``discrete``: ``num_layers`` steps
    with their own weights and learned steps δt; ``continuous``: one block integrated over [0,
    ``t1``] with ``method``/``n_steps``)."""

    model: str = "ldn"
    hidden: int = 64
    num_layers: int = 4
    heads: int = 1
    dropout: float = 0.1
    attention_dropout: float | None = None
    positions: bool = True
    kernel: str = "sequence_window"
    window: int = 4
    causal: bool = False
    reaction: str = "conv"
    attention: bool = True
    depth: str = "discrete"
    method: str = "rk4"
    t1: float = 1.0
    n_steps: int = 4

    def __post_init__(self) -> None:
        if self.model not in SEQUENCE_MODELS:
            raise ValueError(f"unknown sequence model {self.model!r}; valid: {', '.join(SEQUENCE_MODELS)}")
        for name in ("hidden", "num_layers", "heads", "window", "n_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.model == "lstm" and self.hidden % 2:
            raise ValueError(f"the bidirectional lstm splits hidden over two directions: hidden must be even, got {self.hidden}")
        if self.model == "transformer" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads}) for the transformer")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.attention_dropout is not None:
            if self.model != "transformer":
                raise ValueError(f"attention_dropout is the transformer's dropout on its attention weights; "
                                 f"model {self.model!r} has none: leave it None")
            if not 0.0 <= self.attention_dropout < 1.0:
                raise ValueError(f"attention_dropout must lie in [0, 1), got {self.attention_dropout!r}")
        if not (isinstance(self.t1, (int, float)) and math.isfinite(self.t1) and self.t1 > 0):
            raise ValueError(f"t1 must be > 0, got {self.t1!r}")
        if self.depth not in ("discrete", "continuous"):
            raise ValueError(f"depth must be 'discrete' or 'continuous', got {self.depth!r}")
        if self.model == "ldn":
            from .ldn import check_ldn_settings

            check_ldn_settings(self)

    def replace(self, **changes: object) -> "SequenceModelConfig":
        return dataclasses.replace(self, **changes)


def valid_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """[B, L] bool: position t of row b is valid (t < lengths[b])."""
    return torch.arange(length, device=lengths.device) < lengths[:, None]


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of h [B, L, d] over the valid positions of each row ([B, d])."""
    weights = mask.to(h.dtype)
    return (h * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp_min(1)


class SequenceEmbedding(nn.Module):
    """Token embedding (padding index 0) or a linear map of C channels, plus learned positions."""

    def __init__(self, vocab_size: int | None, channels: int | None, hidden: int, max_length: int,
                 positions: bool, dropout: float) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden, padding_idx=0) if vocab_size is not None else None
        self.values = nn.Linear(channels, hidden) if vocab_size is None else None
        self.positions = nn.Embedding(max_length, hidden) if positions else None
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequences of length {length} exceed the model's max_length {self.max_length} "
                             "(the learned position embeddings); build the model for the longer sequences")
        h = self.tokens(inputs) if self.tokens is not None else self.values(inputs)
        if self.positions is not None:
            h = h + self.positions.weight[:length]
        return self.dropout(h)


class TransformerBody(nn.Module):
    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(config.hidden, config.heads, 2 * config.hidden, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        if config.attention_dropout is not None:
            layer.self_attn.dropout = config.attention_dropout
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # batches of one length (training.sequences.length_batches) have no padding: no mask, so
        # that the fused attention kernel can run
        return self.encoder(h, src_key_padding_mask=None if bool(mask.all()) else ~mask)


class LSTMBody(nn.Module):
    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(config.hidden, config.hidden // 2, config.num_layers, batch_first=True,
                            bidirectional=True, dropout=config.dropout if config.num_layers > 1 else 0.0)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return out


class _ConvBlock(nn.Module):
    def __init__(self, hidden: int, dropout: float, kernel_size: int = 5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.pointwise = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = self.norm(h) * mask.unsqueeze(-1)
        u = self.depthwise(u.transpose(1, 2)).transpose(1, 2)
        u = self.out(self.dropout(nn.functional.gelu(self.pointwise(u))))
        return h + self.dropout(u)


class CNNBody(nn.Module):
    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_ConvBlock(config.hidden, config.dropout) for _ in range(config.num_layers))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, mask)
        return h


class SequenceClassifier(nn.Module):
    """embedding → body → final LayerNorm → masked mean over valid positions → linear head.

    ``forward(inputs, lengths)``: inputs [B, L] (tokens) or [B, L, C], lengths [B] → logits
    [B, num_classes]."""

    def __init__(self, config: SequenceModelConfig, embedding: SequenceEmbedding, body: nn.Module,
                 num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.body = body
        self.norm = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(config.hidden, num_classes)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = valid_mask(lengths, inputs.shape[1])
        h = self.body(self.embedding(inputs), mask)
        return self.head(masked_mean(self.norm(h), mask))


def build_sequence_model(config: SequenceModelConfig, *, num_classes: int, max_length: int,
                         vocab_size: int | None = None, channels: int | None = None) -> SequenceClassifier:
    """A :class:`SequenceClassifier` for sequences of at most ``max_length`` positions of
    ``vocab_size`` tokens or ``channels`` values (exactly one of the two)."""
    if (vocab_size is None) == (channels is None):
        raise ValueError("give exactly one of vocab_size (token sequences) and channels (real-valued sequences)")
    embedding = SequenceEmbedding(vocab_size, channels, config.hidden, max_length, config.positions, config.dropout)
    if config.model == "ldn":
        from .ldn import LDNBody

        body: nn.Module = LDNBody(config)
    else:
        body = {"transformer": TransformerBody, "lstm": LSTMBody, "cnn": CNNBody}[config.model](config)
    return SequenceClassifier(config, embedding, body, num_classes)
