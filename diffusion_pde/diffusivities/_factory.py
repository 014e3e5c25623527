"""Build any registered diffusivity for a given graph and feature width.

Each plug-in declares what it needs through its constructor: ``graph`` (graph operators),
``in_channels`` (learned queries/keys), ``dtype``. :func:`diffusivity_for` passes exactly those,
so a command line or a model can offer every registered name without special cases; ``mix``
gets DIFFormer-s attention plus the ``gcn`` graph operator unless its parts are given.
"""

from __future__ import annotations

import inspect

import torch

from ._base import Diffusivity, diffusivity, diffusivity_class


def diffusivity_for(name: str, *, graph: object = None, in_channels: int | None = None, dtype: torch.dtype = torch.float32,
                    **params: object) -> Diffusivity:
    """``diffusivity(name, ...)`` with the graph/width/dtype arguments that ``name`` accepts."""
    cls = diffusivity_class(name)
    if name == "mix":
        params.setdefault("first", diffusivity_for("difformer_s", graph=graph, in_channels=in_channels, dtype=dtype))
        params.setdefault("second", diffusivity_for("gcn", graph=graph, in_channels=in_channels, dtype=dtype))
    accepted = inspect.signature(cls.__init__).parameters
    context = {"graph": graph, "in_channels": in_channels, "dtype": dtype}
    params.update({key: value for key, value in context.items() if key in accepted and key not in params and value is not None})
    return diffusivity(name, **params).to(dtype)
