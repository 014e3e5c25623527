"""Data-parallel training over several processes and machines through ``torch.distributed``.

Launched by ``torchrun`` (``torchrun --nproc_per_node P -m diffusion_pde.cli train ... --batch-size
B``), every process reads its rank and the world size from the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process
group: gloo on CPU, nccl on CUDA (process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK``). The model is
wrapped in ``DistributedDataParallel``, which averages the gradients of the ranks' partitions
before every optimiser step, so W ranks taking one partition each per step equal one process
that accumulates the mean gradient of the same W partitions. Only rank 0 writes files and
prints; every rank evaluates the full graph with the same parameters, so all take the same
decisions (best epoch, early stop) without communicating.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distribution:
    """Where this process stands: its ``rank`` in a group of ``world_size`` processes (a single
    process is rank 0 of 1); ``grouped`` when it belongs to a torch.distributed process group
    (every torchrun launch, also of one process)."""

    rank: int = 0
    world_size: int = 1
    grouped: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0, the only process that writes files and prints."""
        return self.rank == 0

    def check_batches(self, batch_size: int | None) -> None:
        """Several processes share an epoch's mini-batches: full-batch training is refused."""
        if self.world_size > 1 and batch_size is None:
            raise ValueError(f"training in {self.world_size} processes needs mini-batches: pass batch_size "
                             "(--batch-size B), so that the ranks share an epoch's partitions")

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` for several processes, else itself. The
        graph operators (buffers built from the data on every rank, some of them sparse) are
        left out of DDP's synchronisation; parameters start from rank 0's."""
        if not self.grouped:
            return model
        from torch.nn.parallel import DistributedDataParallel

        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [name for name, _ in model.named_buffers()])
        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (``[value]`` in one process)."""
        if not self.grouped:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.grouped:
            dist.barrier()


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def local_device(device: torch.device) -> torch.device:
    """On CUDA, the GPU of this process (``LOCAL_RANK``); the CPU stays the CPU."""
    if device.type != "cuda" or not launched_by_torchrun():
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def initialise(device: torch.device) -> Distribution:
    """Join the process group torchrun prepared (gloo for CPU, nccl for CUDA) and return this
    process's place in it; a single process (no torchrun) is ``Distribution()``."""
    if not launched_by_torchrun():
        return Distribution()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distribution(dist.get_rank(), dist.get_world_size(), grouped=True)


def shutdown() -> None:
    """Leave the process group (nothing to do in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
