r"""Sparse input features: bag-of-words rows kept as a CSR matrix, and the encoder's first layer.

Citation graphs carry bag-of-words features that are almost all zero (Cora: 2,708 × 1,433 with
1.3% non-zeros). Kept dense, every training step multiplies and drops out 3.9M entries of which
49k matter. :func:`sparse_features` stores such an X once as CSR; the encoders' first layer
(:class:`FeatureLinear`) and input dropout (:class:`~diffusion_pde.models.dropout.MaskedDropout`)
accept it, so a model takes dense or CSR features and gives the same function of them:

* the product X W + b runs over the stored entries only (``embedding_bag`` in sum mode: each
  output row is the weighted sum of the weight rows its entries point at; its backward pass is
  Xᵀ dL/dY, again over the stored entries);
* dropout on the stored values is dense dropout: a dropped zero stays zero, so only the stored
  entries' Bernoulli draws change the result (the draws themselves differ from the dense path's,
  since fewer are made).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["FeatureLinear", "SPARSE_DENSITY", "sparse_features"]

# Store X as CSR when at most this share of its entries is non-zero: a CSR entry costs 12 bytes
# (value, column, its share of the row pointers) against 4 for a dense one, and the product over
# the stored entries wins well below that (Cora 1.3%, CiteSeer 0.9%, PubMed 10%).
SPARSE_DENSITY = 0.1


def sparse_features(x: torch.Tensor, max_density: float = SPARSE_DENSITY) -> torch.Tensor:
    """``x`` [N, F] as a CSR tensor when at most ``max_density`` of its entries are non-zero (the
    models take either layout and compute the same function); otherwise ``x`` itself. A tensor
    that requires grad, is not floating point or is already sparse is returned as it is.

    Raises:
        ValueError: ``max_density`` outside [0, 1].
    """
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density must lie in [0, 1], got {max_density!r}")
    if x.layout != torch.strided or x.dim() != 2 or not x.is_floating_point() or x.requires_grad or x.numel() == 0:
        return x
    if int(torch.count_nonzero(x)) > max_density * x.numel():
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return x.to_sparse_csr()


class FeatureLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) that also takes CSR features [N, F]: the
    product then runs over the stored entries (``embedding_bag``: Y[i] = Σ_j X[i, j] W[:, j] + b),
    and its backward pass gives W the gradient Xᵀ dL/dY over them. Dense input: ``nn.Linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.layout != torch.sparse_csr:
            return super().forward(x)
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"CSR features must be [N, {self.in_features}], got {list(x.shape)}")
        if x.requires_grad:
            raise ValueError("CSR features that require grad are not supported: pass them dense (x.to_dense())")
        out = nn.functional.embedding_bag(x.col_indices(), self.weight.t(), x.crow_indices(), mode="sum",
                                          per_sample_weights=x.values(), include_last_offset=True)
        return out if self.bias is None else out + self.bias
