r"""Sparse input features: bag-of-words rows kept as a CSR matrix, and the encoder's first layer.

Citation graphs carry bag-of-words features that are almost all zero (Cora: 2,708 × 1,433 with
1.3% non-zeros). Kept dense, every training step multiplies and drops out 3.9M entries of which
49k matter. :func:`sparse_features` stores such an X once as CSR; the encoders' first layer
(:class:`FeatureLinear`) and input dropout (:class:`~diffusion_pde.models.dropout.MaskedDropout`)
accept it, so a model takes dense or CSR features and gives the same function of them:

* the product X W + b runs over the stored entries only (a row gather: each output row is the
  weighted sum of the weight rows its entries point at), and so does its backward pass, the
  product Xᵀ dL/dY with Xᵀ's pattern prepared once per feature pattern;
* dropout on the stored values is dense dropout: a dropped zero stays zero, so only the stored
  entries' Bernoulli draws change the result (the draws themselves differ from the dense path's,
  since fewer are made).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..graph import csr_transpose_pattern, spmm

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
    """``nn.Linear`` (same parameters, same state dict) that also takes CSR features X [N, F]: the
    product then runs over the stored entries, Y[i] = Σ_j X[i, j] W[:, j] + b (a row gather,
    :func:`~diffusion_pde.graph.spmm`), and its backward pass gives W the gradient Xᵀ dL/dY as
    a product with Xᵀ over the same entries. Xᵀ's pattern is prepared once per feature pattern
    and kept (dropout on the stored values changes the values, not the pattern). Dense input:
    ``nn.Linear``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._transpose_of: tuple[torch.Tensor, torch.Tensor] | None = None  # (crow, col) of the pattern
        self._transpose: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _transposed(self, x: torch.Tensor) -> torch.Tensor:
        """Xᵀ as a CSR tensor [F, N], its pattern reused while X's pattern stays the same."""
        crow, col = x.crow_indices(), x.col_indices()
        known = self._transpose_of
        if known is None or known[0].device != crow.device or not (torch.equal(known[0], crow) and torch.equal(known[1], col)):
            self._transpose_of, self._transpose = (crow, col), csr_transpose_pattern(x)
        crow_t, col_t, order = self._transpose
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(crow_t, col_t, x.values().index_select(0, order), (x.shape[1], x.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.layout != torch.sparse_csr:
            return super().forward(x)
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"CSR features must be [N, {self.in_features}], got {list(x.shape)}")
        if x.requires_grad:
            raise ValueError("CSR features that require grad are not supported: pass them dense (x.to_dense())")
        if x.values().dtype != self.weight.dtype:
            raise ValueError(f"CSR features have dtype {x.values().dtype} but the layer has {self.weight.dtype}: "
                             f"convert them (x.to({self.weight.dtype}))")
        transpose = self._transposed(x) if self.weight.requires_grad and torch.is_grad_enabled() else None
        out = spmm(x, self.weight.t(), transpose)
        return out if self.bias is None else out.add_(self.bias)
