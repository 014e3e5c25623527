"""Dropout as the models use it: a boolean keep-mask drawn in blocks, kept for the backward pass
instead of torch's float mask, in place where the input is owned, and on the stored entries of
CSR features.

Each entry is zeroed with probability p and the others are scaled by 1/(1 − p), as
``nn.Dropout`` does (Srivastava et al., 2014); the masks come from :func:`keep_mask`.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..graph import row_blocks

__all__ = ["MaskedDropout", "csr_dropout", "keep_mask"]

# Entries per block of :func:`_masked_product` and :func:`keep_mask`: 4 MB of float32.
_MASK_BLOCK = 2**20


def _masked_product(x: torch.Tensor, mask: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = x · mask for a boolean mask, in blocks of entries. The mask is read as uint8 (the
    same bytes, 0 or 1): torch multiplies by a bool tensor through a converted copy in x's dtype,
    a uint8 one in its vectorised mixed-dtype loop (on one CPU thread about 35 instead of 125 µs
    for 2,708 × 64 float32). Blocks keep any temporary at 4 MB where the whole mask's (a quarter
    GB for an N×64 state at N = 1M) would be a fresh mapping every time."""
    flat_x, flat_mask, flat_out = x.reshape(-1), mask.reshape(-1).view(torch.uint8), out.view(-1)
    for block in row_blocks(flat_x.numel(), _MASK_BLOCK):
        torch.mul(flat_x[block], flat_mask[block], out=flat_out[block])
    return out


_DRAW_BITS = 21  # three uniform 21-bit integers from the 63 random bits of one int64 draw


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask of ``shape`` whose entries are independently True with probability 1 − p
    (0 ≤ p ≤ 1) up to 2⁻²²: m = (u ≥ t) for u uniform on {0, …, 2²¹ − 1} and t = round(p · 2²¹),
    i.e. kept with probability 1 − t / 2²¹. The u come three to an int64 draw of torch's global
    generator (``random_``, whose low 63 bits are uniform): in each block of 2²⁰ entries, the
    block's thirds take bits 0–20, 21–41 and 42–62 of the same ⌈B/3⌉ draws. About 0.35 ms for a
    2,708 × 64 mask on one CPU thread, against 0.55 ms for float32 uniforms and 1.4 ms for
    ``bernoulli_``, which draws a double per entry."""
    mask = torch.empty(shape, dtype=torch.bool, device=device)
    flat = mask.view(-1)
    threshold = round(p * 2**_DRAW_BITS)
    for block in row_blocks(flat.numel(), _MASK_BLOCK):
        size = block.stop - block.start
        third = -(-size // 3)
        bits = torch.empty(third, dtype=torch.int64, device=device).random_()
        part = flat[block]
        if threshold == 1 << _DRAW_BITS:  # p = 1: none kept (t·2⁴² would overflow int64); the draw still advances the generator
            part.zero_()
            continue
        for c in range(3):
            start, stop = c * third, min((c + 1) * third, size)
            if start >= stop:
                break
            # bits c·21 … c·21+20 ≥ t  ⟺  bits 0 … c·21+20 ≥ t·2^(c·21): no shift needed
            chunk, top = bits[:stop - start], (c + 1) * _DRAW_BITS
            torch.ge(chunk & ((1 << top) - 1) if c < 2 else chunk, threshold << (c * _DRAW_BITS), out=part[start:stop])
    return mask


class _BoolMaskDropout(torch.autograd.Function):
    """x · m / (1 − p) with a boolean m from :func:`keep_mask` (torch's CPU dropout draws a
    float mask with ``bernoulli_`` and keeps it for the backward pass; this keeps the boolean
    mask, a quarter of its size, and draws it in half the time)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float, inplace: bool) -> torch.Tensor:
        mask = keep_mask(x.shape, p, x.device)
        # 1/(1 − p) rounded as torch's dropout rounds it (in x's dtype), so x·m·scale is its x·noise
        scale = float(torch.ones((), dtype=x.dtype) / (1.0 - p))
        if inplace:
            ctx.mark_dirty(x)
            out = _masked_product(x, mask, x) if x.is_contiguous() else x.mul_(mask)
        else:
            out = _masked_product(x, mask, torch.empty(x.shape, dtype=x.dtype, device=x.device))
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return out.mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        out = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
        return _masked_product(grad, mask, out).mul_(ctx.scale), None, None


class MaskedDropout(nn.Dropout):
    """``nn.Dropout``'s function (each entry zeroed with probability p, the others scaled by
    1/(1 − p)), with the mask drawn by :func:`keep_mask` and kept as booleans for the backward
    pass on CPU (other devices: ``F.dropout`` itself, whose fused kernel keeps a boolean mask
    already). The draws differ from ``nn.Dropout``'s (uniform floats against p instead of
    ``bernoulli_``), the distribution is the same.
    ``inplace=True`` overwrites its input: only for an input no one else reads (the output of a
    LayerNorm or a Linear, which do not keep it for their backward pass). CSR features (input
    dropout, :func:`~diffusion_pde.models.features.sparse_features`) are dropped on their
    stored entries (:func:`csr_dropout`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        if x.layout == torch.sparse_csr:
            return csr_dropout(x, self.p)
        if x.device.type != "cpu" or self.p == 1.0:
            return nn.functional.dropout(x, self.p, True, self.inplace)
        return _BoolMaskDropout.apply(x, self.p, self.inplace)


def csr_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout with probability ``p`` (0 < p ≤ 1) on the stored entries of the CSR ``x``: a new
    CSR tensor with the same pattern, each value zeroed with probability p and the others scaled
    by 1/(1 − p) (rounded in x's dtype, as torch's dropout does). The same distribution as
    ``nn.functional.dropout(x.to_dense(), p)``: a dropped zero is zero either way.

    Raises:
        ValueError: ``x`` requires grad (pass it dense).
    """
    if x.requires_grad:
        raise ValueError("dropout on CSR features that require grad is not supported: pass them dense (x.to_dense())")
    values = x.values()
    keep = keep_mask(values.shape, p, values.device)
    scale = float(torch.ones((), dtype=values.dtype) / (1.0 - p)) if p < 1.0 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        kept = _masked_product(values, keep, torch.empty_like(values)).mul_(scale)
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), kept, x.shape)
